package cr

import (
	"strings"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// What the restored app prints reaches the new crwrap's stdout and stderr (the pod's log).
func TestRestoredAppOutput(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	a.mustCheckpoint()
	p := a.restoreReady()
	harness.AssertRestored(t, p)
	msg := "restored-output-check"
	if got := a.get("/echo?msg=" + msg); got != msg {
		t.Fatalf("/echo = %q, want %q", got, msg)
	}
	for _, w := range []struct {
		name string
		buf  interface{ String() string }
		want string
		not  string
	}{
		{"stdout", p.Stdout, "stdout: " + msg, "stderr: " + msg},
		{"stderr", p.Stderr, "stderr: " + msg, "stdout: " + msg},
	} {
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(w.buf.String(), w.want) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(w.buf.String(), w.want) {
			t.Errorf("crwrap's %s lacks %q:\n%s", w.name, w.want, w.buf)
		}
		if strings.Contains(w.buf.String(), w.not) {
			t.Errorf("crwrap's %s has %q, which the app wrote to the other stream", w.name, w.not)
		}
	}
	harness.Stop(t, p)
	// The app's last words after SIGTERM come through as well.
	if !strings.Contains(p.Stdout.String(), "testapp got terminated") {
		t.Errorf("crwrap's stdout lacks the restored app's exit message:\n%s", p.Stdout)
	}
}
