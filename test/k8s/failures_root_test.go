package k8s

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/crwrap/crwrap/test/harness"
)

// example decodes one of the example manifests.
func example(t *testing.T, file string, obj any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "examples", "kubernetes", file))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, obj); err != nil {
		t.Fatalf("decode %s: %v", file, err)
	}
}

// failureText is what `kubectl` shows of a pod's failure: its termination message and its log.
func (n *namespace) failureText(t *testing.T, p corev1.Pod) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	text := ""
	if st := terminated(p); st != nil {
		text = st.Message + "\n"
	}
	for _, prev := range []string{"--previous=false", "--previous=true"} {
		out, _ := n.c.run(ctx, "", "-n", n.name, "logs", p.Name, "-c", container, prev)
		text += out
	}
	return text
}

// TestFatalErrorInDescribe: when crwrap gives up (a restore with cr.restore.fallback=fail and
// no checkpoint), `kubectl describe pod` shows why, from the termination message.
func TestFatalErrorInDescribe(t *testing.T) {
	c := requireCluster(t)
	appImages(t, c)
	n := newNamespace(t, c, "fatal")
	n.apply(t, overlay{Image: appImage, Replicas: 1, Patches: []string{
		deletePatch("apps/v1", "DaemonSet", "go-app-checkpoint"),
		containerPatch("Deployment", "go-app", "env:\n  - name: CR_RESTORE_FALLBACK\n    value: fail\n  - name: CR_RESTORE_WAIT\n    value: 1s"),
	}})
	pod, st := n.waitTerminated(t, restorePods, podTimeout)
	if st.ExitCode != 1 {
		t.Errorf("exit code %d, want 1", st.ExitCode)
	}
	msg := strings.TrimSpace(st.Message)
	first, _, _ := strings.Cut(msg, "\n")
	if !strings.HasPrefix(first, "restore failed") || !strings.Contains(first, "/cr/demo/go-app") {
		t.Errorf("termination message %q does not say that the restore of /cr/demo/go-app failed", msg)
	}
	// Poll: describe shows the message once the kubelet has reported the termination.
	waitFor(t, 30*time.Second, "kubectl describe pod shows the termination message", func() (bool, error) {
		out := c.kubectl(t, "-n", n.name, "describe", "pod", pod.Name)
		return strings.Contains(out, "Message:") && strings.Contains(out, first), fmt.Errorf("kubectl describe pod:\n%s", out)
	})
	t.Logf("kubectl describe pod %s: Message: %s", pod.Name, msg)
}

