package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/crwrap/crwrap/internal/checkpoint"
	"github.com/crwrap/crwrap/test/harness"
)

// Labels of the example's two workloads (examples/kubernetes).
const (
	checkpointPods = "app.kubernetes.io/component=checkpoint"
	restorePods    = "app.kubernetes.io/component=restore"
	daemonSet      = "daemonset/go-app-checkpoint"
	deployment     = "deployment/go-app"
	container      = "go-app"
)

// namespace is one test's namespace and its node directory (the manifests' hostPath /cr is
// patched to it, so tests do not share checkpoints and the node's /cr is left alone).
type namespace struct {
	c        *cluster
	name     string
	hostPath string
}

// newNamespace creates a namespace for the test; when the test ends it prints the namespace's
// pods, events and logs if the test failed, then deletes the namespace and its node directory.
func newNamespace(t *testing.T, c *cluster, name string) *namespace {
	t.Helper()
	n := &namespace{c: c, name: fmt.Sprintf("%s-%d", name, time.Now().UnixNano()%1e6), hostPath: t.TempDir()}
	c.kubectl(t, "create", "namespace", n.name)
	t.Cleanup(func() {
		if t.Failed() {
			n.dump(t)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if _, err := c.run(ctx, "", "delete", "namespace", n.name, "--wait=true"); err != nil {
			t.Errorf("delete namespace %s: %v", n.name, err)
		}
	})
	return n
}

// checkpointDir is where the example's checkpoint lands on the node: the hostPath, then the
// ConfigMap's cr.checkpoint.directory and cr.checkpoint.name.
func (n *namespace) checkpointDir() string { return filepath.Join(n.hostPath, "demo", "go-app") }

// published reads the node's checkpoint manifest (nil when there is none).
func (n *namespace) published() *checkpoint.Manifest {
	b, err := os.ReadFile(filepath.Join(n.checkpointDir(), checkpoint.ManifestFile))
	if err != nil {
		return nil
	}
	var m checkpoint.Manifest
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	return &m
}

// dump prints what a platform engineer looks at when a pod misbehaves: the pods, the events, and
// each pod's description and logs (the previous container's too).
func (n *namespace) dump(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	show := func(args ...string) {
		out, err := n.c.run(ctx, "", append([]string{"-n", n.name}, args...)...)
		if err != nil {
			out += "\n" + err.Error()
		}
		t.Logf("$ kubectl -n %s %s\n%s", n.name, strings.Join(args, " "), out)
	}
	show("get", "pods", "-o", "wide")
	show("get", "events", "--sort-by", ".lastTimestamp")
	for _, p := range n.pods(t, "") {
		show("describe", "pod", p.Name)
		show("logs", p.Name, "-c", container, "--tail", "60")
		show("logs", p.Name, "-c", container, "--previous", "--tail", "60")
	}
}

// overlay is a kustomization over examples/kubernetes for one test: the test's namespace, the
// image it built, its node directory as the hostPath, and patches of its own.
type overlay struct {
	Image    string   // name:tag of the app image
	Replicas int      // the restore Deployment's replicas (0: the manifest's)
	Patches  []string // strategic-merge patches (YAML) of the example's objects
}

// cpuRequest replaces the manifests' 250m CPU requests: the CI node has 2 CPUs, and the suite
// runs a DaemonSet pod and 8 restore replicas on it. Requests only place pods; they limit nothing.
const cpuRequest = "100m"

// apply writes the overlay and applies it with `kubectl apply -k`.
func (n *namespace) apply(t *testing.T, o overlay) {
	t.Helper()
	dir := t.TempDir()
	name, tag, ok := strings.Cut(o.Image, ":")
	if !ok {
		t.Fatalf("image %q has no tag", o.Image)
	}
	rel, err := filepath.Rel(dir, filepath.Join(harness.RepoRoot(), "examples", "kubernetes"))
	if err != nil {
		t.Fatal(err)
	}
	patches := []string{
		workloadPatch("DaemonSet", "go-app-checkpoint", n.hostPath),
		workloadPatch("Deployment", "go-app", n.hostPath),
	}
	patches = append(patches, o.Patches...)
	k := map[string]any{
		"apiVersion": "kustomize.config.k8s.io/v1beta1",
		"kind":       "Kustomization",
		"namespace":  n.name,
		"resources":  []string{rel},
		"images":     []map[string]string{{"name": "crwrap-demo/go-app", "newName": name, "newTag": tag}},
	}
	if o.Replicas > 0 {
		k["replicas"] = []map[string]any{{"name": "go-app", "count": o.Replicas}}
	}
	var ps []map[string]string
	for _, p := range patches {
		ps = append(ps, map[string]string{"patch": p})
	}
	k["patches"] = ps
	b, err := yaml.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	n.c.kubectl(t, "apply", "-k", dir)
}

// workloadPatch points a workload's hostPath at the test's node directory and lowers its CPU
// request (cpuRequest).
func workloadPatch(kind, name, hostPath string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: %s
metadata:
  name: %s
spec:
  template:
    spec:
      containers:
        - name: %s
          resources:
            requests:
              cpu: %s
      volumes:
        - name: cr
          hostPath:
            path: %s
`, kind, name, container, cpuRequest, hostPath)
}

// deletePatch removes one of the example's objects from an overlay.
func deletePatch(apiVersion, kind, name string) string {
	return fmt.Sprintf("apiVersion: %s\nkind: %s\nmetadata:\n  name: %s\n$patch: delete\n", apiVersion, kind, name)
}

// containerPatch merges YAML (indented for a container's fields) into a workload's container.
func containerPatch(kind, name, fields string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: apps/v1\nkind: %s\nmetadata:\n  name: %s\nspec:\n  template:\n    spec:\n      containers:\n        - name: %s\n", kind, name, container)
	for _, l := range strings.Split(strings.TrimRight(fields, "\n"), "\n") {
		b.WriteString("          " + l + "\n")
	}
	return b.String()
}

// pods lists the namespace's pods with the label selector ("" for all), deleted ones left out.
func (n *namespace) pods(t testing.TB, selector string) []corev1.Pod {
	t.Helper()
	args := []string{"-n", n.name, "get", "pods", "-o", "json"}
	if selector != "" {
		args = append(args, "-l", selector)
	}
	out := n.c.kubectl(t, args...)
	var list corev1.PodList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("decode pods: %v", err)
	}
	var pods []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			pods = append(pods, p)
		}
	}
	return pods
}

// logs is `kubectl logs` of a pod's app container.
func (n *namespace) logs(t testing.TB, pod string) string {
	t.Helper()
	return n.c.kubectl(t, "-n", n.name, "logs", pod, "-c", container)
}

// podReady says whether a pod's Ready condition is true.
func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// readySince is when a pod last became Ready (zero when it is not).
func readySince(p corev1.Pod) time.Time {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return c.LastTransitionTime.Time
		}
	}
	return time.Time{}
}

// terminated is the app container's latest termination (the current state or the last one).
func terminated(p corev1.Pod) *corev1.ContainerStateTerminated {
	for _, s := range p.Status.ContainerStatuses {
		if s.Name != container {
			continue
		}
		if s.State.Terminated != nil {
			return s.State.Terminated
		}
		return s.LastTerminationState.Terminated
	}
	return nil
}

// waitReady waits until exactly want pods with the selector exist and all are Ready.
func (n *namespace) waitReady(t *testing.T, selector string, want int, timeout time.Duration) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	waitFor(t, timeout, fmt.Sprintf("%d Ready pods %s", want, selector), func() (bool, error) {
		pods = n.pods(t, selector)
		ready := 0
		for _, p := range pods {
			if podReady(p) {
				ready++
			}
			if st := terminated(p); st != nil && st.ExitCode != 0 {
				t.Fatalf("pod %s: its container exited %d: %s", p.Name, st.ExitCode, st.Message)
			}
		}
		return len(pods) == want && ready == want, fmt.Errorf("%d pods, %d Ready", len(pods), ready)
	})
	return pods
}

// waitTerminated waits until a pod with the selector has a terminated app container.
func (n *namespace) waitTerminated(t *testing.T, selector string, timeout time.Duration) (corev1.Pod, *corev1.ContainerStateTerminated) {
	t.Helper()
	var pod corev1.Pod
	var st *corev1.ContainerStateTerminated
	waitFor(t, timeout, "a terminated container in pods "+selector, func() (bool, error) {
		for _, p := range n.pods(t, selector) {
			if s := terminated(p); s != nil {
				pod, st = p, s
				return true, nil
			}
			if podReady(p) {
				return false, fmt.Errorf("pod %s is Ready", p.Name)
			}
		}
		return false, nil
	})
	return pod, st
}

// restoredLog checks that a restore pod's log says it was restored (crwrap's summary line), not
// started cold, and returns that line.
func restoredLog(logs string) (string, bool) {
	if strings.Contains(logs, "phase=fallback") {
		return "", false
	}
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, `msg="restored:`) && strings.Contains(l, "phase=summary") {
			return l, true
		}
	}
	return "", false
}

// podURL is the app's address in the pod network, reachable from the node.
func podURL(p corev1.Pod, path string) string {
	return fmt.Sprintf("http://%s:4000%s", p.Status.PodIP, path)
}
