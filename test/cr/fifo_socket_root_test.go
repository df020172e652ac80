package cr

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crwrap/crwrap/test/harness"
)

// A FIFO the app made in its root filesystem, and holds open, is saved in rootfs-diff.tar and
// made again before CRIU runs (CRIU reopens it by path): the restored app still talks
// through it.
func TestFIFOInRootfs(t *testing.T) {
	fifo := "/var/tmp/" + randomName(t, "crwrap-fifo-")
	t.Cleanup(func() { _ = os.Remove(fifo) })
	a := newTestApp(t, "-warmup", "300ms", "-fifo", fifo)
	want := a.mustCheckpoint()
	if names := tarNames(t, filepath.Join(a.versionDir(), "rootfs-diff.tar")); !names[strings.TrimPrefix(fifo, "/")] {
		t.Errorf("rootfs-diff.tar lacks the FIFO %s; it has %v", fifo, names)
	}
	if _, err := os.Lstat(fifo); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the app's %s reached the host (stat: %v)", fifo, err)
	}
	p := a.restoreReady()
	harness.AssertRestored(t, p)
	if got := a.get("/value"); got != want {
		t.Errorf("/value = %q, want the checkpointed %q", got, want)
	}
	if got := a.get("/fifo?msg=through-the-fifo"); got != "through-the-fifo" {
		t.Errorf("/fifo after restore = %q", got)
	}
	harness.Stop(t, p)
}

// A unix socket bound to a path in the app's root filesystem does not stop the checkpoint:
// the socket file is not archived (as in moby's archive code) and CRIU binds the socket
// again; the restored app still accepts connections on it.
func TestUnixSocketInRootfs(t *testing.T) {
	sock := "/var/tmp/" + randomName(t, "crwrap-sock-")
	t.Cleanup(func() { _ = os.Remove(sock) })
	a := newTestApp(t, "-warmup", "300ms", "-unix", sock)
	want := a.mustCheckpoint()
	if diff := filepath.Join(a.versionDir(), "rootfs-diff.tar"); fileExists(diff) && tarNames(t, diff)[strings.TrimPrefix(sock, "/")] {
		t.Errorf("rootfs-diff.tar has the socket file %s", sock)
	}
	p := a.restoreReady()
	harness.AssertRestored(t, p)
	if got := a.get("/value"); got != want {
		t.Errorf("/value = %q, want the checkpointed %q", got, want)
	}
	if got := a.get("/unix?msg=through-the-socket"); got != "through-the-socket" {
		t.Errorf("/unix after restore = %q", got)
	}
	harness.Stop(t, p)
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
