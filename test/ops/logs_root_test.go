package ops

import (
	"strings"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// assertJSONLog checks that every stderr line of a run is a JSON object, that each phase in
// want appears with a numeric duration (ready: time_to_ready_ms) and that there is exactly
// one phase=summary line. It returns the parsed entries.
func assertJSONLog(t *testing.T, what, stderr string, want ...string) []harness.LogEntry {
	t.Helper()
	entries, bad := harness.ParseJSONLog(stderr)
	if len(bad) > 0 {
		t.Errorf("%s: %d stderr line(s) are not JSON objects:\n%s", what, len(bad), strings.Join(bad, "\n"))
	}
	if len(entries) == 0 {
		t.Fatalf("%s: no JSON log lines\nstderr:\n%s", what, stderr)
	}
	for _, e := range entries {
		for _, k := range []string{"level", "msg", "time"} {
			if e.Str(k) == "" {
				t.Errorf("%s: log line without %q: %v", what, k, e)
			}
		}
	}
	for _, ph := range want {
		m := phases(entries, ph)
		if len(m) == 0 {
			t.Errorf("%s: no phase=%s line\nstderr:\n%s", what, ph, stderr)
			continue
		}
		key := "duration_ms"
		if ph == "ready" {
			key = "time_to_ready_ms"
		}
		for _, e := range m {
			if d, ok := e.Num(key); !ok || d < 0 {
				t.Errorf("%s: phase=%s has no numeric %s: %v", what, ph, key, e)
			}
		}
	}
	sums := phases(entries, "summary")
	if len(sums) != 1 {
		t.Errorf("%s: %d phase=summary lines, want 1\nstderr:\n%s", what, len(sums), stderr)
	} else if total, ok := sums[0].Num("total_ms"); !ok || total <= 0 {
		t.Errorf("%s: the summary has no positive total_ms: %v", what, sums[0])
	}
	return entries
}

// `--log-format json`: a checkpoint and a restore log one JSON object a line, every phase
// with its duration, and one summary line each.
func TestJSONPhaseLogs(t *testing.T) {
	a := newApp(t, "-warmup", "300ms", "-heap", "8")
	cp := a.checkpoint()
	entries := assertJSONLog(t, "checkpoint", cp.Stderr.String(), "render", "start", "ready", "dump", "publish")
	if pub := phases(entries, "publish"); len(pub) > 0 {
		if pub[0].Str("checkpoint") != a.path() {
			t.Errorf("publish names checkpoint %q, want %q", pub[0].Str("checkpoint"), a.path())
		}
		if b, ok := pub[0].Num("bytes"); !ok || b <= 0 {
			t.Errorf("publish has no positive bytes: %v", pub[0])
		}
	}
	if d := phases(entries, "dump"); len(d) > 0 {
		if n, ok := d[0].Num("pages_written"); !ok || n <= 0 {
			t.Errorf("dump has no positive pages_written: %v", d[0])
		}
	}
	for _, e := range entries {
		if e.Str("mode") != "checkpoint" {
			t.Errorf("checkpoint log line with mode=%q: %v", e.Str("mode"), e)
		}
	}
	want := a.checkpointedValue()

	p := a.restore()
	harness.WaitLog(t, p, "phase", "summary", time.Minute)
	if got := a.get("/value"); got != want {
		t.Errorf("restored /value = %q, want %q", got, want)
	}
	harness.Stop(t, p)
	entries = assertJSONLog(t, "restore", p.Stderr.String(), "find", "verify", "restore", "ready")
	harness.AssertRestored(t, p)
	if ex := phases(entries, "exit"); len(ex) != 1 {
		t.Errorf("%d phase=exit lines after SIGTERM, want 1", len(ex))
	} else if s, ok := ex[0].Num("status"); !ok || s != 0 {
		t.Errorf("phase=exit status %v, want 0: %v", ex[0]["status"], ex[0])
	}
	for _, e := range entries {
		if e.Str("mode") != "restore" {
			t.Errorf("restore log line with mode=%q: %v", e.Str("mode"), e)
		}
	}
}

// A restore that falls back to a cold start is a restore run too: its JSON log has the
// fallback with its reason and duration, and ends its start-up with one summary line.
func TestJSONLogFallbackSummary(t *testing.T) {
	a := newApp(t, "-warmup", "100ms")
	p := a.restore()
	harness.WaitLog(t, p, "phase", "ready", time.Minute)
	// Whatever crwrap logs right after ready has been written by the time the app answers.
	a.get("/ready")
	time.Sleep(200 * time.Millisecond)
	harness.Stop(t, p)
	entries := assertJSONLog(t, "fallback restore", p.Stderr.String(), "fallback", "render", "start", "ready")
	if fb := phases(entries, "fallback"); len(fb) != 1 || fb[0].Str("reason") != "missing" {
		t.Errorf("want one phase=fallback reason=missing, got %v", fb)
	}
}
