package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/crwrap/crwrap/internal/checkpoint"
)

// lazyCheckpoint is a checkpoint with a page image of several chunks, the last one short.
func lazyCheckpoint(t *testing.T) (string, []byte) {
	t.Helper()
	dir, m := fakeCheckpoint(t)
	pages := make([]byte, 5*ChunkSize+12345)
	if _, err := rand.Read(pages); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "checkpoint/pages-1.img"), pages, 0o600); err != nil {
		t.Fatal(err)
	}
	m.Files = nil
	if err := checkpoint.WriteManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	return dir, pages
}

// rangeRepo is a registry whose range answers pass through change (nil: unchanged).
func rangeRepo(t *testing.T, change func(w http.ResponseWriter, r *http.Request, next http.Handler)) name.Repository {
	t.Helper()
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if change != nil && r.Header.Get("Range") != "" && strings.Contains(r.URL.Path, "/blobs/") {
			change(w, r, reg)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	repo, err := name.NewRepository(strings.TrimPrefix(srv.URL, "http://") + "/team/app")
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

func pushLazy(t *testing.T, change func(http.ResponseWriter, *http.Request, http.Handler)) (*Resolved, []byte) {
	t.Helper()
	dir, pages := lazyCheckpoint(t)
	p, err := push(t, dir, rangeRepo(t, change))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Resolve(context.Background(), p.Ref, Want{})
	if err != nil {
		t.Fatal(err)
	}
	if !CanPullLazy(r) {
		t.Fatal("pushed image has no chunk tables")
	}
	return r, pages
}

func pagesFile(t *testing.T, lp *LazyPull) *LazyFile {
	t.Helper()
	for _, f := range lp.Files() {
		if f.Path == "checkpoint/pages-1.img" {
			return f
		}
	}
	t.Fatalf("no lazy pages-1.img among %d files", len(lp.Files()))
	return nil
}

func TestPullLazyServesVerifiedChunks(t *testing.T) {
	res, pages := pushLazy(t, nil)
	dir := t.TempDir()
	lp, err := PullLazy(context.Background(), res, dir, 10*time.Second, WithFileDigests(true))
	if err != nil {
		t.Fatal(err)
	}
	defer lp.Close()
	f := pagesFile(t, lp)
	// A read across a chunk boundary, then the short last chunk, before anything streamed.
	for _, off := range []int64{3*ChunkSize - 100, int64(len(pages)) - 10} {
		got := make([]byte, 4096)
		n, err := f.ReadAt(got, off)
		want := pages[off:min(off+4096, int64(len(pages)))]
		if (err != nil && err != io.EOF) || !bytes.Equal(got[:n], want) {
			t.Fatalf("ReadAt %d: %d bytes, %v; content equal: %v", off, n, err, bytes.Equal(got[:n], want))
		}
	}
	if lp.DemandChunks() == 0 {
		t.Error("no chunk was fetched on demand")
	}
	if err := lp.Complete(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "checkpoint/pages-1.img"))
	if !bytes.Equal(b, pages) {
		t.Error("pages-1.img differs after Complete")
	}
}

// A chunk the registry serves changed is never handed out: the read fails, and so does
// every later one.
func TestPullLazyRefusesTamperedChunk(t *testing.T) {
	res, _ := pushLazy(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		b := rec.Body.Bytes()
		if len(b) > 5000 {
			b[len(b)/2] ^= 1
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(b)
	})
	lp, err := PullLazy(context.Background(), res, t.TempDir(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer lp.Close()
	f := pagesFile(t, lp)
	buf := make([]byte, 4096)
	if n, err := f.ReadAt(buf, 2*ChunkSize); !errors.Is(err, checkpoint.ErrDamaged) || n != 0 {
		t.Fatalf("read of a tampered chunk: %d bytes, %v; want 0, ErrDamaged", n, err)
	}
	if _, err := f.ReadAt(buf, 0); !errors.Is(err, checkpoint.ErrDamaged) {
		t.Fatalf("read after a tampered chunk: %v, want the pull failed", err)
	}
	if err := lp.Complete(context.Background()); err == nil {
		t.Fatal("Complete of a failed pull succeeded")
	}
}

// A registry that stops answering range requests fails the read after the stall timeout.
func TestPullLazyStall(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	res, _ := pushLazy(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	lp, err := PullLazy(context.Background(), res, t.TempDir(), 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer lp.Close()
	if _, err := pagesFile(t, lp).ReadAt(make([]byte, 10), 0); !errors.Is(err, ErrStalled) {
		t.Fatalf("read from a stalled registry: %v, want ErrStalled", err)
	}
	if err := lp.Complete(context.Background()); !errors.Is(err, ErrStalled) {
		t.Fatalf("Complete: %v, want ErrStalled", err)
	}
}

func TestParseChunkTableBounds(t *testing.T) {
	sums := base64.StdEncoding.EncodeToString(make([]byte, 2*32))
	tests := []struct {
		name string
		a    map[string]string
		ok   bool
	}{
		{"valid", map[string]string{AnnotationFileOffset: "1024", AnnotationFileSize: "1500000", AnnotationChunkSize: "1048576", AnnotationChunks: sums}, true},
		{"negative offset", map[string]string{AnnotationFileOffset: "-1", AnnotationFileSize: "1500000", AnnotationChunkSize: "1048576", AnnotationChunks: sums}, false},
		{"beyond the blob", map[string]string{AnnotationFileOffset: "1024", AnnotationFileSize: "2000000", AnnotationChunkSize: "1048576", AnnotationChunks: sums}, false},
		{"tiny chunks", map[string]string{AnnotationFileOffset: "0", AnnotationFileSize: "1000", AnnotationChunkSize: "500", AnnotationChunks: sums}, false},
		{"one digest short", map[string]string{AnnotationFileOffset: "1024", AnnotationFileSize: "1500000", AnnotationChunkSize: "1048576", AnnotationChunks: base64.StdEncoding.EncodeToString(make([]byte, 32))}, false},
		{"not base64", map[string]string{AnnotationFileOffset: "1024", AnnotationFileSize: "1500000", AnnotationChunkSize: "1048576", AnnotationChunks: "!!"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, has, err := parseChunkTable(v1.Descriptor{Size: 1501024 + 512, Annotations: tt.a})
			if !has || (err == nil) != tt.ok {
				t.Fatalf("has %v, err %v; want ok %v", has, err, tt.ok)
			}
		})
	}
}
