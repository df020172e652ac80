package cr

import (
	"strings"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// Both ways of loading memory give back the whole heap: on demand (cr.restore.lazy=true, the
// default: CRIU's lazy-pages daemon serves page faults and copies the rest in the background)
// and up front (cr.restore.lazy=false).
func TestRestoreLazyAndEager(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "64")
	want := a.mustCheckpoint()
	for _, tc := range []struct {
		name  string
		extra []string
		lazy  bool
	}{
		{"lazy by default", nil, true},
		{"eager", []string{"cr.restore.lazy=false"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := a.restoreReady(tc.extra...)
			harness.AssertRestored(t, p)
			if got := a.get("/value"); got != want {
				t.Errorf("/value = %q, want the checkpointed %q", got, want)
			}
			if got := a.get("/heap"); !strings.HasSuffix(got, "intact=true") || !strings.HasPrefix(got, "64 MiB") {
				t.Errorf("/heap = %q, want 64 MiB intact", got)
			}
			r := harness.FindLog(p, "phase", "restore")
			if r == nil || r.Str("lazy") != map[bool]string{true: "true", false: "false"}[tc.lazy] {
				t.Fatalf("restore log line %v, want lazy=%v", r, tc.lazy)
			}
			if tc.lazy {
				// The daemon finishes: every page is in, the checkpoint is no longer held.
				e := harness.WaitLog(t, p, "phase", "lazy-pages", 30*time.Second)
				if _, ok := e.Num("duration_ms"); !ok {
					t.Errorf("lazy-pages line without duration_ms: %v", e)
				}
				if got := a.get("/heap"); !strings.HasSuffix(got, "intact=true") {
					t.Errorf("after all pages were loaded /heap = %q", got)
				}
			} else if harness.FindLog(p, "phase", "lazy-pages") != nil {
				t.Errorf("an eager restore logged a lazy-pages phase")
			}
			harness.Stop(t, p)
		})
	}
}
