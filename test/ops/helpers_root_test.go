package ops

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	return harness.MustGet(a.t, a.url(""), path)
}

// phases returns the entries whose phase is ph.
func phases(entries []harness.LogEntry, ph string) []harness.LogEntry {
	var out []harness.LogEntry
	for _, e := range entries {
		if e.Str("phase") == ph {
			out = append(out, e)
		}
	}
	return out
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
