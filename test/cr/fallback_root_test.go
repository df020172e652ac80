package cr

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crwrap/crwrap/internal/checkpoint"
	"github.com/crwrap/crwrap/test/harness"
)

// coldStarted checks that the restore fell back for reason and the app then started cold:
// ready, with a value of its own (not the checkpointed one) and a fresh counter. The app keeps
// running.
func coldStarted(t *testing.T, a *testApp, p *harness.Proc, reason, checkpointed string) harness.LogEntry {
	t.Helper()
	e := harness.AssertFallback(t, p, reason)
	t.Logf("fallback: reason=%s error=%s", e.Str("reason"), e.Str("error"))
	if r := harness.FindLog(p, "phase", "ready"); r == nil || r.Str("mode") != "cold" {
		t.Errorf("no phase=ready mode=cold log line after the fallback: %v", r)
	}
	got := a.get("/value")
	if len(got) != 32 {
		t.Errorf("cold-started /value = %q, want 32 hex digits", got)
	}
	if got == checkpointed {
		t.Errorf("cold-started /value = %q is the checkpointed one: the checkpoint was restored", got)
	}
	if c := a.get("/counter"); c != "1" {
		t.Errorf("cold-started first /counter = %q, want 1", c)
	}
	return e
}

// imageFile returns the one checkpoint image matching pattern (e.g. "pages-*.img").
func imageFile(t *testing.T, a *testApp, pattern string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(a.versionDir(), "checkpoint", pattern))
	if len(m) == 0 {
		t.Fatalf("no checkpoint/%s in %s", pattern, a.versionDir())
	}
	return m[0]
}

func TestFallbackDamagedTruncatedPages(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	want := a.mustCheckpoint()
	pages := imageFile(t, a, "pages-*.img")
	fi, err := os.Stat(pages)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(pages, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	p := a.restoreReady()
	coldStarted(t, a, p, "damaged", want)
	harness.Stop(t, p)
}

func TestFallbackDamagedMissingImage(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	want := a.mustCheckpoint()
	if err := os.Remove(imageFile(t, a, "pstree.img")); err != nil {
		t.Fatal(err)
	}
	p := a.restoreReady()
	coldStarted(t, a, p, "damaged", want)
	harness.Stop(t, p)
}

// A checkpoint of the same command whose executable changed since (one byte, same size) is
// another app's: it is not restored.
func TestFallbackChangedBinarySameSize(t *testing.T) {
	src, err := os.ReadFile(harness.TestApp(t))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "testapp")
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	a.bin = bin
	want := a.mustCheckpoint()

	// Flip one byte of a string constant: the program still runs, same size, other content.
	i := bytes.Index(src, []byte("warming up"))
	if i < 0 {
		t.Fatal(`no "warming up" in the test app's binary`)
	}
	changed := bytes.Clone(src)
	changed[i] = 'W'
	if err := os.WriteFile(bin, changed, 0o755); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(bin); fi.Size() != int64(len(src)) {
		t.Fatalf("size changed: %d, was %d", fi.Size(), len(src))
	}
	p := a.restoreReady()
	coldStarted(t, a, p, "foreign", want)
	harness.Stop(t, p)
}

// A checkpoint whose manifest says it was made under another kernel is not restored. The edit
// is sealed again (crwrap.json.sha256) as a tool moving checkpoints between hosts would, so it
// passes the integrity checks and the host check decides.
func TestFallbackIncompatibleKernel(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	want := a.mustCheckpoint()
	manifest := filepath.Join(a.versionDir(), "crwrap.json")
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	host, ok := m["host"].(map[string]any)
	if !ok || host["kernel"] == nil {
		t.Fatalf("crwrap.json has no host.kernel: %s", b)
	}
	host["kernel"] = "2.6.32-other-host"
	if b, err = json.MarshalIndent(m, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifest, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := checkpoint.SealManifest(a.versionDir()); err != nil {
		t.Fatal(err)
	}
	p := a.restoreReady()
	coldStarted(t, a, p, "incompatible", want)
	harness.Stop(t, p)
}

// A checkpoint that passes every check but that CRIU cannot restore (an image's magic number
// overwritten in place: same size) falls back to a cold start.
func TestFallbackRestoreFailed(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	want := a.mustCheckpoint()
	img := imageFile(t, a, "pstree.img")
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xde, 0xad, 0xbe, 0xef}, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p := a.restoreReady()
	e := coldStarted(t, a, p, "restore_failed", want)
	// Nothing of the failed attempt is left: no state, cgroup, process or mount of its container.
	id := regexp.MustCompile(`crwrap-[0-9a-f]{12}`).FindString(e.Str("error"))
	if id == "" {
		t.Fatalf("the fallback error names no container: %s", e.Str("error"))
	}
	rendered := false
	for _, e := range harness.JSONLog(p) {
		rendered = rendered || (e.Str("phase") == "render" && e.Str("container") == id)
	}
	if !rendered {
		t.Fatalf("the failed attempt's container %s was never rendered", id)
	}
	for _, l := range leftoversOf(p, id) {
		t.Errorf("the failed restore left %s", l)
	}
	// The same look finds the cold-started app's container: the checks above look in the right places.
	var cold string
	for _, e := range harness.JSONLog(p) {
		if e.Str("phase") == "render" && e.Str("container") != id {
			cold = e.Str("container")
		}
	}
	if cold == "" {
		t.Fatalf("no render of the cold start's container in the log")
	}
	if l := leftoversOf(p, cold); len(l) < 3 {
		t.Errorf("the leftover check does not see the running cold start %s: only %v", cold, l)
	}
	harness.Stop(t, p)
}

