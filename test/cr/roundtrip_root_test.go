package cr

import (
	"testing"

	"github.com/crwrap/crwrap/test/harness"
)

// A checkpoint restored twice, one restore after the other: both restored apps have the value
// the checkpointed app drew at random during its warm-up, and its counter continues from memory.
func TestRoundTripMemoryIntact(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	want := a.mustCheckpoint()
	if len(want) != 32 {
		t.Fatalf("checkpointed /value = %q, want 32 hex digits", want)
	}
	target := a.target()
	if target == "" {
		t.Fatalf("%s is not a symlink to a version", a.path())
	}

	for i := 1; i <= 2; i++ {
		p := a.restoreReady()
		harness.AssertRestored(t, p)
		if got := a.get("/value"); got != want {
			t.Errorf("restore %d: /value = %q, want the checkpointed %q", i, got, want)
		}
		// The warm-up asked /counter 3 times before the dump; a cold start would answer 1.
		if got := a.get("/counter"); got != "4" {
			t.Errorf("restore %d: first /counter = %q, want 4 (continuing the checkpointed 3)", i, got)
		}
		if got := a.get("/counter"); got != "5" {
			t.Errorf("restore %d: second /counter = %q, want 5", i, got)
		}
		if e := harness.FindLog(p, "phase", "ready"); e == nil || e.Str("mode") != "restore" {
			t.Errorf("restore %d: no phase=ready mode=restore log line: %v", i, e)
		}
		harness.Stop(t, p)
	}
	if got := a.target(); got != target {
		t.Errorf("restores changed the published checkpoint: %s => %s", target, got)
	}
}
