package lazyfs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// failing fails every read past half its size, as a page image whose chunk did not verify.
type failing struct{ b []byte }

func (f failing) Size() int64 { return int64(len(f.b)) }

func (f failing) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(f.b))/2 {
		return 0, errors.New("chunk does not match its digest")
	}
	return copy(p, f.b[off:]), nil
}

func TestViewReadsAndFails(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("FUSE mounts need root (the root tests cover lazy fetches end to end)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	src := filepath.Join(t.TempDir(), "core-1.img")
	want := bytes.Repeat([]byte("core"), 5000)
	if err := os.WriteFile(src, want, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	plain, err := OSFile(f)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	start := time.Now()
	m, err := New(dir, map[string]File{"core-1.img": plain, "pages-1.img": failing{make([]byte, 1<<20)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mounted in %v", time.Since(start))
	defer func() {
		if err := m.Unmount(); err != nil {
			t.Error(err)
		}
	}()
	got, err := os.ReadFile(filepath.Join(dir, "core-1.img"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read through the view: %v, equal %v", err, bytes.Equal(got, want))
	}
	names, _ := os.ReadDir(dir)
	if len(names) != 2 {
		t.Errorf("%d entries, want 2", len(names))
	}
	p, err := os.Open(filepath.Join(dir, "pages-1.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.ReadAt(make([]byte, 4096), 0); err != nil {
		t.Errorf("read of the good half: %v", err)
	}
	if _, err := p.ReadAt(make([]byte, 4096), 1<<19); !errors.Is(err, syscall.EIO) {
		t.Errorf("read of the failing half: %v, want EIO", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "core-1.img"), nil, 0o600); err == nil {
		t.Error("the view accepted a write")
	}
}
