package cr

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// A volume (cr.container.mounts) is the restoring pod's: content changed or added after the
// checkpoint is what the restored app reads.
func TestVolumeReadWithNewContent(t *testing.T) {
	vol := t.TempDir()
	f, g := filepath.Join(vol, "f"), filepath.Join(vol, "g")
	if err := os.WriteFile(f, []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	seen := filepath.Join(a.out, "volume")
	warmup := a.warmupCommand() + fmt.Sprintf(" && curl -sf --max-time 5 -o %s %s", seen, a.url("/file?path="+f))
	want := a.mustCheckpoint("cr.container.mounts="+vol, "cr.checkpoint.warmup="+warmup)
	if b, err := os.ReadFile(seen); err != nil || string(b) != "v1" {
		t.Fatalf("the checkpointed app read %q (%v) from the volume, want v1", b, err)
	}

	if err := os.WriteFile(f, []byte("v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g, []byte("added"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := a.restoreReady("cr.container.mounts=" + vol)
	harness.AssertRestored(t, p)
	if got := a.get("/value"); got != want {
		t.Errorf("/value = %q, want the checkpointed %q", got, want)
	}
	if got := a.get("/file?path=" + f); got != "v2" {
		t.Errorf("restored app reads %q from the volume, want the new content v2", got)
	}
	if got := a.get("/file?path=" + g); got != "added" {
		t.Errorf("restored app reads %q from a file added to the volume after the checkpoint, want added", got)
	}
	harness.Stop(t, p)
}

// /etc/hostname, /etc/hosts and /etc/resolv.conf are the restoring pod's, not copies saved from
// the checkpointing pod. Each crwrap runs in its own mount namespace whose /etc files are bound
// from files of the test.
func TestRestoredEtcFilesAreTheNewPods(t *testing.T) {
	etc := []string{"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}
	for _, f := range etc {
		if fi, err := os.Stat(f); err != nil || !fi.Mode().IsRegular() {
			t.Skipf("%s is not a regular file here: crwrap does not bind it", f)
		}
	}
	// pod makes the /etc files of one pod and the wrapper that runs crwrap with them.
	pod := func(tag string) (map[string]string, []string) {
		dir := t.TempDir()
		content := map[string]string{}
		script := "set -e"
		args := []string{}
		for i, f := range etc {
			c := fmt.Sprintf("%s-%s\n", tag, filepath.Base(f))
			src := filepath.Join(dir, filepath.Base(f))
			if err := os.WriteFile(src, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
			content[f] = c
			script += fmt.Sprintf("; mount --bind \"$%d\" %s", i+1, f)
			args = append(args, src)
		}
		script += fmt.Sprintf("; shift %d; exec \"$@\"", len(etc))
		wrapper := append([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"}, args...)
		return content, wrapper
	}
	oldPod, oldWrap := pod(randomName(t, "checkpointing-pod-"))
	newPod, newWrap := pod(randomName(t, "restoring-pod-"))

	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	warmup := a.warmupCommand()
	for i, f := range etc {
		warmup += fmt.Sprintf(" && curl -sf --max-time 5 -o %s %s", filepath.Join(a.out, fmt.Sprint("etc", i)), a.url("/file?path="+f))
	}
	props := a.props("cr.checkpoint.warmup=" + warmup)
	c := harness.StartWrapped(t, oldWrap, harness.Options{}, a.args("checkpoint", props)...)
	if code := c.Wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("checkpoint exited %d\nstderr:\n%s", code, c.Stderr)
	}
	want := a.checkpointedValue()
	for i, f := range etc {
		b, _ := os.ReadFile(filepath.Join(a.out, fmt.Sprint("etc", i)))
		if string(b) != oldPod[f] {
			t.Fatalf("the checkpointed app read %q from %s, want its pod's %q", b, f, oldPod[f])
		}
	}

	p := harness.StartWrapped(t, newWrap, harness.Options{}, a.args("restore", props)...)
	harness.WaitHTTP(t, p, a.url("/ready"), time.Minute)
	harness.WaitLog(t, p, "phase", "ready", time.Minute)
	harness.AssertRestored(t, p)
	if got := a.get("/value"); got != want {
		t.Errorf("/value = %q, want the checkpointed %q", got, want)
	}
	for _, f := range etc {
		got := a.get("/file?path=" + f)
		if got != newPod[f] {
			what := "something else"
			if strings.HasPrefix(got, "checkpointing-pod-") {
				what = "the checkpointing pod's"
			}
			t.Errorf("restored app reads %q from %s (%s), want the restoring pod's %q", got, f, what, newPod[f])
		}
	}
	harness.Stop(t, p)
}
