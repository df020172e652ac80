package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// proxy is a reverse proxy in front of a registry whose blob requests the test can break.
type proxy struct {
	addr string
	// blob, when set, answers GETs of blobs instead of the registry (next forwards).
	blob func(w http.ResponseWriter, r *http.Request, next http.Handler)
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	u, _ := url.Parse("http://" + target)
	rp := httputil.NewSingleHostReverseProxy(u)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.blob != nil && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			p.blob(w, r, rp)
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return p
}

func (p *proxy) repo() string { return p.addr + "/team/app" }

// pushed is a checkpoint of a made on node A and pushed to a fresh registry.
type pushed struct {
	a     *testApp
	reg   *testRegistry
	ref   string
	pages string
	want  string
}

func pushOne(t *testing.T) *pushed {
	t.Helper()
	a := newTestApp(t, "-warmup", "200ms", "-heap", "16")
	reg := startRegistry(t, registryOptions{})
	want, push := newNode(t).checkpoint(a, reg.repo(), reg.env())
	return &pushed{a: a, reg: reg, ref: push.Str("image"), pages: pagesBlob(t, reg, push.Str("image")), want: want}
}

// coldWithReason restores on an empty node through image and expects a cold start with
// reason, an app that answers (cold: its first /counter is 1), and nothing half-written in
// the node's cache.
func coldWithReason(t *testing.T, ps *pushed, n *node, image, reason string, extra ...string) harness.LogEntry {
	t.Helper()
	p := n.restoreReady(ps.a, image, ps.reg.env(), extra...)
	e := harness.AssertFallback(t, p, reason)
	if got := harness.MustGet(t, ps.a.url(""), "/counter"); got != "1" {
		t.Errorf("after the fallback /counter = %q, want 1 (a cold start)", got)
	}
	harness.Stop(t, p)
	if left := n.cacheLeftovers(); len(left) > 0 {
		t.Errorf("half-written in the cache: %v", left)
	}
	if got := n.cacheEntries(); len(got) > 0 {
		t.Errorf("cache entries after a failed pull: %v", got)
	}
	return e
}

// A blob changed in the registry's storage (same size, one byte): the digest check refuses
// it, the restore starts cold (damaged); once the blob is intact again the next restore on
// that node pulls cleanly and restores.
func TestTamperedBlob(t *testing.T) {
	ps := pushOne(t)
	f := ps.reg.blobFile(ps.pages)
	orig, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), orig...)
	bad[len(bad)/2] ^= 0xff
	if err := os.WriteFile(f, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	n := newNode(t)
	e := coldWithReason(t, ps, n, ps.reg.repo(), "damaged")
	if !strings.Contains(e.Str("error"), "digest") {
		t.Errorf("fallback error %q does not name the digest mismatch", e.Str("error"))
	}
	if err := os.WriteFile(f, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	p := n.restoreReady(ps.a, ps.reg.repo(), ps.reg.env())
	harness.AssertRestored(t, p)
	if got := harness.MustGet(t, ps.a.url(""), "/value"); got != ps.want {
		t.Errorf("/value = %q, want %q", got, ps.want)
	}
	harness.Stop(t, p)
}

// The registry answers 500 to every blob request: a cold start (pull_failed), nothing cached.
func TestRegistry500(t *testing.T) {
	ps := pushOne(t)
	px := startProxy(t, ps.reg.addr)
	px.blob = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		http.Error(w, "injected failure", http.StatusInternalServerError)
	}
	coldWithReason(t, ps, newNode(t), px.repo(), "pull_failed")
}

// The registry is killed while it sends the page image: a cold start (pull_failed), nothing
// half-written; with the registry back, the next restore on that node pulls and restores.
func TestRegistryKilledMidPull(t *testing.T) {
	ps := pushOne(t)
	px := startProxy(t, ps.reg.addr)
	px.blob = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if !strings.HasSuffix(r.URL.Path, ps.pages) {
			next.ServeHTTP(w, r)
			return
		}
		resp, err := http.Get("http://" + ps.reg.addr + r.URL.Path)
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Length", resp.Header.Get("Content-Length"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.CopyN(w, resp.Body, resp.ContentLength/2)
		w.(http.Flusher).Flush()
		ps.reg.kill()
		panic(http.ErrAbortHandler) // the connection drops mid-body
	}
	n := newNode(t)
	coldWithReason(t, ps, n, px.repo(), "pull_failed")

	// The registry comes back on the same storage and address.
	again := restartRegistry(t, ps.reg)
	px.blob = nil
	p := n.restoreReady(ps.a, px.repo(), again.env())
	harness.AssertRestored(t, p)
	if e := harness.FindLog(p, "phase", "pull"); e == nil || e.Str("cache") != "miss" {
		t.Errorf("pull after the failed one: %v, want cache=miss", e)
	}
	harness.Stop(t, p)
}

