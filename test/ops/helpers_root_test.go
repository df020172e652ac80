package ops

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// app is one test app command line with a checkpoint location of its own.
type app struct {
	t     *testing.T
	bin   string
	port  int
	flags []string // after "serve ADDR"
	root  string   // cr.checkpoint.root
	dir   string   // cr.checkpoint.directory
	name  string   // cr.checkpoint.name
	out   string   // where the warm-up command records the app's /value
}

func newApp(t *testing.T, flags ...string) *app {
	t.Helper()
	harness.Require(t)
	a := &app{t: t, bin: harness.TestApp(t), port: harness.FreePort(t), flags: flags,
		root: t.TempDir(), dir: "apps", name: "app", out: t.TempDir()}
	harness.KillMarked(t, a.addr())
	return a
}

func (a *app) addr() string           { return fmt.Sprintf("127.0.0.1:%d", a.port) }
func (a *app) url(path string) string { return "http://" + a.addr() + path }
func (a *app) path() string           { return filepath.Join(a.root, a.dir, a.name) }
func (a *app) command() []string {
	return append([]string{a.bin, "serve", a.addr()}, a.flags...)
}

// props writes a properties file for the app; extra "key=value" lines override the defaults.
// The log format is left to the command line.
func (a *app) props(extra ...string) string {
	a.t.Helper()
	var keys []string
	vals := map[string]string{}
	for _, l := range append([]string{
		"cr.checkpoint.name=" + a.name,
		"cr.checkpoint.directory=" + a.dir,
		"cr.checkpoint.root=" + a.root,
		"cr.container.readiness=" + a.url("/ready"),
		"cr.readiness.timeout=30s",
		"cr.checkpoint.exit=true",
		// Record the app's /value just before the dump, to tell a restore from a cold start.
		"cr.checkpoint.warmup=curl -sf --max-time 5 -o " + filepath.Join(a.out, "value") + " " + a.url("/value"),
	}, extra...) {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			a.t.Fatalf("bad property line %q", l)
		}
		if _, seen := vals[k]; !seen {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	lines := make([]string, 0, len(keys))
	for _, k := range keys {
		lines = append(lines, k+"="+vals[k])
	}
	return harness.WriteProps(a.t, lines...)
}

// args is `crwrap MODE --config PROPS GLOBAL... -- CMD...`.
func (a *app) args(mode, props string, global ...string) []string {
	args := append([]string{mode, "--config", props}, global...)
	return append(append(args, "--"), a.command()...)
}

// checkpoint runs `crwrap checkpoint --log-format json` to completion, requires exit 0 and
// returns the run.
func (a *app) checkpoint(extra ...string) *harness.Proc {
	a.t.Helper()
	p, code := harness.Run(a.t, harness.Options{}, 2*time.Minute, a.args("checkpoint", a.props(extra...), "--log-format", "json")...)
	if code != 0 {
		a.t.Fatalf("checkpoint exited %d, want 0\nstderr:\n%s", code, p.Stderr)
	}
	if _, err := os.Stat(a.path()); err != nil {
		a.t.Fatalf("checkpoint exited 0 but published nothing: %v\nstderr:\n%s", err, p.Stderr)
	}
	return p
}

// checkpointedValue is the /value the warm-up command read just before the dump.
func (a *app) checkpointedValue() string {
	a.t.Helper()
	b, err := os.ReadFile(filepath.Join(a.out, "value"))
	if err != nil || len(b) == 0 {
		a.t.Fatalf("the warm-up did not record the app's /value: %v", err)
	}
	return string(b)
}

// restore starts `crwrap restore --log-format json` (it serves until SIGTERM).
func (a *app) restore(extra ...string) *harness.Proc {
	a.t.Helper()
	return harness.Start(a.t, harness.Options{}, a.args("restore", a.props(extra...), "--log-format", "json")...)
}

// get fetches path from the app.
func (a *app) get(path string) string {
	a.t.Helper()
	body, err := harness.Get(a.url(path))
	if err != nil {
		a.t.Fatalf("GET %s: %v (%s)", path, err, body)
	}
	return body
}

// stop sends SIGTERM and expects crwrap to exit with the app's status 0.
func stop(t *testing.T, p *harness.Proc) {
	t.Helper()
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, time.Minute); code != 0 {
		t.Errorf("after SIGTERM crwrap exited %d, want 0\nstderr:\n%s", code, p.Stderr)
	}
}

// entry is one JSON log line.
type entry map[string]any

func (e entry) str(k string) string {
	v, ok := e[k]
	if !ok {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// num returns the numeric field k (ok false when missing or not a JSON number).
func (e entry) num(k string) (float64, bool) {
	f, ok := e[k].(float64)
	return f, ok
}

// parseLines parses every line of s as a JSON object; lines that are not are returned in bad.
func parseLines(s string) (entries []entry, bad []string) {
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var e entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e == nil {
			bad = append(bad, sc.Text())
			continue
		}
		entries = append(entries, e)
	}
	return entries, bad
}

// phases returns the entries whose phase is ph.
func phases(entries []entry, ph string) []entry {
	var out []entry
	for _, e := range entries {
		if e.str("phase") == ph {
			out = append(out, e)
		}
	}
	return out
}

// waitPhase waits until crwrap's JSON log has a line with phase ph and returns it; it fails
// when crwrap exits first or timeout passes.
func waitPhase(t *testing.T, p *harness.Proc, ph string, timeout time.Duration) entry {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		entries, _ := parseLines(p.Stderr.String())
		if m := phases(entries, ph); len(m) > 0 {
			return m[0]
		}
		select {
		case <-p.Done():
			entries, _ := parseLines(p.Stderr.String())
			if m := phases(entries, ph); len(m) > 0 {
				return m[0]
			}
			t.Fatalf("crwrap exited before logging phase=%s\nstderr:\n%s", ph, p.Stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no phase=%s after %v\nstderr:\n%s", ph, timeout, p.Stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// assertRestored fails unless crwrap restored (phase=restore, no fallback).
func assertRestored(t *testing.T, p *harness.Proc) {
	t.Helper()
	entries, _ := parseLines(p.Stderr.String())
	if fb := phases(entries, "fallback"); len(fb) > 0 {
		t.Fatalf("restore fell back (reason=%s)\nstderr:\n%s", fb[0].str("reason"), p.Stderr)
	}
	if len(phases(entries, "restore")) == 0 {
		t.Fatalf("no phase=restore in the log\nstderr:\n%s", p.Stderr)
	}
}

// criuVersion is the version of the bundled CRIU.
func criuVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(harness.BuildDir(), "criu", "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
