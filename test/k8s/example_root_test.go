package k8s

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/crwrap/crwrap/test/harness"
)

// The images the suite builds (unique names: the Docker Engine is shared).
const (
	baseImage = "crwrap-k8s-e2e/crwrap-base:latest"
	appImage  = "crwrap-k8s-e2e/go-app:v1"
	appImage2 = "crwrap-k8s-e2e/go-app:v2" // the same app, another executable: a new version
)

// Generous bounds: the 2-CPU CI machine is shared, and a cold start is ~6 s of warm-up.
const (
	podTimeout   = 3 * time.Minute
	scaleTimeout = 5 * time.Minute
)

// appImages builds the example app image with `docker build` and imports it into the cluster.
func appImages(t *testing.T, c *cluster) {
	t.Helper()
	harness.BuildExampleImages(t, baseImage, appImage)
	c.importImage(t, appImage)
}

// newVersionImage builds v2 of the app: v1 with bytes appended to its executable, so that the
// app's identity (the digest of its executable) differs while it behaves the same.
func newVersionImage(t *testing.T, c *cluster) {
	t.Helper()
	dir := t.TempDir()
	dockerfile := fmt.Sprintf(`FROM %s AS v1
FROM crwrap-local/golang:1.26 AS edit
COPY --from=v1 /app/go-app /go-app
RUN printf '\ncrwrap-k8s-e2e v2\n' >>/go-app
FROM %s
COPY --from=edit /go-app /app/go-app
`, appImage, appImage)
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("docker", "build", "-t", appImage2, dir).CombinedOutput(); err != nil {
		t.Fatalf("docker build %s: %v\n%s", appImage2, err, harness.Tail(string(out), 30))
	}
	c.importImage(t, appImage2)
}