// A registry that trickles its answer: the pull stops at cr.checkpoint.pull-timeout and the
// app starts cold.
func TestSlowRegistry(t *testing.T) {
	ps := pushOne(t)
	px := startProxy(t, ps.reg.addr)
	px.blob = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
	}
	e := coldWithReason(t, ps, newNode(t), px.repo(), "pull_failed", "cr.checkpoint.pull-timeout=3s")
	if !strings.Contains(e.Str("error"), "pull-timeout") {
		t.Errorf("fallback error %q does not name cr.checkpoint.pull-timeout", e.Str("error"))
	}
}

// The node cache's file system is too small for the checkpoint: a cold start (pull_failed)
// before a blob is fetched, nothing left.
func TestCacheDiskFull(t *testing.T) {
	ps := pushOne(t)
	n := newNode(t)
	if err := os.MkdirAll(n.cache, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "crwrap-test-cache", n.cache).CombinedOutput(); err != nil {
		t.Fatalf("mount a small tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", n.cache).Run() })
	e := coldWithReason(t, ps, n, ps.reg.repo(), "pull_failed")
	if !strings.Contains(e.Str("error"), "no space left") {
		t.Errorf("fallback error %q does not say the disk is full", e.Str("error"))
	}
	if n := ps.reg.blobGets(ps.pages); n != 0 {
		t.Errorf("the pages blob was fetched %d times although it could not fit", n)
	}
}

// An image of another host class under this node's tag (pushed by hand, or by a misconfigured
// node) is refused from its manifest annotations, before any blob is fetched: a cold start
// (incompatible).
func TestForeignHostClass(t *testing.T) {
	ps := pushOne(t)
	// The same checkpoint as if made on another kernel, pushed over this node's tag.
	other := filepath.Join(t.TempDir(), "other")
	p, code := harness.Run(t, harness.Options{Env: ps.reg.env()}, time.Minute, "pull", ps.ref, other)
	if code != 0 {
		t.Fatalf("crwrap pull exited %d\n%s", code, p.Stderr)
	}
	mf := filepath.Join(other, "crwrap.json")
	b, err := os.ReadFile(mf)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, `"kernel": "`)
	if i < 0 {
		t.Fatalf("no kernel in crwrap.json:\n%s", s)
	}
	j := strings.Index(s[i+len(`"kernel": "`):], `"`)
	s = s[:i] + `"kernel": "4.19.0-other-node"` + s[i+len(`"kernel": "`)+j+1:]
	if err := os.WriteFile(mf, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(s)) // resealed, as a node of that class would have written it
	if err := os.WriteFile(mf+".sha256", []byte(hex.EncodeToString(sum[:])+"  crwrap.json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, code = harness.Run(t, harness.Options{Env: ps.reg.env()}, time.Minute, "push", other, ps.ref)
	if code != 0 {
		t.Fatalf("crwrap push exited %d\n%s", code, p.Stderr)
	}
	before := ps.reg.blobGets(ps.pages)
	e := coldWithReason(t, ps, newNode(t), ps.reg.repo(), "incompatible")
	if !strings.Contains(e.Str("error"), "host class") {
		t.Errorf("fallback error %q does not name the host class", e.Str("error"))
	}
	if n := ps.reg.blobGets(ps.pages); n != before {
		t.Errorf("the pages blob was fetched for an image of another host class")
	}
}

// restartRegistry starts docker-registry again on r's storage and address.
func restartRegistry(t *testing.T, r *testRegistry) *testRegistry {
	t.Helper()
	cfg := filepath.Join(filepath.Dir(r.storage), "config.yml")
	nr := &testRegistry{t: t, addr: r.addr, storage: r.storage, log: &harness.Buffer{}, done: make(chan struct{}),
		caFile: r.caFile, dockerConfig: r.dockerConfig}
	nr.cmd = exec.Command(r.cmd.Path, "serve", cfg)
	nr.cmd.Stdout, nr.cmd.Stderr = nr.log, nr.log
	if err := nr.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = nr.cmd.Wait(); close(nr.done) }()
	t.Cleanup(nr.kill)
	nr.waitUp()
	return nr
}

