package cr

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// A checkpoint whose app never gets ready exits 1 and publishes nothing: the previous
// checkpoint stays published, unchanged and restorable.
func TestFailedCheckpointKeepsPrevious(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	want := a.mustCheckpoint()
	target := a.target()
	before := snapshot(t, a.root)

	never := a.variant("-warmup", "1h")
	p, code := never.checkpoint(harness.Options{}, "cr.readiness.timeout=1s", "cr.checkpoint.refresh=always")
	if code != 1 {
		t.Errorf("checkpoint of an app that is never ready exited %d, want 1", code)
	}
	if harness.FindLog(p, "phase", "publish") != nil {
		t.Errorf("the failed checkpoint logged phase=publish\nstderr:\n%s", p.Stderr)
	}
	if !strings.Contains(p.Stderr.String(), "nothing published") {
		t.Errorf("the failed checkpoint does not say that nothing was published\nstderr:\n%s", p.Stderr)
	}
	if got := a.target(); got != target {
		t.Errorf("published checkpoint changed: %s => %s", target, got)
	}
	if l := a.leftovers(); len(l) > 0 {
		t.Errorf("the failed checkpoint left %v", l)
	}
	sameSnapshot(t, "the checkpoint root after a failed checkpoint", before, snapshot(t, a.root))

	r := a.restoreReady()
	harness.AssertRestored(t, r)
	if got := a.get("/value"); got != want {
		t.Errorf("/value = %q, want the previous checkpoint's %q", got, want)
	}
	harness.Stop(t, r)
}

// crwrap killed with SIGKILL in the middle of a checkpoint: the previous checkpoint stays
// published, unchanged and restorable, and the next checkpoint run removes the leftovers.
func TestKilledCheckpointKeepsPrevious(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	want := a.mustCheckpoint()
	target := a.target()
	before := snapshot(t, a.versionDir())

	big := a.variant("-warmup", "300ms", "-heap", "512")
	p := harness.Start(t, harness.Options{}, big.args("checkpoint", big.props("cr.checkpoint.refresh=always"))...)
	harness.WaitLog(t, p, "phase", "identify", 2*time.Minute)
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := p.Wait(t, 30*time.Second); code != 128+int(syscall.SIGKILL) {
		t.Fatalf("crwrap exited %d, want %d (killed)", code, 128+int(syscall.SIGKILL))
	}
	if harness.FindLog(p, "phase", "dump") != nil {
		t.Fatalf("the dump had finished before the kill: the test did not interrupt a checkpoint\nstderr:\n%s", p.Stderr)
	}
	left := a.leftovers()
	if len(left) == 0 {
		t.Errorf("no .%s.tmp-* after killing crwrap mid-dump: the test does not exercise leftovers", a.name)
	}
	// Its CRIU may still be busy with the interrupted dump: let it finish or give up.
	waitUnused(t, a.root, time.Minute)

	if got := a.target(); got != target {
		t.Errorf("published checkpoint changed: %s => %s", target, got)
	}
	sameSnapshot(t, "the previous checkpoint after a killed checkpoint", before, snapshot(t, a.versionDir()))

	r := a.restoreReady()
	harness.AssertRestored(t, r)
	if got := a.get("/value"); got != want {
		t.Errorf("/value = %q, want the previous checkpoint's %q", got, want)
	}
	harness.Stop(t, r)

	// The next checkpoint run (which keeps the intact checkpoint) cleans up the interrupted one.
	k, code := a.checkpoint(harness.Options{})
	if code != 0 {
		t.Fatalf("next checkpoint exited %d\nstderr:\n%s", code, k.Stderr)
	}
	if l := a.leftovers(); len(l) > 0 {
		t.Errorf("the next checkpoint run left the interrupted attempt's %v", l)
	}
	if got := a.target(); got != target {
		t.Errorf("published checkpoint changed: %s => %s", target, got)
	}
	if _, err := harness.Get(big.url("/ready")); err == nil {
		t.Errorf("the killed checkpoint's app still answers on %s", big.addr())
	}
}

// cr.checkpoint.refresh=auto keeps an intact checkpoint of the same app; always dumps again.
func TestCheckpointRefresh(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	first := a.mustCheckpoint()
	target := a.target()
	before := snapshot(t, a.root)

	p, code := a.checkpoint(harness.Options{}, "cr.checkpoint.refresh=auto")
	if code != 0 {
		t.Fatalf("refresh=auto exited %d\nstderr:\n%s", code, p.Stderr)
	}
	if harness.FindLog(p, "phase", "keep") == nil || !strings.Contains(p.Stderr.String(), "keeping it") {
		t.Errorf("refresh=auto does not log that it keeps the checkpoint\nstderr:\n%s", p.Stderr)
	}
	if harness.FindLog(p, "phase", "start") != nil || harness.FindLog(p, "phase", "dump") != nil {
		t.Errorf("refresh=auto started or dumped the app although an intact checkpoint exists\nstderr:\n%s", p.Stderr)
	}
	if got := a.target(); got != target {
		t.Errorf("refresh=auto changed the published checkpoint: %s => %s", target, got)
	}
	sameSnapshot(t, "the checkpoint root after refresh=auto", before, snapshot(t, a.root))

	second := a.mustCheckpoint("cr.checkpoint.refresh=always")
	newTarget := a.target()
	if newTarget == target || newTarget == "" {
		t.Errorf("refresh=always did not publish a new version: target %q, was %q", newTarget, target)
	}
	if second == first {
		t.Errorf("refresh=always: the new checkpoint's value equals the first's %q", first)
	}
	if v := a.versions(); len(v) != 1 {
		t.Errorf("versions after refresh=always: %v, want only the new one", v)
	}
	r := a.restoreReady()
	harness.AssertRestored(t, r)
	if got := a.get("/value"); got != second {
		t.Errorf("/value = %q, want the new checkpoint's %q (first was %q)", got, second, first)
	}
	harness.Stop(t, r)
}
