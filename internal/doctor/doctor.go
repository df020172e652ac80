package doctor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/crwrap/crwrap/internal/criu"
)

// Status is the outcome of one check.
type Status int

// The outcomes: OK, Warn (works, but worse or at risk) and Fail (checkpoint/restore cannot work).
const (
	OK Status = iota
	Warn
	Fail
)

// String is the word a report line starts with, padded to one width.
func (s Status) String() string {
	switch s {
	case OK:
		return "ok  "
	case Warn:
		return "warn"
	default:
		return "FAIL"
	}
}

// Result is one check's verdict.
type Result struct {
	Status Status
	// Check names what was checked ("criu version").
	Check string
	// Detail is what was found.
	Detail string
	// Hint says what to do about a Warn or Fail.
	Hint string
}

// String formats r as one report line: "ok   check: detail" or "FAIL check: detail — hint: …".
func (r Result) String() string {
	line := fmt.Sprintf("%s %s: %s", r.Status, r.Check, r.Detail)
	if r.Status != OK && r.Hint != "" {
		line += " — hint: " + r.Hint
	}
	return line
}

// Runner runs argv with env and returns its combined output.
type Runner func(ctx context.Context, argv, env []string) ([]byte, error)

// Options configures Run. The zero value checks the running system.
type Options struct {
	// Root is where /proc, /sys, /boot and /run are read ("" means "/"); tests point it at a fake tree.
	Root string
	// CRIUPath is cr.criu.path: when set, that CRIU is checked instead of the bundled one.
	CRIUPath string
	// Run runs programs (CRIU); nil runs them with os/exec.
	Run Runner
	// LookPath finds programs on PATH; nil is exec.LookPath.
	LookPath func(string) (string, error)
	// FindBundle locates the CRIU bundle; nil is criu.FindBundle.
	FindBundle func() (*criu.Bundle, error)
}

// Run runs every check, writes one line per check to w and reports whether checkpoint/restore
// can work here (no check failed).
func Run(ctx context.Context, w io.Writer, opts Options) (ok bool) {
	ok = true
	for _, r := range Check(ctx, opts) {
		fmt.Fprintln(w, r)
		if r.Status == Fail {
			ok = false
		}
	}
	return ok
}

// Check runs every check in order and returns their results.
func Check(ctx context.Context, opts Options) []Result {
	e := newEnv(opts)
	results := make([]Result, 0, len(checks))
	for _, c := range checks {
		if ctx.Err() != nil {
			results = append(results, Result{Status: Fail, Check: c.name, Detail: "not run: " + ctx.Err().Error()})
			continue
		}
		r := c.fn(ctx, e)
		r.Check = c.name
		results = append(results, r)
	}
	return results
}

// env is what the checks share: the options with defaults and facts found by earlier checks.
type env struct {
	root       string
	criuPath   string
	run        Runner
	lookPath   func(string) (string, error)
	findBundle func() (*criu.Bundle, error)

	kernel     criu.Version
	kernelOK   bool
	config     map[string]string // kernel config; nil when unreadable
	mounts     []mount
	bundle     *criu.Bundle // the bundle CRIU runs from; nil when cr.criu.path or PATH
	toolBundle *criu.Bundle // the bundle providing tar, gzip, iptables; nil when none
	criuArgv   []string     // how to run CRIU; nil when none was found
	criuSource string       // "bundled", "cr.criu.path" or "PATH"
	criuVer    criu.Version
	criuVerOK  bool
}

func newEnv(o Options) *env {
	e := &env{root: o.Root, criuPath: o.CRIUPath, run: o.Run, lookPath: o.LookPath, findBundle: o.FindBundle}
	if e.root == "" {
		e.root = "/"
	}
	if e.run == nil {
		e.run = execRunner
	}
	if e.lookPath == nil {
		e.lookPath = exec.LookPath
	}
	if e.findBundle == nil {
		e.findBundle = criu.FindBundle
	}
	return e
}

func execRunner(ctx context.Context, argv, env []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// path maps an absolute system path into the checked root.
func (e *env) path(p string) string { return filepath.Join(e.root, p) }

func (e *env) read(p string) (string, error) {
	b, err := os.ReadFile(e.path(p))
	return string(b), err
}

// statusField returns a "Key:\tvalue" field of /proc/self/status.
func (e *env) statusField(key string) (string, bool) {
	s, err := e.read("/proc/self/status")
	if err != nil {
		return "", false
	}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// tail returns the last n non-empty lines of out, joined by " | ".
func tail(out []byte, n int) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
