package harness

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// LogEntry is one line of crwrap's JSON log (`--log-format json`), decoded as a JSON object.
type LogEntry map[string]any

// Str returns field k as a string: the string itself, any other value formatted with
// fmt.Sprint, and "" when the field is missing.
func (e LogEntry) Str(k string) string {
	v, ok := e[k]
	if !ok {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// Num returns the numeric field k (ok false when missing or not a JSON number).
func (e LogEntry) Num(k string) (float64, bool) {
	f, ok := e[k].(float64)
	return f, ok
}

// ParseJSONLog parses every line of s as a JSON object; the lines that are not one (including
// the app's own output mixed into crwrap's stderr) are returned in bad.
func ParseJSONLog(s string) (entries []LogEntry, bad []string) {
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var e LogEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e == nil {
			bad = append(bad, sc.Text())
			continue
		}
		entries = append(entries, e)
	}
	return entries, bad
}

// JSONLog returns crwrap's JSON log entries from p's stderr so far; other lines (the app's
// own output) are skipped.
func JSONLog(p *Proc) []LogEntry {
	entries, _ := ParseJSONLog(p.Stderr.String())
	return entries
}

// findJSONLog returns the first entry of p's JSON log whose field key is value (nil when none).
// FindLog returns the first entry of p's JSON log whose field key is value (nil when none).
func FindLog(p *Proc, key, value string) LogEntry {
	for _, e := range JSONLog(p) {
		if e.Str(key) == value {
			return e
		}
	}
	return nil
}

// WaitLog waits until p's JSON log has an entry with key=value and returns the first such
// entry; it fails the test when crwrap exits first or timeout passes.
func WaitLog(t testing.TB, p *Proc, key, value string, timeout time.Duration) LogEntry {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if e := FindLog(p, key, value); e != nil {
			return e
		}
		select {
		case <-p.Done():
			if e := FindLog(p, key, value); e != nil {
				return e
			}
			t.Fatalf("crwrap exited before logging %s=%s\nstderr:\n%s", key, value, p.Stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s=%s in crwrap's log after %v\nstderr:\n%s", key, value, timeout, p.Stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Stop sends SIGTERM to crwrap and expects it to exit with the app's status 0 within a minute.
func Stop(t testing.TB, p *Proc) {
	t.Helper()
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, time.Minute); code != 0 {
		t.Errorf("after SIGTERM crwrap exited %d, want 0 (the app's status)\nstderr:\n%s", code, p.Stderr)
	}
}

// MustGet fetches base+path (base is "http://HOST:PORT") and returns the body; it fails the
// test when the request fails or the answer is not 2xx.
func MustGet(t testing.TB, base, path string) string {
	t.Helper()
	body, err := Get(base + path)
	if err != nil {
		t.Fatalf("GET %s: %v (%s)", path, err, body)
	}
	return body
}

// AssertRestored fails the test unless p's JSON log shows that crwrap restored the checkpoint:
// a phase=restore entry and no phase=fallback.
func AssertRestored(t testing.TB, p *Proc) {
	t.Helper()
	if e := FindLog(p, "phase", "fallback"); e != nil {
		t.Fatalf("restore fell back (reason=%s): %s\nstderr:\n%s", e.Str("reason"), e.Str("error"), p.Stderr)
	}
	if FindLog(p, "phase", "restore") == nil {
		t.Fatalf("no phase=restore in the log\nstderr:\n%s", p.Stderr)
	}
}

// AssertFallback fails the test unless p's JSON log shows a fallback with reason and, but for
// reason not_ready (a restored app that never got ready), no restore; it returns the entry.
func AssertFallback(t testing.TB, p *Proc, reason string) LogEntry {
	t.Helper()
	e := FindLog(p, "phase", "fallback")
	if e == nil {
		t.Fatalf("no phase=fallback in the log (want reason=%s)\nstderr:\n%s", reason, p.Stderr)
	}
	if got := e.Str("reason"); got != reason {
		t.Errorf("fallback reason=%s (%s), want %s", got, e.Str("error"), reason)
	}
	if reason != "not_ready" && FindLog(p, "phase", "restore") != nil {
		t.Errorf("phase=restore logged although the restore fell back\nstderr:\n%s", p.Stderr)
	}
	return e
}
