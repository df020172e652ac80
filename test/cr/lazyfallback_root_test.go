package cr

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// When CRIU's lazy-pages daemon dies after the restored app resumed, crwrap stops the app
// (memory it cannot deliver would hang it) and the pod restarts. The node remembers the
// failure, so the next pod restores that checkpoint with its memory loaded first instead of
// failing the same way again (a crash loop). A daemon that dies before the app is ready makes
// crwrap restore eagerly at once, in the same pod.
func TestLazyFailureRemembered(t *testing.T) {
	for _, tc := range []struct {
		name string
		// afterReady: kill the daemon once the app is ready (else as soon as it runs).
		afterReady bool
	}{
		{"daemon dies after the app is ready", true},
		{"daemon dies before the app is ready", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestApp(t, "-warmup", "300ms", "-heap", "256")
			a.mustCheckpoint()
			// The daemon copies the pages the app did not touch in the background: kill it
			// while it does. Should it have finished first, try again with a new pod.
			killed := false
			for attempt := 1; attempt <= 5 && !killed; attempt++ {
				p := a.restore(harness.Options{})
				pid := 0
				if tc.afterReady {
					harness.WaitLog(t, p, "phase", "ready", 2*time.Minute)
					pid = lazyPagesDaemon(a.versionDir(), p.Cmd.Process.Pid)
				} else {
					harness.WaitFor(time.Minute, func() bool { pid = lazyPagesDaemon(a.versionDir(), p.Cmd.Process.Pid); return pid != 0 })
				}
				if pid == 0 || harness.FindLog(p, "phase", "lazy-pages") != nil {
					t.Logf("attempt %d: the daemon had finished", attempt)
					harness.Stop(t, p)
					continue
				}
				answers := pollHeap(a, p)
				_ = syscall.Kill(pid, syscall.SIGKILL)
				killed = true
				harness.WaitLog(t, p, "msg", "the next restore of this checkpoint on this node loads all memory first", time.Minute)
				if tc.afterReady {
					if code := p.Wait(t, time.Minute); code != 137 {
						t.Errorf("after its lazy-pages daemon was killed crwrap exited %d, want 137 (the app was killed)", code)
					}
					// Memory the daemon had not delivered must not read as zeros meanwhile.
					for _, ans := range answers() {
						if !strings.HasSuffix(ans, "intact=true") {
							t.Errorf("after the daemon was killed the app answered /heap = %q", ans)
						}
					}
					continue
				}
				answers()
				// Before ready: restored again in the same pod, eagerly (or, had the app been
				// ready first, stopped as above).
				harness.WaitFor(time.Minute, func() bool { return harness.FindLog(p, "phase", "ready") != nil || isDone(p.Done()) })
				if !isDone(p.Done()) {
					if f := harness.FindLog(p, "phase", "fallback"); f != nil {
						t.Errorf("fell back to a cold start: %v", f)
					}
					var lazies []string
					for _, e := range harness.JSONLog(p) {
						if e.Str("phase") == "restore" {
							lazies = append(lazies, e.Str("lazy"))
						}
					}
					if n := len(lazies); n == 0 || lazies[n-1] != "false" {
						t.Errorf("restores lazy=%v, want the last one eager", lazies)
					}
					if got := heapOf(t, a); !strings.HasSuffix(got, "intact=true") {
						t.Errorf("/heap = %q after the eager retry", got)
					}
					harness.Stop(t, p)
				}
			}
			if !killed {
				t.Fatal("the lazy-pages daemon finished before it could be killed, 5 times")
			}
			marks, _ := filepath.Glob(filepath.Join(a.root, ".crwrap", "lazy-failed-*"))
			if len(marks) != 1 {
				t.Errorf("marks of failed lazy restores: %v, want one", marks)
			}

			p := a.restoreReady()
			harness.AssertRestored(t, p)
			if e := harness.FindLog(p, "phase", "restore"); e.Str("lazy") != "false" {
				t.Errorf("the restore after a failed lazy one was lazy again: %v", e)
			}
			if strings.Contains(p.Stderr.String(), "lazy restore failed") {
				t.Errorf("the next pod tried a lazy restore again\nstderr:\n%s", p.Stderr)
			}
			if got := heapOf(t, a); !strings.HasPrefix(got, "256 MiB") || !strings.HasSuffix(got, "intact=true") {
				t.Errorf("/heap = %q, want 256 MiB intact", got)
			}
			harness.Stop(t, p)

			// A new checkpoint is another version: it is restored lazily again.
			a.mustCheckpoint("cr.checkpoint.refresh=always")
			p = a.restoreReady()
			if e := harness.FindLog(p, "phase", "restore"); e.Str("lazy") != "true" {
				t.Errorf("a new checkpoint was not restored lazily: %v", e)
			}
			harness.Stop(t, p)
		})
	}
}

// heapOf asks the app for /heap, a few times: hashing 256 MiB can take longer than one
// request's timeout on a busy machine.
func heapOf(t *testing.T, a *testApp) string {
	t.Helper()
	var err error
	for i := 0; i < 5; i++ {
		var body string
		if body, err = harness.Get(a.url("/heap")); err == nil {
			return body
		}
	}
	t.Fatalf("GET /heap: %v", err)
	return ""
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// lazyPagesDaemon is the pid of the CRIU lazy-pages process that crwrap (pid parent; 0: any
// process) runs for the images under dir (0: none).
func lazyPagesDaemon(dir string, parent int) int {
	cmds, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, c := range cmds {
		b, err := os.ReadFile(c)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) < 2 || !contains(args, "lazy-pages") || !strings.Contains(strings.Join(resolveFDPaths(args), "\x00"), dir) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(c)))
		if st, err := harness.ReadStat(pid); err == nil && (parent == 0 || st.PPid == parent) {
			return pid
		}
	}
	return 0
}

// resolveFDPaths replaces /proc/PID/fd/N at the start of each argument by what that
// descriptor names: crwrap gives CRIU the checkpoint directory it holds open, not its path.
func resolveFDPaths(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		parts := strings.SplitN(a, "/", 6) // "", "proc", PID, "fd", N, rest
		if len(parts) >= 5 && parts[0] == "" && parts[1] == "proc" && parts[3] == "fd" {
			if target, err := os.Readlink(strings.Join(parts[:5], "/")); err == nil {
				out[i] = target
				if len(parts) == 6 {
					out[i] = filepath.Join(target, parts[5])
				}
			}
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