// No checkpoint: crwrap waits cr.restore.wait for one to appear, then starts the app cold.
func TestFallbackMissingAfterWait(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	start := time.Now()
	p := a.restoreReady("cr.restore.wait=1s")
	e := coldStarted(t, a, p, "missing", "")
	harness.Stop(t, p)
	if d, ok := e["duration_ms"].(float64); !ok || d < 950 || d > 5000 {
		t.Errorf("fallback after %v ms, want about 1000 (cr.restore.wait=1s)", e["duration_ms"])
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("cold-started app ready %v after crwrap started, want >= 1s (cr.restore.wait)", d)
	}
}

// With cr.restore.fallback=fail, no checkpoint is an error: exit 1, the app never started.
func TestFallbackFailMissingExits1(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	p := a.restore(harness.Options{}, "cr.restore.fallback=fail")
	if code := p.Wait(t, time.Minute); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	e := harness.FindLog(p, "phase", "fallback")
	if e == nil || e.Str("reason") != "missing" {
		t.Errorf("want a phase=fallback reason=missing log line, got %v\nstderr:\n%s", e, p.Stderr)
	}
	if harness.FindLog(p, "phase", "start") != nil || harness.FindLog(p, "phase", "ready") != nil {
		t.Errorf("the app was started although cr.restore.fallback=fail\nstderr:\n%s", p.Stderr)
	}
	if _, err := harness.Get(a.url("/ready")); err == nil {
		t.Errorf("something answers on %s", a.addr())
	}
}

// A checkpoint published while a restore waits for it (cr.restore.wait) is restored.
func TestRestoreWaitsForCheckpoint(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	p := a.restore(harness.Options{}, "cr.restore.wait=2m")
	harness.WaitLog(t, p, "msg", "waiting for a checkpoint to appear", 30*time.Second)
	want := a.mustCheckpoint()
	harness.WaitHTTP(t, p, a.url("/ready"), time.Minute)
	harness.WaitLog(t, p, "phase", "ready", time.Minute)
	harness.AssertRestored(t, p)
	if got := a.get("/value"); got != want {
		t.Errorf("/value = %q, want the checkpointed %q", got, want)
	}
	harness.Stop(t, p)
}

// leftoversOf lists what of container id still exists: its libcontainer state and scratch
// directory (seen in crwrap's own mount namespace, where /run may be private), cgroups,
// processes, and mounts.
func leftoversOf(p *harness.Proc, id string) []string {
	var out []string
	for _, d := range runDirs(p) {
		if _, err := os.Stat(filepath.Join(d, id)); err == nil {
			out = append(out, filepath.Join(d, id))
		}
	}
	for _, pat := range []string{"/sys/fs/cgroup/*/crwrap/" + id, "/sys/fs/cgroup/*/*/crwrap/" + id, "/sys/fs/cgroup/crwrap/" + id} {
		m, _ := filepath.Glob(pat)
		for _, d := range m {
			out = append(out, "cgroup "+d)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	for _, c := range procs {
		if b, err := os.ReadFile(c); err == nil && strings.Contains(string(b), id) {
			out = append(out, "process "+filepath.Base(filepath.Dir(c)))
		}
	}
	if b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.Cmd.Process.Pid), "mountinfo")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, id) {
				out = append(out, "mount "+l)
			}
		}
	}
	return out
}

// runDirs are crwrap's state and scratch directories as its own mount namespace sees them.
func runDirs(p *harness.Proc) []string {
	root := filepath.Join("/proc", strconv.Itoa(p.Cmd.Process.Pid), "root")
	return []string{filepath.Join(root, "run", "crwrap-state"), filepath.Join(root, "run", "crwrap")}
}

// A checkpoint of another command line (here: other flags) is another app's: not restored.
func TestFallbackForeignCommand(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	want := a.mustCheckpoint()
	other := a.variant("-warmup", "300ms", "-heap", "8")
	other.port = a.port // same address: only the flags differ
	p := other.restoreReady()
	coldStarted(t, other, p, "foreign", want)
	harness.Stop(t, p)
}

// With cr.restore.verify=digest, damage that keeps every size (an image overwritten in place)
// is found before CRIU runs: reason damaged, not restore_failed.
func TestFallbackDamagedSameSizeWithDigests(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	want := a.mustCheckpoint()
	img := imageFile(t, a, "pages-*.img")
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("damage"), 4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p := a.restoreReady("cr.restore.verify=digest")
	coldStarted(t, a, p, "damaged", want)
	harness.Stop(t, p)
}

// A restored app that does not become ready in cr.readiness.timeout is killed and the app is
// started cold. The probe is ready only while /counter answers 1: true once for the
// checkpointed app and for a cold start, never for a restore (its counter continues).
func TestFallbackNotReady(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	probe := "cr.container.readiness=" + fmt.Sprintf("curl -sf --max-time 2 -o /dev/null %s && curl -sf --max-time 2 %s | grep -qx 1", a.url("/ready"), a.url("/counter"))
	want := a.mustCheckpoint(probe, "cr.readiness.timeout=2s")
	p := a.restoreReady(probe, "cr.readiness.timeout=2s")
	e := harness.AssertFallback(t, p, "not_ready")
	t.Logf("fallback: reason=%s error=%s", e.Str("reason"), e.Str("error"))
	if r := harness.FindLog(p, "phase", "ready"); r == nil || r.Str("mode") != "cold" {
		t.Errorf("no phase=ready mode=cold log line after the fallback: %v", r)
	}
	if got := a.get("/value"); got == want || len(got) != 32 {
		t.Errorf("cold-started /value = %q, want a new value (checkpointed: %q)", got, want)
	}
	if c := a.get("/counter"); c != "2" {
		t.Errorf("/counter = %q, want 2 (the cold start's probe asked once)", c)
	}
	harness.Stop(t, p)
}
