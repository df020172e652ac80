package cr

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// testApp is one app command line with its checkpoint location: the same values must be used
// for checkpoint and restore (the command line is part of the checkpoint's identity).
type testApp struct {
	t    *testing.T
	bin  string
	port int
	// flags follow "serve ADDR".
	flags []string
	root  string // cr.checkpoint.root
	dir   string // cr.checkpoint.directory
	name  string // cr.checkpoint.name
	// out collects what the warm-up command saw just before the dump.
	out string
}

// newTestApp prepares a test app serving on a free port with the given serve flags and an
// empty checkpoint root of its own.
func newTestApp(t *testing.T, flags ...string) *testApp {
	t.Helper()
	harness.Require(t)
	return &testApp{
		t:     t,
		bin:   harness.TestApp(t),
		port:  harness.FreePort(t),
		flags: flags,
		root:  t.TempDir(),
		dir:   "apps",
		name:  "app",
		out:   t.TempDir(),
	}
}

// variant is another app (its own port and flags) checkpointing under the same name.
func (a *testApp) variant(flags ...string) *testApp {
	b := *a
	b.port = harness.FreePort(a.t)
	b.flags = flags
	b.out = a.t.TempDir()
	return &b
}

func (a *testApp) addr() string           { return fmt.Sprintf("127.0.0.1:%d", a.port) }
func (a *testApp) url(path string) string { return "http://" + a.addr() + path }

// command is the app's command line (what follows "--").
func (a *testApp) command() []string {
	return append([]string{a.bin, "serve", a.addr()}, a.flags...)
}

// storeDir is <root>/<directory>; path is the published checkpoint <root>/<directory>/<name>.
func (a *testApp) storeDir() string { return filepath.Join(a.root, a.dir) }
func (a *testApp) path() string     { return filepath.Join(a.storeDir(), a.name) }

// target is what the published symlink points to ("" when there is none).
func (a *testApp) target() string {
	l, err := os.Readlink(a.path())
	if err != nil {
		return ""
	}
	return l
}

// versionDir is the directory of the published checkpoint.
func (a *testApp) versionDir() string {
	a.t.Helper()
	d, err := filepath.EvalSymlinks(a.path())
	if err != nil {
		a.t.Fatalf("no published checkpoint: %v", err)
	}
	return d
}

