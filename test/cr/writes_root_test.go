package cr

import (
	"archive/tar"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crwrap/crwrap/test/harness"
)

func randomName(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// What the app wrote during warm-up into its root filesystem (an overlay of the pod's root)
// and into its /dev/shm tmpfs is there after restore; its root filesystem writes never reach
// the host's.
func TestRootfsAndTmpfsWritesSurvive(t *testing.T) {
	rootFile := "/var/tmp/" + randomName(t, "crwrap-test-")
	shmFile := "/dev/shm/" + randomName(t, "crwrap-test-")
	t.Cleanup(func() { _ = os.Remove(rootFile); _ = os.Remove(shmFile) })
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16", "-write", rootFile+"=hello", "-write", shmFile+"=shm")
	want := a.mustCheckpoint()

	for _, f := range []string{rootFile, shmFile} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the app's write to %s reached the host (stat: %v)", f, err)
		}
	}
	diff := filepath.Join(a.versionDir(), "rootfs-diff.tar")
	names := tarNames(t, diff)
	if !names[strings.TrimPrefix(rootFile, "/")] {
		t.Errorf("rootfs-diff.tar lacks %s; it has %v", rootFile, names)
	}
	if names[strings.TrimPrefix(shmFile, "/")] {
		t.Errorf("rootfs-diff.tar has the tmpfs file %s", shmFile)
	}

	p := a.restoreReady()
	harness.AssertRestored(t, p)
	if got := a.get("/value"); got != want {
		t.Errorf("/value = %q, want the checkpointed %q", got, want)
	}
	if got := a.get("/file?path=" + rootFile); got != "hello" {
		t.Errorf("restored app reads %q from %s, want hello", got, rootFile)
	}
	if got := a.get("/file?path=" + shmFile); got != "shm" {
		t.Errorf("restored app reads %q from %s, want shm", got, shmFile)
	}
	harness.Stop(t, p)
	for _, f := range []string{rootFile, shmFile} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after restore, %s exists on the host (stat: %v)", f, err)
		}
	}
}

// tarNames lists the entries of a tar file, without a leading "./" or "/".
func tarNames(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		names[strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/"), "/")] = true
	}
}

// A file of the pod's root that the app deleted stays deleted after a restore (an overlay
// whiteout, saved in deleted.files), and stays on the host.
func TestRootfsDeletionSurvives(t *testing.T) {
	hostFile := "/var/tmp/" + randomName(t, "crwrap-test-")
	if err := os.WriteFile(hostFile, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(hostFile) })
	a := newTestApp(t, "-warmup", "300ms", "-remove", hostFile)
	a.mustCheckpoint()
	p := a.restoreReady()
	harness.AssertRestored(t, p)
	if got, err := harness.Get(a.url("/file?path=" + hostFile)); err == nil {
		t.Errorf("after restore the app reads %q from %s, which it deleted", got, hostFile)
	}
	harness.Stop(t, p)
	if b, err := os.ReadFile(hostFile); err != nil || string(b) != "host" {
		t.Errorf("the host's %s: %q, %v (want it untouched)", hostFile, b, err)
	}
}
