package pod

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/crwrap/crwrap/internal/checkpoint"
)

// requireDocker fails the test when the Docker Engine cannot be used, naming why. It skips only
// on a developer's unprivileged run outside CI; with CI set, or as root, it never skips.
func requireDocker(t *testing.T) {
	t.Helper()
	must := os.Getenv("CI") != "" || os.Geteuid() == 0
	fail := func(format string, args ...any) {
		t.Helper()
		if must {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	if os.Geteuid() != 0 {
		fail("pod tests need root (the node's checkpoint files are root-only) and a Docker Engine")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		fail("pod tests need a Docker Engine: docker CLI not found: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := docker(ctx, "version", "--format", "{{.Server.Version}}"); err != nil {
		fail("pod tests need a Docker Engine, and it is unavailable: %v", err)
	} else {
		t.Logf("Docker Engine %s", strings.TrimSpace(out))
	}
}

var images struct {
	once sync.Once
	err  error
}

// CrwrapBaseImage is the tag the tests give the crwrap-base image.
const CrwrapBaseImage = "crwrap-base:latest"

// buildImages builds, once per test binary, the local base images, crwrap-base and the example
// app image tagged as the manifests name it — all with `docker build` from the repo's Dockerfiles.
func buildImages(t *testing.T, appImage string) {
	t.Helper()
	images.once.Do(func() {
		root := repoRoot()
		run := func(name string, args ...string) error {
			start := time.Now()
			cmd := exec.Command(name, args...)
			cmd.Dir = root
			out, err := cmd.CombinedOutput()
			t.Logf("%s %s: %s", filepath.Base(name), strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
			if err != nil {
				return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(string(out), 60))
			}
			return nil
		}
		if images.err = run(filepath.Join(root, "images/base/make.sh")); images.err != nil {
			return
		}
		if images.err = run(filepath.Join(root, "images/crwrap-base/build.sh"), CrwrapBaseImage); images.err != nil {
			return
		}
		images.err = run("docker", "build", "-t", appImage,
			"--build-arg", "CRWRAP_IMAGE="+CrwrapBaseImage,
			"--build-arg", "GO_IMAGE=crwrap-local/golang:1.26",
			"--build-arg", "RUNTIME_IMAGE=crwrap-local/static:latest",
			filepath.Join(root, "examples/go-app"))
	})
	if images.err != nil {
		t.Fatalf("build images: %v", images.err)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cluster is the test's view of the example: decoded manifests and a node.
type cluster struct {
	m    *Manifests
	node *Node
	run  string // a per-run prefix for container names
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	requireDocker(t)
	m := LoadManifests(t)
	buildImages(t, m.DaemonSet.Spec.Template.Spec.Containers[0].Image)
	return &cluster{m: m, node: newNode(t), run: fmt.Sprintf("crwrap-pod-%d", time.Now().UnixNano()%1e6)}
}

// newNode makes a node directory; the checkpoint files in it are root-only, removed at the end.
func newNode(t *testing.T) *Node {
	t.Helper()
	dir, err := os.MkdirTemp("", "crwrap-node-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return &Node{Root: dir}
}

func (c *cluster) checkpointPod(t *testing.T, node *Node, name string, env map[string]string) *Pod {
	spec := c.m.DaemonSet.Spec.Template.Spec
	return node.RunPod(t, PodSpec{Name: c.run + "-" + name, Spec: spec, Container: spec.Containers[0],
		ConfigMaps: map[string]*corev1.ConfigMap{c.m.ConfigMap.Name: &c.m.ConfigMap}, EnvPatch: env})
}

func (c *cluster) restorePod(t *testing.T, node *Node, name string, env map[string]string) *Pod {
	spec := c.m.Deployment.Spec.Template.Spec
	return node.RunPod(t, PodSpec{Name: c.run + "-" + name, Spec: spec, Container: spec.Containers[0],
		ConfigMaps: map[string]*corev1.ConfigMap{c.m.ConfigMap.Name: &c.m.ConfigMap}, EnvPatch: env})
}

// checkpointDir is where the example's checkpoint lands on a node: hostPath /cr + the
// ConfigMap's cr.checkpoint.directory and cr.checkpoint.name (checked in manifests_test.go).
func checkpointDir(node *Node) string { return filepath.Join(node.Root, "cr", "demo", "go-app") }

// waitCheckpoint waits for a complete checkpoint (its crwrap.json) newer than after.
func waitCheckpoint(t *testing.T, node *Node, p *Pod, after time.Time, timeout time.Duration) *checkpoint.Manifest {
	t.Helper()
	deadline := time.Now().Add(timeout)
	path := filepath.Join(checkpointDir(node), checkpoint.ManifestFile)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil {
			var m checkpoint.Manifest
			if err := json.Unmarshal(b, &m); err == nil && m.Created.After(after) {
				return &m
			}
		}
		if st, err := p.State(); err == nil && !st.Running {
			t.Fatalf("checkpoint pod exited (%d) before publishing; logs:\n%s", st.ExitCode, p.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no checkpoint at %s after %s; logs:\n%s", path, timeout, p.Logs())
	return nil
}

// treeDigest describes every file under dir (path, size, content digest, mode) to detect writes.
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s %v %d\n", rel, info.Mode(), info.Size())
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%x\n", sha256.Sum256(b))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("digest %s: %v", dir, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func value(t *testing.T, p *Pod) string {
	t.Helper()
	code, body, err := p.Get("/value")
	if err != nil || code != 200 {
		t.Fatalf("pod %s /value: %d %q %v; logs:\n%s", p.Name, code, body, err, p.Logs())
	}
	return body
}

// stop is `docker stop` (SIGTERM to PID 1, SIGKILL after the grace period) of a pod; it checks
// that the pod ended by itself within the grace period with 143 (SIGTERM) or 0.
func stop(t *testing.T, p *Pod, grace time.Duration) {
	t.Helper()
	start := time.Now()
	if _, err := docker(context.Background(), "stop", p.ID); err != nil {
		t.Fatalf("stop %s: %v", p.Name, err)
	}
	took := time.Since(start)
	st, err := p.State()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pod %s stopped in %s with exit %d", p.Name, took.Round(time.Millisecond), st.ExitCode)
	if took >= grace {
		t.Errorf("pod %s took %s to stop: not within its grace period %s (killed)", p.Name, took, grace)
	}
	if st.ExitCode != 143 && st.ExitCode != 0 {
		t.Errorf("pod %s exit %d after SIGTERM, want 143 or 0; logs:\n%s", p.Name, st.ExitCode, tail(p.Logs(), 30))
	}
}

func hostKernel(t *testing.T) string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	return unix.ByteSliceToString(u.Release[:])
}

// TestPods runs the example the way Kubernetes would on one node: the checkpoint DaemonSet's pod,
// then restore Deployment pods, from the manifests' container specs.
func TestPods(t *testing.T) {
	c := newCluster(t)
	node := c.node
	grace := time.Duration(*c.m.Deployment.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	const readyTimeout = 2 * time.Minute

	// A restore pod on a node that has no checkpoint yet: it waits cr.restore.wait, then starts
	// cold. Runs on a node of its own, beside the checkpoint pod.
	const wait = 3 * time.Second
	var waitWG sync.WaitGroup
	waitWG.Add(1)
	defer waitWG.Wait() // also when the main flow fails: subtests must end before TestPods
	go func() {
		defer waitWG.Done()
		t.Run("RestoreWithoutCheckpointWaitsThenStartsCold", func(t *testing.T) {
			empty := newNode(t)
			p := c.restorePod(t, empty, "early", map[string]string{"CR_RESTORE_WAIT": wait.String()})
			ready := p.WaitReady(t, readyTimeout)
			t.Logf("restore pod without checkpoint: ready after %s (cr.restore.wait %s + cold start)", ready.Round(time.Millisecond), wait)
			if ready < wait {
				t.Errorf("ready after %s, before cr.restore.wait %s passed", ready, wait)
			}
			if _, err := os.Stat(checkpointDir(empty)); err == nil {
				t.Errorf("a restore pod wrote a checkpoint")
			}
			stop(t, p, grace)
		})
	}()

	// A cold pod for reference: the restore Deployment's container in run mode, on a node of its
	// own, beside the checkpoint pod (their warm-ups are mostly sleeping).
	coldCh := make(chan time.Duration, 1)
	go func() {
		defer close(coldCh)
		p := c.restorePod(t, newNode(t), "cold", map[string]string{"CR_MODE": "run"})
		deadline := time.Now().Add(readyTimeout)
		for time.Now().Before(deadline) {
			if ok, _ := p.Ready(); ok {
				coldCh <- time.Since(p.Started)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		_, _ = docker(context.Background(), "stop", p.ID)
	}()

	// The checkpoint pod: cold start, checkpoint published on the node, still running, Ready by
	// its probe (crwrap inspect of the checkpoint).
	before := time.Now()
	ck := c.checkpointPod(t, node, "checkpoint", nil)
	man := waitCheckpoint(t, node, ck, before.Add(-time.Second), readyTimeout)
	t.Logf("checkpoint published %s after docker run: CRIU %s, kernel %s, %d files, phases %v",
		time.Since(ck.Started).Round(time.Millisecond), man.CRIUVersion, man.Host.Kernel, len(man.Files), man.DurationsMS)
	ckReady := ck.WaitReady(t, 30*time.Second)
	t.Logf("checkpoint pod Ready (by its probe) %s after docker run", ckReady.Round(time.Millisecond))
	cold, ok := <-coldCh
	if !ok {
		t.Fatalf("the cold reference pod never became ready")
	}
	t.Logf("cold pod (run mode): ready after %s", cold.Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	if st, err := ck.State(); err != nil || !st.Running {
		t.Fatalf("checkpoint pod is not running after publishing (%+v %v); logs:\n%s", st, err, ck.Logs())
	}
	if code, _, err := ck.Get("/ready"); err == nil && code == 200 {
		t.Logf("the checkpoint pod's app still serves after the dump")
	} else {
		t.Logf("the checkpoint pod's app does not serve after the dump (crwrap idles): %d %v", code, err)
	}
	if st, err := os.Stat(filepath.Join(checkpointDir(node), checkpoint.ManifestFile)); err == nil && st.Mode().Perm()&0o077 != 0 {
		t.Errorf("crwrap.json mode %v: checkpoint files must be root-only", st.Mode())
	}
	published := treeDigest(t, checkpointDir(node))
	var want string
	if v := man.App.Args; len(v) == 0 {
		t.Errorf("crwrap.json names no app command")
	}

	t.Run("RestoreIsFasterThanColdAndKeepsState", func(t *testing.T) {
		p := c.restorePod(t, node, "restore", nil)
		ready := p.WaitReady(t, readyTimeout)
		t.Logf("restore pod: ready after %s (cold %s, %.1fx faster)", ready.Round(time.Millisecond), cold.Round(time.Millisecond), float64(cold)/float64(ready))
		if ready > cold/3 {
			t.Errorf("restore took %s, not far faster than the cold start %s; restore pod's log:\n%s", ready, cold, tail(p.Logs(), 40))
		}
		// With the manifests' capabilities the restore is lazy (userfaultfd), not the eager retry.
		if logs := p.Logs(); !strings.Contains(logs, "phase=restore") || !strings.Contains(logs, "lazy=true") {
			t.Errorf("the restore pod did not restore lazily; its log:\n%s", tail(logs, 40))
		}
		// The value drawn at warm-up survives: every restore of this checkpoint answers the same.
		want = value(t, p)
		if !strings.Contains(ck.Logs(), "value="+want) {
			t.Errorf("restored /value %s is not the one the checkpointed app drew; its logs:\n%s", want, tail(ck.Logs(), 20))
		}
		if code, body, err := p.Get("/heap"); err != nil || code != 200 || !strings.Contains(body, "intact=true") {
			t.Errorf("restored heap: %d %q %v", code, body, err)
		}

		// The app's output after the restore reaches `docker logs` (the pod's stdout).
		marker := fmt.Sprintf("/after-restore-%d", time.Now().UnixNano())
		_, _, _ = p.Get(marker)
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(p.Logs(), marker) {
			if time.Now().After(deadline) {
				t.Fatalf("the restored app's request log for %s is not in docker logs:\n%s", marker, tail(p.Logs(), 30))
			}
			time.Sleep(50 * time.Millisecond)
		}

		stop(t, p, grace)
		if !strings.Contains(p.Logs(), "received SIGTERM") {
			t.Errorf("the app did not see SIGTERM (its log line is missing):\n%s", tail(p.Logs(), 20))
		}
	})

	t.Run("FourReplicasAtOnce", func(t *testing.T) {
		var pods []*Pod
		for i := 0; i < 4; i++ {
			pods = append(pods, c.restorePod(t, node, fmt.Sprintf("replica-%d", i), nil))
		}
		var slowest time.Duration
		for _, p := range pods {
			r := p.WaitReady(t, readyTimeout)
			slowest = max(slowest, r)
			if got := value(t, p); got != want {
				t.Errorf("replica %s /value %s, want %s", p.Name, got, want)
			}
		}
		t.Logf("4 replicas restored at once: slowest ready after %s (cold %s)", slowest.Round(time.Millisecond), cold.Round(time.Millisecond))
		if slowest > cold/2 {
			t.Errorf("slowest of 4 concurrent restores took %s, cold start %s", slowest, cold)
		}
		for _, p := range pods {
			stop(t, p, grace)
		}
	})

	t.Run("RestoreLeavesNoTrace", func(t *testing.T) {
		if got := treeDigest(t, checkpointDir(node)); got != published {
			t.Errorf("the checkpoint directory changed while restore pods ran: restore must never write there")
		}
		out, err := docker(context.Background(), "ps", "-q", "--filter", "label="+testLabel, "--filter", "status=running")
		if err != nil {
			t.Fatal(err)
		}
		// Only the checkpoint pod (and possibly the waiting restore pod) may still run.
		if n := len(strings.Fields(out)); n > 2 {
			t.Errorf("%d test containers still running after the replicas stopped", n)
		}
	})

	t.Run("CheckpointPodStops", func(t *testing.T) {
		stop(t, ck, time.Duration(*c.m.DaemonSet.Spec.Template.Spec.TerminationGracePeriodSeconds)*time.Second)
		// Next to the checkpoint only the checkpoint (a symlink), the version it points to and the
		// writers' lock may remain: no temporary directory of an unfinished dump.
		name := filepath.Base(checkpointDir(node))
		target, _ := os.Readlink(checkpointDir(node))
		entries, _ := os.ReadDir(filepath.Dir(checkpointDir(node)))
		for _, e := range entries {
			if n := e.Name(); n != name && n != target && n != "."+name+".lock" {
				t.Errorf("leftover %s next to the checkpoint after the checkpoint pod stopped", n)
			}
		}
	})

	t.Run("ForeignKernelColdStartsAndRecheckpoints", func(t *testing.T) {
		path := filepath.Join(checkpointDir(node), checkpoint.ManifestFile)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var raw map[string]any
		if err := json.Unmarshal(b, &raw); err != nil {
			t.Fatal(err)
		}
		host, _ := raw["host"].(map[string]any)
		if host == nil {
			t.Fatalf("crwrap.json has no host object: %s", b)
		}
		host["kernel"] = "4.19.0-foreign"
		b, _ = json.MarshalIndent(raw, "", "  ")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		// Sealed again, as a tool moving checkpoints would: the host check, not the digest, decides.
		if err := checkpoint.SealManifest(checkpointDir(node)); err != nil {
			t.Fatal(err)
		}

		p := c.restorePod(t, node, "foreign", nil)
		ready := p.WaitReady(t, readyTimeout)
		t.Logf("restore pod with a foreign checkpoint: ready after %s (cold start)", ready.Round(time.Millisecond))
		if ready < cold/2 {
			t.Errorf("ready after %s: too fast for the cold start that a foreign checkpoint needs (cold %s)", ready, cold)
		}
		if got := value(t, p); got == want {
			t.Errorf("/value %s is the checkpointed one: the foreign checkpoint was restored", got)
		}
		if logs := strings.ToLower(p.Logs()); !strings.Contains(logs, "kernel") {
			t.Errorf("the cold start does not say why (no mention of the kernel):\n%s", tail(p.Logs(), 30))
		}
		stop(t, p, grace)

		since := time.Now()
		ck2 := c.checkpointPod(t, node, "checkpoint-2", nil)
		ck2.WaitReady(t, readyTimeout)
		m := waitCheckpoint(t, node, ck2, since, readyTimeout)
		if m.Host.Kernel != hostKernel(t) {
			t.Errorf("fresh checkpoint says kernel %q, this node runs %q", m.Host.Kernel, hostKernel(t))
		}
		stop(t, ck2, time.Duration(*c.m.DaemonSet.Spec.Template.Spec.TerminationGracePeriodSeconds)*time.Second)
	})

	waitWG.Wait()
	t.Run("NoLeftoverProcesses", func(t *testing.T) {
		// Every pod is stopped: no app process may survive its pod on the node.
		deadline := time.Now().Add(5 * time.Second)
		for {
			left := appProcesses()
			if len(left) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("go-app processes left after every pod stopped: %v", left)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

}

// TestAppImageIsSelfContained proves that /crwrap brings everything it needs: the app image's
// runtime base has no CRIU and no glibc of its own (only busybox-static), and crwrap-base holds
// nothing but /crwrap.
func TestAppImageIsSelfContained(t *testing.T) {
	requireDocker(t)
	m := LoadManifests(t)
	image := m.DaemonSet.Spec.Template.Spec.Containers[0].Image
	buildImages(t, image)
	files := func(img string) []string {
		id, err := docker(context.Background(), "create", img, "/x")
		if err != nil {
			t.Fatal(err)
		}
		id = strings.TrimSpace(id)
		defer func() { _, _ = docker(context.Background(), "rm", id) }()
		out, err := exec.Command("sh", "-c", "docker export "+id+" | tar -t").Output()
		if err != nil {
			t.Fatalf("export %s: %v", img, err)
		}
		return strings.Fields(string(out))
	}
	for _, f := range files(image) {
		f = strings.TrimPrefix(f, "./")
		if strings.HasPrefix(f, "crwrap/") {
			continue
		}
		base := filepath.Base(f)
		if strings.Contains(base, "criu") || strings.HasPrefix(base, "libc.so") || strings.HasPrefix(base, "ld-linux") {
			t.Errorf("the app image has %s outside /crwrap: the test must prove /crwrap is self-contained", f)
		}
	}
	baseFiles := files(CrwrapBaseImage)
	for _, f := range baseFiles {
		f = strings.TrimPrefix(f, "./")
		switch {
		case strings.HasPrefix(f, "crwrap/"), f == "crwrap", f == ".dockerenv",
			strings.HasPrefix(f, "dev/"), strings.HasPrefix(f, "etc/"), strings.HasPrefix(f, "proc/"), strings.HasPrefix(f, "sys/"),
			f == "dev", f == "etc", f == "proc", f == "sys":
			// /crwrap, and what Docker adds to every container's root.
		default:
			t.Errorf("crwrap-base holds %s: it must hold only /crwrap", f)
		}
	}
	for _, want := range []string{"crwrap/bin/crwrap", "crwrap/criu/VERSION", "crwrap/templates/config.json.tmpl"} {
		if !slices.Contains(baseFiles, want) {
			t.Errorf("crwrap-base lacks /%s", want)
		}
	}
}

// appProcesses lists the host's go-app processes ("pid comm").
func appProcesses() []string {
	var left []string
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "comm"))
		if err == nil && strings.TrimSpace(string(b)) == "go-app" {
			left = append(left, d.Name()+" go-app")
		}
	}
	return left
}