// TestExample runs the example as the docs deploy it: `kubectl apply -k examples/kubernetes`,
// the DaemonSet checkpoints, the Deployment restores; then scaling, a deleted pod and a new
// version of the app.
func TestExample(t *testing.T) {
	c := requireCluster(t)
	appImages(t, c)
	n := newNamespace(t, c, "example")

	applied := time.Now()
	n.apply(t, overlay{Image: appImage, Replicas: 1})

	t.Run("DaemonSetReadyOnceCheckpointPublished", func(t *testing.T) {
		// Never Ready before the node holds a checkpoint (its probe is `crwrap inspect`).
		var pod corev1.Pod
		waitFor(t, podTimeout, "the checkpoint pod is Ready", func() (bool, error) {
			pods := n.pods(t, checkpointPods)
			if len(pods) != 1 {
				return false, fmt.Errorf("%d checkpoint pods", len(pods))
			}
			pod = pods[0]
			published := n.published() != nil
			if podReady(pod) && !published {
				t.Fatalf("the checkpoint pod %s is Ready and no checkpoint is published at %s", pod.Name, n.checkpointDir())
			}
			if st := terminated(pod); st != nil && st.ExitCode != 0 {
				t.Fatalf("the checkpoint pod's container exited %d: %s", st.ExitCode, st.Message)
			}
			return podReady(pod), nil
		})
		m := n.published()
		if m == nil {
			t.Fatalf("no checkpoint manifest at %s", n.checkpointDir())
		}
		t.Logf("checkpoint pod %s Ready %s after kubectl apply; checkpoint made at %s (CRIU %s, %d files)",
			pod.Name, time.Since(applied).Round(time.Millisecond), m.Created.Format(time.RFC3339Nano), m.CRIUVersion, len(m.Files))
		if ready := readySince(pod); ready.Before(m.Created.Truncate(time.Second)) {
			t.Errorf("the checkpoint pod became Ready at %s, before its checkpoint was made at %s", ready, m.Created)
		}
		c.kubectl(t, "-n", n.name, "rollout", "status", daemonSet, "--timeout", "30s")
	})
	if t.Failed() {
		t.FailNow()
	}

	var first corev1.Pod
	t.Run("RestorePodRestores", func(t *testing.T) {
		pods := n.waitReady(t, restorePods, 1, podTimeout)
		first = pods[0]
		logs := n.logs(t, first.Name)
		line, ok := restoredLog(logs)
		if !ok {
			t.Fatalf("restore pod %s was not restored; its log:\n%s", first.Name, harness.Tail(logs, 30))
		}
		t.Logf("restore pod %s: %s", first.Name, line)
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("KubectlLogsShowTheRestoredApp", func(t *testing.T) {
		marker := fmt.Sprintf("/after-restore-%d", time.Now().UnixNano())
		_, _ = harness.Get(podURL(first, marker)) // 404, logged by the app
		waitFor(t, 30*time.Second, "the restored app's request log in kubectl logs", func() (bool, error) {
			return strings.Contains(n.logs(t, first.Name), marker), nil
		})
		// The app's state survived: its value is the one the checkpointed app drew.
		value, err := harness.Get(podURL(first, "/value"))
		if err != nil {
			t.Fatalf("restored app's /value: %v", err)
		}
		ck := n.pods(t, checkpointPods)[0]
		if !strings.Contains(n.logs(t, ck.Name), "value="+strings.TrimSpace(value)) {
			t.Errorf("restored /value %q is not the value the checkpoint pod's app drew", value)
		}
	})

	t.Run("PodNetworkIsHostOnly", func(t *testing.T) {
		// The test cluster's pods reach the node and each other, never the outside.
		routes := c.kubectl(t, "-n", n.name, "exec", first.Name, "-c", container, "--", "/bin/busybox", "ip", "route")
		if !strings.Contains(routes, c.env["POD_CIDR"]) || strings.Contains(routes, "default") {
			t.Errorf("the pod's routes are not the host-only pod network %s:\n%s", c.env["POD_CIDR"], routes)
		}
	})

	t.Run("ScaleTo8AllRestored", func(t *testing.T) {
		start := time.Now()
		c.kubectl(t, "-n", n.name, "scale", deployment, "--replicas", "8")
		pods := n.waitReady(t, restorePods, 8, scaleTimeout)
		took := time.Since(start)
		var last time.Time
		for _, p := range pods {
			if r := readySince(p); r.After(last) {
				last = r
			}
			if line, ok := restoredLog(n.logs(t, p.Name)); !ok {
				t.Errorf("replica %s was not restored; its log:\n%s", p.Name, harness.Tail(n.logs(t, p.Name), 30))
			} else if !strings.Contains(line, "lazy=true") {
				// The manifests' capabilities give lazy restores (docs/kubernetes.md).
				t.Errorf("replica %s was not restored lazily: %s", p.Name, line)
			} else {
				t.Logf("replica %s: %s", p.Name, line)
			}
		}
		t.Logf("scaled 1 -> 8: all 8 Ready %s after kubectl scale (the last Ready condition at %s)",
			took.Round(time.Millisecond), last.Format(time.RFC3339))
	})

	t.Run("DeletedPodIsReplacedByARestore", func(t *testing.T) {
		before := n.pods(t, restorePods)
		victim := before[0].Name
		c.kubectl(t, "-n", n.name, "delete", "pod", victim, "--wait=false")
		var replacement corev1.Pod
		waitFor(t, podTimeout, "a Ready replacement of "+victim, func() (bool, error) {
			for _, p := range n.pods(t, restorePods) {
				if !slices.ContainsFunc(before, func(b corev1.Pod) bool { return b.Name == p.Name }) && podReady(p) {
					replacement = p
					return true, nil
				}
			}
			return false, nil
		})
		logs := n.logs(t, replacement.Name)
		line, ok := restoredLog(logs)
		if !ok {
			t.Fatalf("the replacement %s was not restored; its log:\n%s", replacement.Name, harness.Tail(logs, 30))
		}
		t.Logf("replacement %s of %s: %s", replacement.Name, victim, line)
	})

	t.Run("NewVersion", func(t *testing.T) {
		newVersionImage(t, c)
		c.kubectl(t, "-n", n.name, "scale", deployment, "--replicas", "2")
		old := n.published()

		// New restore pods refuse the old version's checkpoint and start cold, saying why.
		c.kubectl(t, "-n", n.name, "set", "image", deployment, container+"="+appImage2)
		c.kubectl(t, "-n", n.name, "rollout", "status", deployment, "--timeout", scaleTimeout.String())
		for _, p := range n.pods(t, restorePods) {
			logs := n.logs(t, p.Name)
			if !strings.Contains(logs, "phase=fallback") || strings.Contains(logs, `msg="restored:`) {
				t.Errorf("pod %s of the new version did not refuse the old checkpoint; its log:\n%s", p.Name, harness.Tail(logs, 30))
				continue
			}
			t.Logf("pod %s of v2: %s", p.Name, grepLine(logs, "phase=fallback"))
		}

		// The DaemonSet's new pod sees the checkpoint is not its app's and checkpoints again.
		c.kubectl(t, "-n", n.name, "set", "image", daemonSet, container+"="+appImage2)
		c.kubectl(t, "-n", n.name, "rollout", "status", daemonSet, "--timeout", podTimeout.String())
		if m := n.published(); m == nil || !m.Created.After(old.Created) {
			// Its readiness probe (crwrap inspect) accepts any intact checkpoint, the old
			// version's too: the rollout is "done" before the new checkpoint is.
			t.Logf("NOTE: kubectl rollout status %s returned before the new version's checkpoint was published", daemonSet)
		}
		waitFor(t, podTimeout, "a checkpoint of the new version", func() (bool, error) {
			m := n.published()
			return m != nil && m.Created.After(old.Created), nil
		})
		ck := n.pods(t, checkpointPods)
		if len(ck) != 1 {
			t.Fatalf("%d checkpoint pods", len(ck))
		}
		if logs := n.logs(t, ck[0].Name); !strings.Contains(logs, "checkpointing again") {
			t.Errorf("the new checkpoint pod does not say why it checkpointed again; its log:\n%s", harness.Tail(logs, 30))
		} else {
			t.Logf("checkpoint pod %s of v2: %s", ck[0].Name, grepLine(logs, "checkpointing again"))
		}

		// Pods started now restore the new checkpoint.
		c.kubectl(t, "-n", n.name, "rollout", "restart", deployment)
		c.kubectl(t, "-n", n.name, "rollout", "status", deployment, "--timeout", scaleTimeout.String())
		for _, p := range n.pods(t, restorePods) {
			if p.Spec.Containers[0].Image != appImage2 {
				continue
			}
			if line, ok := restoredLog(n.logs(t, p.Name)); !ok {
				t.Errorf("pod %s of v2 was not restored from the new checkpoint; its log:\n%s", p.Name, harness.Tail(n.logs(t, p.Name), 30))
			} else {
				t.Logf("pod %s of v2 after the new checkpoint: %s", p.Name, line)
			}
		}
	})
}

// grepLine is the first line of s that contains sub.
func grepLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
