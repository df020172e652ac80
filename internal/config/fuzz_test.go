package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary properties files (and one environment value) to Load: it must never
// panic, every error must be a one-line *Error matching ErrInvalid, and every success must hold
// the invariants the rest of crwrap relies on.
func FuzzLoad(f *testing.F) {
	f.Add("cr.mode=checkpoint\ncr.checkpoint.name=app\ncr.checkpoint.directory=team/app\n", "")
	f.Add("cr.container.command=sh -c 'echo $HOME ${X}'\ncr.container.readiness=tcp://127.0.0.1:8080\n", "")
	f.Add("cr.checkpoint.nmae=x\n", "")
	f.Add("cr.container.mounts=/a, /b/c\ncr.metrics.address=:9090\n", "restore")
	f.Add("a=b \\\n  c\n# x\n! y\n\\u0041=1\n", "")
	f.Add("cr.readiness.interval=\\u12", "")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, text, mode string) {
		p := filepath.Join(dir, "cr.properties")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		// The line scanner must find every key the library found.
		if vals, lines, perr := parse([]byte(text)); perr == nil {
			for k := range vals {
				if lines[k] < 1 {
					t.Fatalf("no line found for key %q", k)
				}
			}
		}
		s, err := Load(LoadOptions{Path: p, Explicit: true, Env: []string{"CR_MODE=" + mode}})
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v (%T) is not a config *Error", err, err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		if len(s.Command) == 0 || s.Command[0] == "" {
			t.Fatalf("empty command accepted: %q", s.Command)
		}
		if s.Mode != ModeRun && s.Mode != ModeCheckpoint && s.Mode != ModeRestore {
			t.Fatalf("mode %q accepted", s.Mode)
		}
		if s.Mode != ModeRun && (s.CheckpointName == "" || s.CheckpointDirectory == "") {
			t.Fatalf("%s mode without name or directory", s.Mode)
		}
		cp := s.CheckpointPath()
		if s.CheckpointName != "" && s.CheckpointDirectory != "" &&
			(!strings.HasPrefix(cp, s.CheckpointRoot+"/") || filepath.Base(cp) != s.CheckpointName) {
			t.Fatalf("checkpoint path %q escapes root %q", cp, s.CheckpointRoot)
		}
		if s.ReadinessInterval <= 0 || s.ReadinessTimeout <= 0 || s.RestoreWait < 0 {
			t.Fatalf("bad durations %v %v %v", s.ReadinessInterval, s.ReadinessTimeout, s.RestoreWait)
		}
		for _, m := range s.Mounts {
			if !filepath.IsAbs(m) || filepath.Clean(m) != m || m == "/" {
				t.Fatalf("mount %q accepted", m)
			}
		}
	})
}
