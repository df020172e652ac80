package ops

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

const termLog = "/dev/termination-log"

// A fatal error (a restore with cr.restore.fallback=fail and no checkpoint) writes its reason
// to /dev/termination-log. crwrap runs in a mount namespace of its own where a file of the test
// is bind-mounted on /dev/termination-log; the host's /dev only gets an empty file to mount on
// while the test runs (removed afterwards, unless it was there before).
func TestTerminationLog(t *testing.T) {
	a := newApp(t, "-warmup", "100ms")
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("prerequisite missing: unshare (util-linux): %v", err)
	}
	if _, err := os.Lstat(termLog); errors.Is(err, fs.ErrNotExist) {
		f, err := os.OpenFile(termLog, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatalf("create %s to mount on: %v", termLog, err)
		}
		f.Close()
		t.Cleanup(func() { _ = os.Remove(termLog) })
	} else if err != nil {
		t.Fatal(err)
	}
	msg := filepath.Join(t.TempDir(), "termination-log")
	if err := os.WriteFile(msg, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	wrapper := []string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$0" ` + termLog + ` && exec "$@"`, msg}
	p := harness.StartWrapped(t, wrapper, harness.Options{},
		a.args("restore", a.props("cr.restore.fallback=fail"), "--log-format", "json")...)
	if code := p.Wait(t, time.Minute); code != 1 {
		t.Fatalf("restore with fallback=fail and no checkpoint exited %d, want 1\nstderr:\n%s", code, p.Stderr)
	}
	b, err := os.ReadFile(msg)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, w := range []string{"no checkpoint", a.path()} {
		if !strings.Contains(got, w) {
			t.Errorf("termination message %q lacks %q", got, w)
		}
	}
	// The message is the error crwrap printed last (without its "crwrap: " prefix).
	lines := strings.Split(strings.TrimRight(p.Stderr.String(), "\n"), "\n")
	if last := strings.TrimPrefix(lines[len(lines)-1], "crwrap: "); strings.TrimSpace(got) != last {
		t.Errorf("termination message %q, crwrap's error line %q", got, last)
	}
	if b, _ := os.ReadFile(termLog); len(b) != 0 {
		t.Errorf("the host's %s was written (%q): the bind mount did not hold", termLog, b)
	}
}