// crwrap itself is killed (SIGKILL) while it pulls: what it wrote stays only as a temporary
// directory that no restore uses, the entry's lock is free again, and the next restore on that
// node removes the leftover, pulls cleanly and restores.
func TestCrwrapKilledMidPull(t *testing.T) {
	ps := pushOne(t)
	px := startProxy(t, ps.reg.addr)
	started := make(chan struct{}, 1)
	px.blob = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if !strings.HasSuffix(r.URL.Path, ps.pages) {
			next.ServeHTTP(w, r)
			return
		}
		resp, err := http.Get("http://" + ps.reg.addr + r.URL.Path)
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Length", resp.Header.Get("Content-Length"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.CopyN(w, resp.Body, resp.ContentLength/2)
		w.(http.Flusher).Flush()
		select {
		case started <- struct{}{}:
		default:
		}
		<-r.Context().Done() // half sent, then nothing until the client is gone
	}
	n := newNode(t)
	p := n.restore(ps.a, px.repo(), harness.Options{Env: ps.reg.env()})
	select {
	case <-started:
	case <-time.After(time.Minute):
		t.Fatalf("the pull never reached the page image\nstderr:\n%s", p.Stderr)
	}
	// The half-written page image is on disk, in the entry's temporary directory.
	deadline := time.Now().Add(10 * time.Second)
	for len(n.cacheLeftovers()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(n.cacheLeftovers()) == 0 {
		t.Fatalf("no temporary directory in the cache during the pull")
	}
	p.Signal(t, syscall.SIGKILL)
	p.Wait(t, time.Minute)
	if got := n.cacheEntries(); len(got) > 0 {
		t.Fatalf("a complete-looking entry after a killed pull: %v", got)
	}

	px.blob = nil
	p = n.restoreReady(ps.a, px.repo(), ps.reg.env())
	harness.AssertRestored(t, p)
	if got := harness.MustGet(t, ps.a.url(""), "/value"); got != ps.want {
		t.Errorf("/value = %q, want %q", got, ps.want)
	}
	harness.Stop(t, p)
	if left := n.cacheLeftovers(); len(left) > 0 {
		t.Errorf("the killed pull's leftovers are still there: %v", left)
	}
}

// Neither the node nor the registry has a checkpoint: a cold start with reason missing, at
// once (cr.restore.wait=0s), nothing in the cache.
func TestNoCheckpointAnywhere(t *testing.T) {
	a := newTestApp(t, "-warmup", "200ms")
	reg := startRegistry(t, registryOptions{})
	n := newNode(t)
	p := n.restoreReady(a, reg.repo(), reg.env())
	e := harness.AssertFallback(t, p, "missing")
	if !strings.Contains(e.Str("error"), "has no checkpoint for this node's class") {
		t.Errorf("fallback error %q does not say the registry has none either", e.Str("error"))
	}
	harness.Stop(t, p)
	if got := n.cacheEntries(); len(got) > 0 {
		t.Errorf("cache entries: %v", got)
	}
}

// Nothing listens where cr.checkpoint.image points: a cold start (pull_failed) naming the
// registry, nothing in the cache.
func TestRegistryUnreachable(t *testing.T) {
	a := newTestApp(t, "-warmup", "200ms")
	n := newNode(t)
	image := fmt.Sprintf("127.0.0.1:%d/team/app", harness.FreePort(t))
	p := n.restoreReady(a, image, []string{"DOCKER_CONFIG=" + t.TempDir()})
	e := harness.AssertFallback(t, p, "pull_failed")
	if !strings.Contains(e.Str("error"), "registry unavailable") {
		t.Errorf("fallback error %q does not say the registry is unavailable", e.Str("error"))
	}
	harness.Stop(t, p)
	if left := n.cacheLeftovers(); len(left) > 0 {
		t.Errorf("cache leftovers: %v", left)
	}
}
