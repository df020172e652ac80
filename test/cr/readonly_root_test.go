package cr

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/crwrap/crwrap/test/harness"
	"golang.org/x/sys/unix"
)

// Restore from a checkpoint root mounted read-only works and writes nothing there.
func TestRestoreReadOnly(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	want := a.mustCheckpoint()
	before := snapshot(t, a.root)

	mountReadOnly(t, a.root)
	if err := os.WriteFile(filepath.Join(a.root, "probe"), nil, 0o600); err == nil {
		t.Fatalf("%s is writable after the read-only remount", a.root)
	}

	p := a.restoreReady()
	harness.AssertRestored(t, p)
	if got := a.get("/value"); got != want {
		t.Errorf("/value = %q, want the checkpointed %q", got, want)
	}
	if got := a.get("/counter"); got != "4" {
		t.Errorf("/counter = %q, want 4", got)
	}
	harness.Stop(t, p)
	sameSnapshot(t, "the read-only checkpoint root", before, snapshot(t, a.root))
}

// mountReadOnly bind-mounts dir onto itself read-only until the test ends.
func mountReadOnly(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("mount", "--bind", dir, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount --bind %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	if out, err := exec.Command("mount", "-o", "remount,bind,ro", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s read-only: %v: %s", dir, err, out)
	}
}