// TestConfigMapTypo: a cr.properties with a misspelt key fails both workloads at start with
// exit code 2 and the one-line error (file:line: key: what) as the termination message.
func TestConfigMapTypo(t *testing.T) {
	c := requireCluster(t)
	appImages(t, c)
	var cm corev1.ConfigMap
	example(t, "configmap.yaml", &cm)
	props := cm.Data["cr-properties"]
	lines := strings.Split(props, "\n")
	line := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "cr.checkpoint.name=") })
	if line < 0 {
		t.Fatalf("the example's cr.properties has no cr.checkpoint.name line:\n%s", props)
	}
	lines[line] = strings.Replace(lines[line], "cr.checkpoint.name=", "cr.checkpoint.nmae=", 1)
	patch, err := yaml.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]string{"name": cm.Name},
		"data": map[string]string{"cr-properties": strings.Join(lines, "\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("/etc/cr.properties:%d: cr.checkpoint.nmae: unknown key (did you mean cr.checkpoint.name?)", line+1)

	n := newNamespace(t, c, "typo")
	n.apply(t, overlay{Image: appImage, Replicas: 1, Patches: []string{string(patch)}})
	for _, w := range []string{checkpointPods, restorePods} {
		pod, st := n.waitTerminated(t, w, podTimeout)
		if st.ExitCode != 2 {
			t.Errorf("pod %s: exit code %d, want 2 (a configuration error)", pod.Name, st.ExitCode)
		}
		if got := strings.TrimSpace(st.Message); got != want {
			t.Errorf("pod %s: termination message %q, want %q", pod.Name, got, want)
		} else {
			t.Logf("pod %s: exit %d, termination message %q", pod.Name, st.ExitCode, got)
		}
	}
}

// capEffect is what the docs (docs/kubernetes.md, "Least privilege") say dropping an item of a
// workload's securityContext breaks.
type capEffect struct {
	effect string   // "fails" (the pod never gets Ready), "cold" (restore fails, cold start), "eager" (restored, not lazily)
	text   []string // one of these is in the failure (termination message or log)
}

var leastPrivilege = map[string]capEffect{
	"DaemonSet/SYS_ADMIN":   {"fails", []string{"operation not permitted"}},
	"DaemonSet/SYS_PTRACE":  {"eager", []string{"lazy restore failed"}},
	"DaemonSet/seccomp":     {"fails", []string{"session keyring"}},
	"Deployment/SYS_ADMIN":  {"fails", []string{"operation not permitted"}},
	"Deployment/NET_ADMIN":  {"cold", []string{"Unable to create a veth pair", "Could not process rule", "SO_SNDBUFFORCE"}},
	"Deployment/SYS_TIME":   {"cold", []string{"monotonic clock offset"}},
	"Deployment/SYS_PTRACE": {"eager", []string{"lazy restore failed"}},
	"Deployment/seccomp":    {"fails", []string{"session keyring"}},
}

// TestLeastPrivilege drops, one at a time, each capability the manifests add (and the Unconfined
// seccomp profile) and checks that it breaks what the docs say it breaks: the manifests'
// securityContext is exactly what works (TestExample runs it whole).
func TestLeastPrivilege(t *testing.T) {
	c := requireCluster(t)
	appImages(t, c)
	var ds appsv1.DaemonSet
	var dep appsv1.Deployment
	example(t, "checkpoint-daemonset.yaml", &ds)
	example(t, "restore-deployment.yaml", &dep)
	type variant struct {
		key, kind, name, fields string
	}
	var variants []variant
	for _, w := range []struct {
		kind, name string
		c          corev1.Container
	}{
		{"DaemonSet", ds.Name, ds.Spec.Template.Spec.Containers[0]},
		{"Deployment", dep.Name, dep.Spec.Template.Spec.Containers[0]},
	} {
		caps := w.c.SecurityContext.Capabilities.Add
		for _, drop := range caps {
			var rest []string
			for _, c := range caps {
				if c != drop {
					rest = append(rest, fmt.Sprintf("%q", c))
				}
			}
			variants = append(variants, variant{w.kind + "/" + string(drop), w.kind, w.name,
				fmt.Sprintf("securityContext:\n  capabilities:\n    add: [%s]", strings.Join(rest, ", "))})
		}
		variants = append(variants, variant{w.kind + "/seccomp", w.kind, w.name,
			"securityContext:\n  seccompProfile:\n    type: RuntimeDefault"})
	}
	for _, v := range variants {
		t.Run(strings.ReplaceAll(v.key, "/", "-without-"), func(t *testing.T) {
			want, ok := leastPrivilege[v.key]
			if !ok {
				t.Fatalf("the manifests add %s: the test (and docs/kubernetes.md) must say what dropping it breaks", v.key)
			}
			t.Parallel()
			n := newNamespace(t, c, "least-"+strings.ToLower(strings.ReplaceAll(strings.ReplaceAll(v.key, "/", "-"), "_", "")))
			patches := []string{containerPatch(v.kind, v.name, v.fields)}
			if v.kind == "DaemonSet" {
				// The Deployment comes once the checkpoint (and CRIU's kernel probe cache, which
				// a restore pod started before it does without) is published, or never.
				n.apply(t, overlay{Image: appImage, Patches: append(patches, deletePatch("apps/v1", "Deployment", "go-app"))})
				if want.effect != "fails" {
					n.waitReady(t, checkpointPods, 1, podTimeout)
				}
			}
			if v.kind == "Deployment" || want.effect != "fails" {
				n.apply(t, overlay{Image: appImage, Replicas: 1, Patches: patches})
			}
			selector := restorePods
			if v.kind == "DaemonSet" && want.effect == "fails" {
				selector = checkpointPods
			}
			var text string
			switch want.effect {
			case "fails":
				pod, st := n.waitTerminated(t, selector, podTimeout)
				text = n.failureText(t, pod)
				t.Logf("pod %s exited %d: %s", pod.Name, st.ExitCode, firstLine(st.Message))
			case "cold", "eager":
				pods := n.waitReady(t, selector, 1, podTimeout)
				text = n.logs(t, pods[0].Name)
				line, restored := restoredLog(text)
				switch {
				case want.effect == "cold" && restored:
					t.Fatalf("restored without %s; the log:\n%s", v.key, harness.Tail(text, 30))
				case want.effect == "cold":
					t.Logf("started cold: %s", grepLine(text, "phase=fallback"))
				case !restored:
					t.Fatalf("not restored; the log:\n%s", harness.Tail(text, 30))
				case !strings.Contains(line, "lazy=false"):
					t.Fatalf("restored lazily without %s: %s", v.key, line)
				default:
					t.Logf("restored with all memory loaded first: %s", line)
				}
			}
			if len(want.text) > 0 && !slices.ContainsFunc(want.text, func(s string) bool {
				return strings.Contains(strings.ToLower(text), strings.ToLower(s))
			}) {
				t.Errorf("without %s the failure says none of %q:\n%s", v.key, want.text, harness.Tail(text, 40))
			}
		})
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}
