package registry

import (
	"fmt"
	"strings"
	"testing"

	"github.com/crwrap/crwrap/test/harness"
)

// Node A checkpoints and pushes; node B, with no checkpoint of its own, restores from the
// registry with the app's memory intact; B's next restore comes from its cache (the registry
// serves the page image once). Over plain HTTP, over TLS with basic auth, and with every
// pulled file's digest checked (cr.restore.verify=digest).
func TestCrossNodeRestore(t *testing.T) {
	for _, tt := range []struct {
		name  string
		o     registryOptions
		extra []string
	}{
		{"http", registryOptions{}, nil},
		{"tls-auth", registryOptions{tls: true, auth: true}, nil},
		{"verify-digest", registryOptions{}, []string{"cr.restore.verify=digest"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := newTestApp(t, "-warmup", "200ms", "-heap", "16")
			reg := startRegistry(t, tt.o)
			nodeA, nodeB := newNode(t), newNode(t)
			want, push := nodeA.checkpoint(a, reg.repo(), reg.env())
			ref := push.Str("image")
			if ref == "" || push.Str("digest") == "" {
				t.Fatalf("push log line without image/digest: %v", push)
			}
			pages := pagesBlob(t, reg, ref)

			for i, wantCache := range []string{"miss", "hit"} {
				p := nodeB.restoreReady(a, reg.repo(), reg.env(), tt.extra...)
				harness.AssertRestored(t, p)
				pull := harness.FindLog(p, "phase", "pull")
				if pull == nil {
					t.Fatalf("restore %d: no phase=pull\nstderr:\n%s", i+1, p.Stderr)
				}
				if got := pull.Str("cache"); got != wantCache {
					t.Errorf("restore %d: cache=%s, want %s", i+1, got, wantCache)
				}
				if got := harness.MustGet(t, a.url(""), "/value"); got != want {
					t.Errorf("restore %d: /value = %q, want the checkpointed %q", i+1, got, want)
				}
				if got := harness.MustGet(t, a.url(""), "/heap"); got != "16 MiB intact=true" {
					t.Errorf("restore %d: /heap = %q", i+1, got)
				}
				harness.Stop(t, p)
			}
			if n := reg.blobGets(pages); n != 1 {
				t.Errorf("the registry served the pages blob %d times, want once (the second restore from the cache)\nregistry log:\n%s", n, reg.log)
			}
			if left := nodeB.cacheLeftovers(); len(left) > 0 {
				t.Errorf("cache leftovers: %v", left)
			}
		})
	}
}

// The registry goes away after node B pulled: B's next restore uses the checkpoint it pulled
// before (logged), and the pull metrics say what happened.
func TestRegistryDownUsesCache(t *testing.T) {
	a := newTestApp(t, "-warmup", "200ms", "-heap", "8")
	reg := startRegistry(t, registryOptions{})
	want, _ := newNode(t).checkpoint(a, reg.repo(), reg.env())
	b := newNode(t)
	metrics := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	p := b.restoreReady(a, reg.repo(), reg.env(), "cr.metrics.address="+metrics)
	harness.AssertRestored(t, p)
	body := harness.MustGet(t, "http://"+metrics, "/metrics")
	for _, w := range []string{
		`crwrap_registry_cache_total{result="miss"} 1`,
		`crwrap_registry_transfers_total{direction="pull",result="ok"} 1`,
	} {
		if !strings.Contains(body, w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
	if strings.Contains(body, `crwrap_registry_transfer_bytes_total{direction="pull"} 0`) {
		t.Error("/metrics counts no pulled bytes")
	}
	harness.Stop(t, p)

	reg.kill()
	p = b.restoreReady(a, reg.repo(), reg.env())
	harness.AssertRestored(t, p)
	if harness.FindLog(p, "msg", "registry unavailable: restoring the checkpoint this node pulled before") == nil {
		t.Errorf("no log line saying the cached checkpoint is used while the registry is down\nstderr:\n%s", p.Stderr)
	}
	if got := harness.MustGet(t, a.url(""), "/value"); got != want {
		t.Errorf("/value = %q, want %q", got, want)
	}
	harness.Stop(t, p)
}
