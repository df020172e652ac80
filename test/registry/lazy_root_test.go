package registry

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// lazyProps are the settings of a restore with pages on demand.
var lazyProps = []string{"cr.restore.fetch=lazy", "cr.restore.fetch-timeout=3s"}

// A fresh node B restores with cr.restore.fetch=lazy: the small files first, the page image by
// range requests (no whole GET of it), memory intact; the background fetch then publishes a
// complete, verified cache entry that B's next restore uses without the registry's blobs.
func TestLazyFetchRestore(t *testing.T) {
	a := newTestApp(t, "-warmup", "200ms", "-heap", "32")
	reg := startRegistry(t, registryOptions{})
	nodeA, nodeB := newNode(t), newNode(t)
	want, push := nodeA.checkpoint(a, reg.repo(), reg.env())
	pages := pagesBlob(t, reg, push.Str("image"))
	if m := manifestOf(t, reg, push.Str("image")); !hasChunkTable(m, pages) {
		t.Fatalf("the pages layer has no chunk table: %+v", m)
	}

	p := nodeB.restoreReady(a, reg.repo(), reg.env(), lazyProps...)
	harness.AssertRestored(t, p)
	pull := harness.FindLog(p, "phase", "pull")
	if pull == nil || pull.Str("fetch") != "lazy" || pull.Str("cache") != "miss" {
		t.Fatalf("phase=pull %v, want fetch=lazy cache=miss\nstderr:\n%s", pull, p.Stderr)
	}
	if got := harness.MustGet(t, a.url(""), "/value"); got != want {
		t.Errorf("/value = %q, want the checkpointed %q", got, want)
	}
	if got := harness.MustGet(t, a.url(""), "/heap"); got != "32 MiB intact=true" {
		t.Errorf("/heap = %q", got)
	}
	if e := harness.FindLog(p, "phase", "fetch-ready"); e == nil || e.Str("bytes") == "" || e.Str("bytes") == "0" {
		t.Errorf("no phase=fetch-ready with the bytes fetched before ready: %v", e)
	}
	harness.WaitLog(t, p, "phase", "fetch", time.Minute)
	if e := harness.FindLog(p, "phase", "fetch"); e.Str("level") != "info" {
		t.Fatalf("background fetch: %v\nstderr:\n%s", e, p.Stderr)
	}
	harness.Stop(t, p)
	if n := reg.blobGets(pages); n != 0 {
		t.Errorf("the pages blob was fetched whole %d times, want by ranges only", n)
	}
	if n := reg.rangeGets(pages); n == 0 {
		t.Errorf("no range request for the pages blob\nregistry log:\n%s", reg.log)
	}
	if got := nodeB.cacheEntries(); len(got) != 1 {
		t.Errorf("cache entries %v, want the one lazily fetched", got)
	}
	if left := nodeB.cacheLeftovers(); len(left) > 0 {
		t.Errorf("cache leftovers: %v", left)
	}

	ranges := reg.rangeGets(pages)
	p = nodeB.restoreReady(a, reg.repo(), reg.env(), lazyProps...)
	harness.AssertRestored(t, p)
	if pull := harness.FindLog(p, "phase", "pull"); pull == nil || pull.Str("cache") != "hit" {
		t.Errorf("second restore: phase=pull %v, want cache=hit", pull)
	}
	if got := harness.MustGet(t, a.url(""), "/heap"); got != "32 MiB intact=true" {
		t.Errorf("second restore: /heap = %q", got)
	}
	harness.Stop(t, p)
	if reg.rangeGets(pages) != ranges || reg.blobGets(pages) != 0 {
		t.Error("the second restore fetched the pages blob again instead of using the cache")
	}
}

