package cr

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// promptly bounds how long crwrap may take to stop after a signal. It is no timing assertion:
// without the fix crwrap waits for cr.readiness.timeout / cr.restore.wait (10 minutes here) or
// for ever (the lock), so this only tells "stopped" from "still waiting".
const promptly = time.Minute

// A SIGTERM or SIGINT while crwrap waits (for the writer lock, readiness, the warm-up, CRIU's
// dump, cr.restore.wait, the restored app's readiness) ends it at once with 128+N, as a
// container whose app the signal killed: nothing published, no cold start, and nothing of the
// app left (process, cgroup, libcontainer state, temporary version).
func TestSignalWhileWaiting(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode string
		// extra properties; setup runs before crwrap starts (nil: nothing).
		extra  []string
		heap   string
		setup  func(t *testing.T, a *testApp)
		waitOn [2]string // the log entry key=value after which the signal is sent
		sig    syscall.Signal
	}{
		{
			name: "writer lock", mode: "checkpoint",
			setup:  holdWriterLock,
			waitOn: [2]string{"msg", "waiting for another checkpointer of this name to finish"},
			sig:    syscall.SIGTERM,
		},
		{
			name: "readiness", mode: "checkpoint",
			extra:  []string{"cr.container.readiness=false", "cr.readiness.timeout=10m"},
			waitOn: [2]string{"phase", "start"},
			sig:    syscall.SIGTERM,
		},
		{
			name: "warm-up", mode: "checkpoint",
			extra:  []string{"cr.checkpoint.warmup=sleep 600", "cr.readiness.timeout=10m"},
			waitOn: [2]string{"phase", "ready"},
			sig:    syscall.SIGINT,
		},
		{
			// The warm-up's end is the dump's start: the signal arrives while CRIU dumps 256 MiB
			// (or just before): either way nothing is published.
			name: "dump", mode: "checkpoint", heap: "256",
			waitOn: [2]string{"phase", "warmup"},
			sig:    syscall.SIGTERM,
		},
		{
			name: "restore wait", mode: "restore",
			extra:  []string{"cr.restore.wait=10m"},
			waitOn: [2]string{"msg", "waiting for a checkpoint to appear"},
			sig:    syscall.SIGTERM,
		},
		{
			name: "restored app's readiness", mode: "restore",
			extra:  []string{"cr.container.readiness=false", "cr.readiness.timeout=10m"},
			setup:  func(t *testing.T, a *testApp) { a.mustCheckpoint() },
			waitOn: [2]string{"phase", "restore"},
			sig:    syscall.SIGTERM,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			heap := tc.heap
			if heap == "" {
				heap = "16"
			}
			a := newTestApp(t, "-warmup", "300ms", "-heap", heap)
			if tc.setup != nil {
				tc.setup(t, a)
			}
			before := a.target()
			state := t.TempDir()
			p := harness.Start(t, harness.Options{Env: []string{"CRWRAP_STATE_DIR=" + state}},
				a.args(tc.mode, a.props(append([]string{"cr.checkpoint.exit=false"}, tc.extra...)...))...)
			harness.WaitLog(t, p, tc.waitOn[0], tc.waitOn[1], 2*time.Minute)
			p.Signal(t, tc.sig)
			if code := p.Wait(t, promptly); code != 128+int(tc.sig) {
				t.Errorf("after %v crwrap exited %d, want %d\nstderr:\n%s", tc.sig, code, 128+int(tc.sig), p.Stderr)
			}
			e := harness.FindLog(p, "phase", "terminated")
			t.Logf("terminated after phase %q", e.Str("after_phase"))
			if e == nil || e.Str("signal") != map[syscall.Signal]string{syscall.SIGTERM: "SIGTERM", syscall.SIGINT: "SIGINT"}[tc.sig] {
				t.Errorf("want a phase=terminated line naming %v, got %v", tc.sig, e)
			}
			for _, phase := range []string{"fallback", "publish"} {
				if harness.FindLog(p, "phase", phase) != nil {
					t.Errorf("phase=%s logged after %v\nstderr:\n%s", phase, tc.sig, p.Stderr)
				}
			}
			if tc.mode == "restore" && harness.FindLog(p, "phase", "start") != nil {
				t.Errorf("the app was started cold after %v\nstderr:\n%s", tc.sig, p.Stderr)
			}
			if got := a.target(); got != before {
				t.Errorf("the published checkpoint changed from %q to %q", before, got)
			}
			if l := a.leftovers(); len(l) > 0 {
				t.Errorf("temporary versions left: %v", l)
			}
			if r := harness.FindLog(p, "phase", "render"); r != nil {
				id := r.Str("container")
				// The clean-up guard sees crwrap gone and exits, having nothing to clean.
				var left []string
				harness.WaitFor(10*time.Second, func() bool { left = gone(id, state); return len(left) == 0 })
				for _, l := range left {
					t.Errorf("%v left %s", tc.sig, l)
				}
			} else if tc.waitOn[1] == "start" || tc.waitOn[1] == "ready" {
				t.Errorf("no container id in the log although the app was started")
			}
		})
	}
}

// holdWriterLock takes the checkpoint name's writer lock as another checkpointer would, until
// the test ends.
func holdWriterLock(t *testing.T, a *testApp) {
	t.Helper()
	if err := os.MkdirAll(a.storeDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(a.storeDir(), "."+a.name+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("lock: %v", err)
	}
}

// gone lists what is left of container id after crwrap exited: its libcontainer state under
// state, cgroups, and processes in them (the app, CRIU's lazy-pages daemon).
func gone(id, state string) []string {
	var out []string
	if _, err := os.Stat(filepath.Join(state, id)); err == nil {
		out = append(out, "state "+filepath.Join(state, id))
	}
	for _, d := range harness.CgroupDirs(id) {
		out = append(out, "cgroup "+d)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	for _, c := range procs {
		if b, err := os.ReadFile(c); err == nil && strings.Contains(string(b), id) {
			out = append(out, "process "+filepath.Base(filepath.Dir(c)))
		}
	}
	cmds, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, c := range cmds {
		if b, err := os.ReadFile(c); err == nil && strings.Contains(string(b), id) {
			out = append(out, "process "+filepath.Base(filepath.Dir(c))+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// A checkpoint pod that keeps an intact checkpoint (cr.checkpoint.refresh=auto) idles without
// the name's writer lock, so that another checkpointer (cr.checkpoint.refresh=always, a new
// version of the DaemonSet) is not blocked by it.
func TestKeptCheckpointReleasesLock(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	a.mustCheckpoint()
	p := harness.Start(t, harness.Options{}, a.args("checkpoint", a.props("cr.checkpoint.exit=false"))...)
	harness.WaitLog(t, p, "phase", "keep", 2*time.Minute)
	harness.WaitLog(t, p, "msg", "checkpoint done; idle until terminated", time.Minute)
	f, err := os.OpenFile(filepath.Join(a.storeDir(), "."+a.name+".lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Errorf("the idle checkpoint pod holds the writer lock: %v", err)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	harness.Stop(t, p)
}