// props writes a properties file for this app; extra "key=value" lines override the defaults.
func (a *testApp) props(extra ...string) string {
	a.t.Helper()
	keys := []string{}
	vals := map[string]string{}
	set := func(line string) {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			a.t.Fatalf("bad property line %q", line)
		}
		if _, seen := vals[k]; !seen {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	for _, l := range []string{
		"cr.checkpoint.name=" + a.name,
		"cr.checkpoint.directory=" + a.dir,
		"cr.checkpoint.root=" + a.root,
		"cr.container.readiness=" + a.url("/ready"),
		"cr.checkpoint.exit=true",
		"cr.readiness.timeout=30s",
		"cr.log.format=json",
		// Just before the dump: record the value and bump the counter to 3, so a restore can be
		// told from a cold start (which answers 1 to its first /counter).
		"cr.checkpoint.warmup=" + a.warmupCommand(),
	} {
		set(l)
	}
	for _, l := range extra {
		set(l)
	}
	lines := make([]string, 0, len(keys))
	for _, k := range keys {
		lines = append(lines, k+"="+vals[k])
	}
	return harness.WriteProps(a.t, lines...)
}

func (a *testApp) warmupCommand() string {
	return fmt.Sprintf("curl -sf --max-time 5 -o %s %s && curl -sf --max-time 5 -o /dev/null %s && curl -sf --max-time 5 -o /dev/null %s && curl -sf --max-time 5 -o %s %s",
		filepath.Join(a.out, "value"), a.url("/value"), a.url("/counter"), a.url("/counter"), filepath.Join(a.out, "counter"), a.url("/counter"))
}

// args is the crwrap command line for mode with a properties file.
func (a *testApp) args(mode, props string) []string {
	return append([]string{mode, "--config", props, "--"}, a.command()...)
}

// checkpoint runs `crwrap checkpoint` to completion and returns its exit code.
func (a *testApp) checkpoint(opts harness.Options, extra ...string) (*harness.Proc, int) {
	a.t.Helper()
	return harness.Run(a.t, opts, 3*time.Minute, a.args("checkpoint", a.props(extra...))...)
}

// mustCheckpoint checkpoints (exit 0 required, a checkpoint published) and returns the value
// the app had drawn when it was dumped.
func (a *testApp) mustCheckpoint(extra ...string) string {
	a.t.Helper()
	p, code := a.checkpoint(harness.Options{}, extra...)
	if code != 0 {
		a.t.Fatalf("checkpoint exited %d, want 0\nstderr:\n%s", code, p.Stderr)
	}
	if harness.FindLog(p, "phase", "publish") == nil {
		a.t.Fatalf("checkpoint: no phase=publish in the log\nstderr:\n%s", p.Stderr)
	}
	return a.checkpointedValue()
}

// checkpointedValue is the /value the warm-up command read from the app just before the dump.
func (a *testApp) checkpointedValue() string {
	a.t.Helper()
	b, err := os.ReadFile(filepath.Join(a.out, "value"))
	if err != nil || len(b) == 0 {
		a.t.Fatalf("the warm-up did not record the checkpointed app's /value: %v", err)
	}
	return string(b)
}

// restore starts `crwrap restore` (it serves until SIGTERM).
func (a *testApp) restore(opts harness.Options, extra ...string) *harness.Proc {
	a.t.Helper()
	return harness.Start(a.t, opts, a.args("restore", a.props(extra...))...)
}

// restoreReady starts a restore in the test's network namespace and waits until the app
// answers and crwrap logged it ready (restored or, after a fallback, cold-started).
func (a *testApp) restoreReady(extra ...string) *harness.Proc {
	a.t.Helper()
	p := a.restore(harness.Options{}, extra...)
	harness.WaitHTTP(a.t, p, a.url("/ready"), time.Minute)
	harness.WaitLog(a.t, p, "phase", "ready", time.Minute)
	return p
}

// get fetches path from the app (in the test's network namespace).
func (a *testApp) get(path string) string {
	a.t.Helper()
	return harness.MustGet(a.t, a.url(""), path)
}

// snapshot describes every entry under root: type, mode, size, mtime, content digest or link
// target. Two equal snapshots mean nothing under root was written.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		desc := fmt.Sprintf("%v mtime=%d", fi.Mode(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + l
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			n, err := io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" size=%d sha256=%s", n, hex.EncodeToString(h.Sum(nil)))
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", root, err)
	}
	return out
}

// sameSnapshot reports every difference between two snapshots as an error.
func sameSnapshot(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	var diffs []string
	for k, v := range before {
		if w, ok := after[k]; !ok {
			diffs = append(diffs, "removed "+k)
		} else if w != v {
			diffs = append(diffs, fmt.Sprintf("changed %s: %s => %s", k, v, w))
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			diffs = append(diffs, "added "+k)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("%s changed:\n  %s", what, strings.Join(diffs, "\n  "))
	}
}

// leftovers lists the interrupted writes (.NAME.tmp-*) in the store directory.
func (a *testApp) leftovers() []string {
	m, _ := filepath.Glob(filepath.Join(a.storeDir(), "."+a.name+".tmp-*"))
	return m
}

// versions lists the version directories (.NAME.v*) in the store directory.
func (a *testApp) versions() []string {
	m, _ := filepath.Glob(filepath.Join(a.storeDir(), "."+a.name+".v*"))
	return m
}

// waitUnused waits until no process has a file or directory under dir open (or as its cwd):
// after crwrap was killed, its CRIU may still be writing there.
func waitUnused(t *testing.T, dir string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		users := openers(dir)
		if len(users) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes still use %s after %v: %s", dir, timeout, strings.Join(users, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func openers(dir string) []string {
	var users []string
	procs, _ := os.ReadDir("/proc")
	for _, pe := range procs {
		pid := pe.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		links := []string{filepath.Join("/proc", pid, "cwd")}
		fds, _ := os.ReadDir(filepath.Join("/proc", pid, "fd"))
		for _, fd := range fds {
			links = append(links, filepath.Join("/proc", pid, "fd", fd.Name()))
		}
		for _, l := range links {
			if target, err := os.Readlink(l); err == nil && (target == dir || strings.HasPrefix(target, dir+"/")) {
				comm, _ := os.ReadFile(filepath.Join("/proc", pid, "comm"))
				users = append(users, fmt.Sprintf("pid %s (%s): %s", pid, strings.TrimSpace(string(comm)), target))
				break
			}
		}
	}
	return users
}