// The registry stops answering range requests for the page image while node B restores:
// bounded by cr.restore.fetch-timeout, the app is stopped and the pod starts cold with reason
// pull_failed; nothing is left in the cache.
func TestLazyFetchStalledRegistry(t *testing.T) {
	ps := pushOne(t)
	px := startProxy(t, ps.reg.addr)
	px.blob = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if !strings.HasSuffix(r.URL.Path, ps.pages) {
			next.ServeHTTP(w, r)
			return
		}
		<-r.Context().Done() // a registry that hangs
	}
	lazyCold(t, ps, px.repo(), "pull_failed", "stalled")
}

// The registry serves the page image with one byte changed: the chunk fails its digest and is
// never handed to the app; a cold start with reason damaged, nothing in the cache.
func TestLazyFetchTamperedChunk(t *testing.T) {
	ps := pushOne(t)
	px := startProxy(t, ps.reg.addr)
	px.blob = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if !strings.HasSuffix(r.URL.Path, ps.pages) {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		b := rec.Body.Bytes()
		if len(b) > 0 {
			b[len(b)/2] ^= 0xff
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(b)
	}
	lazyCold(t, ps, px.repo(), "damaged", "does not match its digest")
}

// lazyCold restores on an empty node with pages on demand through image and expects a cold
// start with reason (its error mentioning says), and nothing in the node's cache.
func lazyCold(t *testing.T, ps *pushed, image, reason, says string) {
	t.Helper()
	n := newNode(t)
	p := n.restoreReady(ps.a, image, ps.reg.env(), lazyProps...)
	e := harness.FindLog(p, "phase", "fallback")
	if e == nil {
		t.Fatalf("no phase=fallback in the log (want reason=%s)\nstderr:\n%s", reason, p.Stderr)
	}
	if got := e.Str("reason"); got != reason || !strings.Contains(e.Str("error"), says) {
		t.Errorf("fallback reason=%s (%s), want %s mentioning %q", got, e.Str("error"), reason, says)
	}
	if got := harness.MustGet(t, ps.a.url(""), "/counter"); got != "1" {
		t.Errorf("after the fallback /counter = %q, want 1 (a cold start)", got)
	}
	harness.Stop(t, p)
	if left := n.cacheLeftovers(); len(left) > 0 {
		t.Errorf("half-written in the cache: %v", left)
	}
	if got := n.cacheEntries(); len(got) > 0 {
		t.Errorf("cache entries after a failed lazy fetch: %v", got)
	}
}

func hasChunkTable(m ociManifest, digest string) bool {
	for _, l := range m.Layers {
		if l.Digest == digest {
			return l.Annotations["org.crwrap.file.chunks-sha256"] != ""
		}
	}
	return false
}

// rangeGets counts the partial (206) GETs of blob digest in the registry's access log.
func (r *testRegistry) rangeGets(digest string) int {
	n := 0
	for _, l := range strings.Split(r.log.String(), "\n") {
		if strings.Contains(l, `"GET /v2/team/app/blobs/`+digest+` `) && strings.Contains(l, `" 206 `) {
			n++
		}
	}
	return n
}

// The registry hangs the stream of the rest of the page image but still answers the small
// ranges: the readers fetch what they need by range, so the app gets all its memory (each
// chunk verified) and keeps serving; the stream's stall fails only the cache fill, which leaves
// nothing in the cache.
func TestLazyFetchStreamStalls(t *testing.T) {
	a := newTestApp(t, "-warmup", "200ms", "-heap", "128")
	reg := startRegistry(t, registryOptions{})
	want, push := newNode(t).checkpoint(a, reg.repo(), reg.env())
	pages := pagesBlob(t, reg, push.Str("image"))
	px := startProxy(t, reg.addr)
	px.blob = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		var from, to int64
		if strings.HasSuffix(r.URL.Path, pages) {
			if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &from, &to); err == nil && to-from+1 > 2<<20 {
				<-r.Context().Done() // the stream hangs
				return
			}
		}
		next.ServeHTTP(w, r)
	}
	n := newNode(t)
	p := n.restoreReady(a, px.repo(), reg.env(), lazyProps...)
	harness.AssertRestored(t, p)
	harness.WaitLog(t, p, "phase", "lazy-pages", time.Minute)
	harness.WaitLog(t, p, "phase", "fetch", time.Minute)
	if e := harness.FindLog(p, "phase", "fetch"); !strings.Contains(e.Str("error"), "stalled") {
		t.Errorf("phase=fetch %v, want the stream's stall", e)
	}
	if got := harness.MustGet(t, a.url(""), "/heap"); got != "128 MiB intact=true" {
		t.Errorf("/heap = %q", got)
	}
	if got := harness.MustGet(t, a.url(""), "/value"); got != want {
		t.Errorf("/value = %q, want %q", got, want)
	}
	harness.Stop(t, p)
	if left := n.cacheLeftovers(); len(left) > 0 {
		t.Errorf("half-written in the cache: %v", left)
	}
	if got := n.cacheEntries(); len(got) > 0 {
		t.Errorf("cache entries after a failed fill: %v", got)
	}
}

