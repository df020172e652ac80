package ops

import (
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// verifyRun runs `crwrap verify --config PROPS GLOBAL... -- CMD` with its own TMPDIR and
// checks that verify left nothing behind there nor any process of the app.
func verifyRun(t *testing.T, a *app, global ...string) (*harness.Proc, int) {
	t.Helper()
	props := harness.WriteProps(t, "cr.container.readiness="+a.url("/ready"), "cr.readiness.timeout=30s")
	tmp := t.TempDir()
	args := append([]string{"verify", "--config", props}, global...)
	args = append(append(args, "--"), a.command()...)
	p, code := harness.Run(t, harness.Options{Env: []string{"TMPDIR=" + tmp}}, 2*time.Minute, args...)
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Errorf("verify left %s in its TMPDIR", strings.Join(names, ", "))
	}
	if !harness.WaitFor(5*time.Second, func() bool { return len(harness.Marked(a.addr())) == 0 }) {
		t.Errorf("processes of the app still run after verify: %v", harness.Marked(a.addr()))
	}
	return p, code
}

// A checkpointable app passes the gate: exit 0 and "verify: ok".
func TestVerifyOK(t *testing.T) {
	a := newApp(t, "-warmup", "300ms")
	p, code := verifyRun(t, a)
	if code != 0 {
		t.Fatalf("verify exited %d, want 0\nstdout:\n%s\nstderr:\n%s", code, p.Stdout, p.Stderr)
	}
	if !strings.Contains(p.Stdout.String(), "verify: ok") {
		t.Errorf("verify's stdout lacks %q:\n%s", "verify: ok", p.Stdout)
	}
	// It did what it says: a checkpoint and a restore, each to ready.
	for _, w := range []string{"phase=publish", "phase=restore", "msg=\"checkpoint published", "msg=\"restored"} {
		if !strings.Contains(p.Stderr.String(), w) {
			t.Errorf("verify's log lacks %q\nstderr:\n%s", w, p.Stderr)
		}
	}
	if strings.Contains(p.Stderr.String(), "phase=fallback") {
		t.Errorf("verify's restore fell back\nstderr:\n%s", p.Stderr)
	}
}

// outsideListener accepts TCP connections in the test process (outside crwrap's container)
// and holds them open until the test ends.
func outsideListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// An app holding an established TCP connection to something outside fails the gate: exit 1
// and the cause in one line, in CRIU's words, naming TCP.
func TestVerifyOutsideTCPConnection(t *testing.T) {
	peer := outsideListener(t)
	a := newApp(t, "-warmup", "300ms", "-connect", peer)
	p, code := verifyRun(t, a)
	if code != 1 {
		t.Fatalf("verify exited %d, want 1\nstdout:\n%s\nstderr:\n%s", code, p.Stdout, p.Stderr)
	}
	if strings.Contains(p.Stdout.String(), "verify: ok") {
		t.Errorf("a failed verify printed verify: ok")
	}
	lines := strings.Split(strings.TrimRight(p.Stderr.String(), "\n"), "\n")
	var errs []string
	for _, l := range lines {
		if strings.HasPrefix(l, "crwrap:") {
			errs = append(errs, l)
		}
	}
	if len(errs) != 1 {
		t.Fatalf("%d crwrap: error lines, want 1:\n%s", len(errs), strings.Join(errs, "\n"))
	}
	last := lines[len(lines)-1]
	if last != errs[0] {
		t.Errorf("the error is not the last stderr line:\n%s", p.Stderr)
	}
	checkTCPCause(t, last)

	// With --log-level error the cause is all there is on stderr: one line.
	a2 := newApp(t, "-warmup", "300ms", "-connect", peer)
	p, code = verifyRun(t, a2, "--log-level", "error")
	if code != 1 {
		t.Fatalf("verify --log-level error exited %d, want 1\nstderr:\n%s", code, p.Stderr)
	}
	if got := strings.Split(strings.TrimRight(p.Stderr.String(), "\n"), "\n"); len(got) != 1 {
		t.Errorf("verify --log-level error printed %d stderr lines, want 1:\n%s", len(got), p.Stderr)
	} else {
		checkTCPCause(t, got[0])
	}
}

func checkTCPCause(t *testing.T, line string) {
	t.Helper()
	const prefix = "crwrap: verify: checkpoint failed: "
	if !strings.HasPrefix(line, prefix) {
		t.Errorf("the error line does not start with %q:\n%s", prefix, line)
	}
	if !strings.Contains(line, "TCP") {
		t.Errorf("the error line does not name TCP:\n%s", line)
	}
	// CRIU's own words (criu/sk-inet.c).
	if !strings.Contains(line, "Connected TCP socket") {
		t.Errorf("the error line lacks CRIU's %q:\n%s", "Connected TCP socket", line)
	}
}
