package pod

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// startPodRegistry runs docker-registry with its own storage on the Docker bridge's address,
// where the pods (containers on the default bridge) reach it; plain HTTP (a private address).
func startPodRegistry(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Fatalf("docker-registry (test/deps.sh installs it): %v", err)
	}
	iface, err := net.InterfaceByName("docker0")
	if err != nil {
		t.Fatalf("the Docker bridge docker0: %v", err)
	}
	addrs, _ := iface.Addrs()
	var ip string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			ip = n.IP.String()
		}
	}
	if ip == "" {
		t.Fatalf("docker0 has no IPv4 address")
	}
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "storage"), addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
			resp.Body.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry on %s not up", addr)
		}
	}
}

// withNodeCache is the restore Deployment's pod spec with the node cache the cross-node
// component (examples/kubernetes/cross-node) adds: hostPath /var/lib/crwrap/cache, read-write,
// at /cr-cache.
func withNodeCache(spec corev1.PodSpec) (corev1.PodSpec, corev1.Container) {
	s := *spec.DeepCopy()
	dir := corev1.HostPathDirectoryOrCreate
	s.Volumes = append(s.Volumes, corev1.Volume{Name: "cr-cache",
		VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/crwrap/cache", Type: &dir}}})
	c := s.Containers[0]
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "cr-cache", MountPath: "/cr-cache"})
	return s, c
}

// waitLog waits until the pod's log holds every one of the strings.
func waitLog(t *testing.T, p *Pod, timeout time.Duration, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		logs := p.Logs()
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(logs, w)
		}
		if ok {
			return logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s: no %q in its log after %s:\n%s", p.Name, want, timeout, tail(logs, 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Node A's checkpoint pod pushes its checkpoint to a registry; two restore pods starting at
// once on node B, which has none, pull it once into B's node cache and restore with the
// checkpointed memory (the same /value as a restore on node A).
func TestCrossNodePods(t *testing.T) {
	c := newCluster(t)
	addr := startPodRegistry(t)
	image := map[string]string{"CR_CHECKPOINT_IMAGE": addr + "/team/go-app-checkpoint"}
	grace := time.Duration(*c.m.Deployment.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second

	nodeA := c.node
	ck := c.checkpointPod(t, nodeA, "xn-checkpoint", image)
	waitLog(t, ck, 3*time.Minute, "phase=publish", "phase=push", "digest=")
	local := c.restorePod(t, nodeA, "xn-local", image)
	local.WaitReady(t, 2*time.Minute)
	want := value(t, local)
	stop(t, local, grace)

	nodeB := newNode(t)
	spec, ctr := withNodeCache(c.m.Deployment.Spec.Template.Spec)
	pods := make([]*Pod, 2)
	var wg sync.WaitGroup
	for i := range pods {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			pods[i] = nodeB.RunPod(t, PodSpec{Name: fmt.Sprintf("%s-xn-b%d", c.run, i), Spec: spec, Container: ctr,
				ConfigMaps: map[string]*corev1.ConfigMap{c.m.ConfigMap.Name: &c.m.ConfigMap}, EnvPatch: image})
		}(i)
	}
	wg.Wait()
	misses := 0
	for _, p := range pods {
		ready := p.WaitReady(t, 2*time.Minute)
		logs := waitLog(t, p, 30*time.Second, "phase=pull", "phase=restore")
		if strings.Contains(logs, "phase=fallback") {
			t.Errorf("pod %s fell back:\n%s", p.Name, tail(logs, 30))
		}
		if strings.Contains(logs, "cache=miss") {
			misses++
		}
		if got := value(t, p); got != want {
			t.Errorf("pod %s on node B: /value %q, want node A's checkpointed %q", p.Name, got, want)
		}
		t.Logf("pod %s on node B restored from the registry, ready after %s", p.Name, ready.Round(time.Millisecond))
	}
	if misses != 1 {
		t.Errorf("%d of 2 pods on node B pulled (cache=miss), want 1", misses)
	}
	for _, p := range pods {
		stop(t, p, grace)
	}
	entries, _ := os.ReadDir(filepath.Join(nodeB.Root, "var/lib/crwrap/cache/sha256"))
	complete := 0
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			complete++
		}
	}
	if complete != 1 {
		t.Errorf("node B's cache has %d complete entries, want 1: %v", complete, entries)
	}
	stop(t, ck, grace)
}