// The registry stops answering for the page image right after the app is ready, while its
// memory is still arriving: bounded by cr.restore.fetch-timeout, the app is stopped rather
// than left faulting on memory that cannot arrive, crwrap exits non-zero (the pod's restart
// policy takes over), and nothing is left in the cache.
func TestLazyFetchRegistryGoneAfterReady(t *testing.T) {
	a := newTestApp(t, "-warmup", "200ms", "-heap", "256")
	reg := startRegistry(t, registryOptions{})
	_, push := newNode(t).checkpoint(a, reg.repo(), reg.env())
	pages := pagesBlob(t, reg, push.Str("image"))
	px := startProxy(t, reg.addr)
	var gone atomic.Bool
	px.blob = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if strings.HasSuffix(r.URL.Path, pages) {
			// Slow (the stream cannot finish before the test sees the app ready), then gone.
			w = &failingWriter{ResponseWriter: w, gone: &gone, done: r.Context().Done()}
		}
		next.ServeHTTP(w, r)
	}
	n := newNode(t)
	p := n.restore(a, px.repo(), harness.Options{Env: reg.env()}, lazyProps...)
	harness.WaitHTTP(t, p, a.url("/ready"), 2*time.Minute)
	gone.Store(true)
	if code := p.Wait(t, time.Minute); code == 0 {
		t.Errorf("crwrap exited 0 although the app's memory could not be delivered\nstderr:\n%s", p.Stderr)
	}
	if harness.FindLog(p, "phase", "lazy-pages") != nil {
		t.Errorf("CRIU's lazy-pages daemon copied all memory although the registry went away\nstderr:\n%s", p.Stderr)
	}
	if harness.FindLog(p, "msg", "lazy restore: the app's memory could not be delivered; stopping the app") == nil {
		t.Errorf("no log line saying the app was stopped\nstderr:\n%s", p.Stderr)
	}
	if e := harness.FindLog(p, "phase", "fetch"); e == nil || !strings.Contains(e.Str("error"), "stalled") {
		t.Errorf("phase=fetch %v, want the stall", e)
	}
	if left := n.cacheLeftovers(); len(left) > 0 {
		t.Errorf("half-written in the cache: %v", left)
	}
	if got := n.cacheEntries(); len(got) > 0 {
		t.Errorf("cache entries after a failed lazy fetch: %v", got)
	}
}

// failingWriter passes a response on at about 32 MB/s until gone is set, then blocks until
// the request ends: a registry that goes away in the middle of a blob.
type failingWriter struct {
	http.ResponseWriter
	gone *atomic.Bool
	done <-chan struct{}
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.gone.Load() {
		<-f.done
		return 0, http.ErrAbortHandler
	}
	time.Sleep(time.Duration(len(p)) * time.Second / (32 << 20))
	return f.ResponseWriter.Write(p)
}
