package registry

import (
	"testing"

	"github.com/crwrap/crwrap/test/harness"
)

// Node A checkpoints and pushes; node B, with no checkpoint of its own, restores from the
// registry with the app's memory intact; B's next restore comes from its cache (the registry
// serves the page image once). Once over plain HTTP, once over TLS with basic auth.
func TestCrossNodeRestore(t *testing.T) {
	for _, tt := range []struct {
		name string
		o    registryOptions
	}{
		{"http", registryOptions{}},
		{"tls-auth", registryOptions{tls: true, auth: true}},
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
				p := nodeB.restoreReady(a, reg.repo(), reg.env())
				harness.AssertRestored(t, p)
				pull := findLog(p, "phase", "pull")
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
				t.Logf("restore %d: pull %v", i+1, pull)
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
