package checkpoint

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeVersion(t *testing.T, w *Writer, content string) string {
	t.Helper()
	tmp, err := w.NewVersion()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "data"), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteManifest(tmp, &Manifest{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	return tmp
}

func readData(t *testing.T, s Store) string {
	t.Helper()
	r, err := s.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := os.ReadFile(filepath.Join(r.Dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPublishReplacesAtomically(t *testing.T) {
	s := Store{Dir: filepath.Join(t.TempDir(), "apps"), Name: "app"}
	if _, err := s.Open(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open before any publish: %v, want ErrNotFound", err)
	}
	w, err := s.Lock()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Publish(writeVersion(t, w, "one")); err != nil {
		t.Fatal(err)
	}
	if got := readData(t, s); got != "one" {
		t.Fatalf("after first publish: %q", got)
	}
	// A reader holding version one keeps it while two is published.
	r, err := s.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Publish(writeVersion(t, w, "two")); err != nil {
		t.Fatal(err)
	}
	if got := readData(t, s); got != "two" {
		t.Fatalf("after second publish: %q", got)
	}
	if b, err := os.ReadFile(filepath.Join(r.Dir, "data")); err != nil || string(b) != "one" {
		t.Fatalf("held version one: %q, %v", b, err)
	}
	r.Close()
	// The next publish removes the unheld old versions.
	if err := w.Publish(writeVersion(t, w, "three")); err != nil {
		t.Fatal(err)
	}
	w.Unlock()
	entries, _ := os.ReadDir(s.Dir)
	var versions []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".app.v") {
			versions = append(versions, e.Name())
		}
	}
	if len(versions) != 1 {
		t.Fatalf("versions left: %v, want only the current one", versions)
	}
}

func TestLockRemovesInterruptedWrites(t *testing.T) {
	s := Store{Dir: t.TempDir(), Name: "app"}
	w, err := s.Lock()
	if err != nil {
		t.Fatal(err)
	}
	tmp := writeVersion(t, w, "half") // never published: as if crwrap was killed
	w.Unlock()
	if _, err := os.Stat(tmp); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an unpublished version is visible: %v", err)
	}
	w, err = s.Lock()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Unlock()
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover %s not removed: %v", tmp, err)
	}
}

func TestPublishOverPlainDirectory(t *testing.T) {
	s := Store{Dir: t.TempDir(), Name: "app"}
	if err := os.MkdirAll(s.Path(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteManifest(s.Path(), &Manifest{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	w, err := s.Lock()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Unlock()
	if err := w.Publish(writeVersion(t, w, "new")); err != nil {
		t.Fatal(err)
	}
	if got := readData(t, s); got != "new" {
		t.Fatalf("got %q", got)
	}
}

func TestOpenWithoutManifestIsDamaged(t *testing.T) {
	s := Store{Dir: t.TempDir(), Name: "app"}
	if err := os.MkdirAll(s.Path(), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Open: %v, want ErrDamaged", err)
	}
}

func TestLockContextGivesUpWhenDone(t *testing.T) {
	s := Store{Dir: t.TempDir(), Name: "app"}
	held, err := s.Lock()
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock()
	cause := errors.New("terminated")
	ctx, cancel := context.WithCancelCause(context.Background())
	waited := 0
	w, err := s.LockContext(ctx, func() {
		waited++
		cancel(cause) // as a signal arriving while crwrap waits
	})
	if !errors.Is(err, cause) {
		t.Fatalf("LockContext while another writer holds the name and ctx is done: %v, %v; want the cause", w, err)
	}
	if waited != 1 {
		t.Errorf("onWait called %d times, want 1", waited)
	}
	// Once the other writer is gone the name is free again, and Unlock twice is harmless.
	held.Unlock()
	held.Unlock()
	w, err = s.LockContext(context.Background(), func() { t.Error("onWait called although the name is free") })
	if err != nil {
		t.Fatal(err)
	}
	w.Unlock()
}
