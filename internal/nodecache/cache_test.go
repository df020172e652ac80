package nodecache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func fillWith(n *atomic.Int32, content string) Fill {
	return func(ctx context.Context, dir string) error {
		n.Add(1)
		time.Sleep(100 * time.Millisecond) // long enough for the others to queue up
		return os.WriteFile(filepath.Join(dir, "data"), []byte(content), 0o600)
	}
}

func TestGetFillsOnceForConcurrentCallers(t *testing.T) {
	c, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var fills atomic.Int32
	var wg sync.WaitGroup
	results := make(chan Result, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, res, err := c.Get(context.Background(), digest, fillWith(&fills, "x"))
			if err != nil {
				t.Error(err)
				return
			}
			defer r.Close()
			if b, err := os.ReadFile(filepath.Join(r.Dir, "data")); err != nil || string(b) != "x" {
				t.Errorf("entry content %q, %v", b, err)
			}
			results <- res
		}()
	}
	wg.Wait()
	close(results)
	if fills.Load() != 1 {
		t.Fatalf("filled %d times, want once", fills.Load())
	}
	count := map[Result]int{}
	for r := range results {
		count[r]++
	}
	if count[Miss] != 1 || count[Miss]+count[Waited]+count[Hit] != 8 {
		t.Errorf("results %v, want one miss", count)
	}
	_, res, err := c.Get(context.Background(), digest, fillWith(&fills, "y"))
	if err != nil || res != Hit {
		t.Errorf("later Get: %v %v, want a hit", res, err)
	}
}

func TestFailedFillLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	c, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	// What a filler killed mid-write leaves behind.
	hex := strings.TrimPrefix(digest, "sha256:")
	stale := filepath.Join(dir, "sha256", "."+hex+".tmp-dead")
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("registry went away")
	_, _, err = c.Get(context.Background(), digest, func(ctx context.Context, d string) error {
		if _, err := os.Stat(stale); !os.IsNotExist(err) {
			t.Errorf("stale partial entry still there while filling: %v", err)
		}
		_ = os.WriteFile(filepath.Join(d, "half"), []byte("x"), 0o600)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Get: %v, want the fill's error", err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "sha256"))
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".lock") {
			t.Errorf("left in the cache after a failed fill: %s", e.Name())
		}
	}
	if c.Has(digest) {
		t.Error("Has reports an entry after a failed fill")
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	c, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	started := make(chan struct{})
	go func() {
		_, _, _ = c.Get(context.Background(), digest, func(ctx context.Context, d string) error {
			close(started)
			<-release
			return errors.New("never mind")
		})
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, _, err = c.Get(ctx, digest, func(ctx context.Context, d string) error { return nil })
	close(release)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get while another fills, past its deadline: %v", err)
	}
}

func TestRememberRemovesReplacedEntry(t *testing.T) {
	grace := pruneGrace
	pruneGrace = 0
	defer func() { pruneGrace = grace }()
	c, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	r, _, err := c.Get(context.Background(), digest, fillWith(&n, "x"))
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if err := c.Remember("repo:tag", digest); err != nil {
		t.Fatal(err)
	}
	if d, _ := c.Lookup("repo:tag"); d != digest {
		t.Fatalf("Lookup: %q", d)
	}
	other := "sha256:" + strings.Repeat("f", 64)
	if err := c.Remember("repo:tag", other); err != nil {
		t.Fatal(err)
	}
	if c.Has(digest) {
		t.Error("the entry the tag no longer names is still cached")
	}
	// An entry held by a restore survives the move, and goes with the next one.
	third := "sha256:" + strings.Repeat("e", 64)
	r2, _, err := c.Get(context.Background(), other, fillWith(&n, "y"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Remember("repo:tag", third); err != nil {
		t.Fatal(err)
	}
	if !c.Has(other) {
		t.Error("an entry a restore holds was removed")
	}
	r2.Close()
	if err := c.Remember("repo:tag", digest); err != nil {
		t.Fatal(err)
	}
	if c.Has(other) {
		t.Error("an entry no ref names was kept after its reader closed")
	}
	if _, _, err := c.Get(context.Background(), "sha256:../../etc", fillWith(&n, "x")); err == nil {
		t.Error("Get accepted a digest that is a path")
	}
}

func TestBeginPublishAbort(t *testing.T) {
	c, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d := "sha256:" + strings.Repeat("ab", 32)
	_, res, p, err := c.Begin(ctx, d)
	if err != nil || res != Miss || p == nil {
		t.Fatalf("Begin on an empty cache: %v %v %v", res, p, err)
	}
	p.Abort()
	if c.Has(d) {
		t.Fatal("an aborted fill left an entry")
	}
	if left, _ := filepath.Glob(filepath.Join(c.Dir(), "sha256", ".*.tmp-*")); len(left) != 0 {
		t.Fatalf("an aborted fill left %v", left)
	}
	_, _, p, err = c.Begin(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.Dir(), "data"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c.Has(d) {
		t.Fatal("the entry is visible before Publish")
	}
	if err := p.Publish(); err != nil {
		t.Fatal(err)
	}
	r, res, p, err := c.Begin(ctx, d)
	if err != nil || res != Hit || p != nil {
		t.Fatalf("Begin after Publish: %v %v %v", res, p, err)
	}
	r.Close()
}
