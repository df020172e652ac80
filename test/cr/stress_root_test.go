package cr

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// StressEnv sets how many lazy restores TestStressLazyRestores makes (default 6, the short
// variant CI runs; test/stress/lazy.sh runs 200).
const StressEnv = "CRWRAP_STRESS_N"

// Many lazy restores of a Go app while both cores are busy with a parallel build: none may
// crash, fall back or answer from wrong memory (/heap hashes the whole heap the warm-up drew).
// Every other restore has CRIU's lazy-pages daemon killed at a random point: then crwrap may
// restore again eagerly or stop the app, but every answer the app gives must still be right.
func TestStressLazyRestores(t *testing.T) {
	n := 6
	if v := os.Getenv(StressEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", StressEnv, v)
		}
	}
	a := newTestApp(t, "-warmup", "300ms", "-heap", "128")
	want := a.mustCheckpoint()
	busyBuild(t)

	var wrong, crashes, killed, stopped int
	for i := 0; i < n; i++ {
		kill := i%2 == 1
		p := a.restore(harness.Options{})
		answers := pollHeap(a, p)
		if kill {
			// A random point between the daemon's start and a little after the app is ready.
			delay := time.Duration(rand.IntN(400)) * time.Millisecond
			var pid int
			harness.WaitFor(time.Minute, func() bool {
				pid = lazyPagesDaemon(a.versionDir(), p.Cmd.Process.Pid)
				return pid != 0 || isDone(p.Done())
			})
			time.Sleep(delay)
			if pid != 0 && syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
			}
		}
		// Ready (restored, lazily or again eagerly) or, after a kill, stopped.
		harness.WaitFor(2*time.Minute, func() bool { return harness.FindLog(p, "phase", "ready") != nil || isDone(p.Done()) })
		if isDone(p.Done()) {
			code := p.Wait(t, time.Second)
			if !kill || code != 137 {
				crashes++
				t.Errorf("restore %d (kill=%v): crwrap exited %d\nstderr:\n%s", i, kill, code, p.Stderr)
			} else {
				stopped++
			}
		} else {
			if f := harness.FindLog(p, "phase", "fallback"); f != nil {
				crashes++
				t.Errorf("restore %d: fell back (%s): %s", i, f.Str("reason"), f.Str("error"))
			}
			got, err := harness.Get(a.url("/value"))
			switch {
			case err != nil && kill:
				// The daemon died after the app was ready: crwrap stops the app.
				if code := p.Wait(t, time.Minute); code != 137 {
					crashes++
					t.Errorf("restore %d: after a kill /value failed (%v) and crwrap exited %d, want 137", i, err, code)
				} else {
					stopped++
				}
			case err != nil:
				crashes++
				t.Errorf("restore %d: /value: %v", i, err)
			case got != want:
				wrong++
				t.Errorf("restore %d: /value = %q, want %q", i, got, want)
			}
			if !kill {
				harness.WaitLog(t, p, "phase", "lazy-pages", 2*time.Minute)
			}
		}
		for _, ans := range answers() {
			if !strings.HasSuffix(ans, "intact=true") {
				wrong++
				t.Errorf("restore %d (kill=%v): the app answered /heap = %q", i, kill, ans)
			}
		}
		if !isDone(p.Done()) && !kill {
			harness.Stop(t, p)
		} else if !isDone(p.Done()) {
			// A daemon killed after the app was ready may be stopping the app just now.
			p.Signal(t, syscall.SIGTERM)
			switch code := p.Wait(t, time.Minute); code {
			case 0:
			case 137, 143: // stopped after the kill (143: SIGTERM met the app as it was being killed)
				stopped++
			default:
				crashes++
				t.Errorf("restore %d: after SIGTERM crwrap exited %d, want 0 (or 137/143: stopped after the kill)", i, code)
			}
		}
		// Nothing of the restore outlives crwrap: no lazy-pages daemon, no CRIU.
		if !harness.WaitFor(10*time.Second, func() bool { return lazyPagesDaemon(a.versionDir(), 0) == 0 }) {
			crashes++
			t.Errorf("restore %d: a lazy-pages daemon outlived crwrap", i)
		}
		// Forget a failure, so that the next restores are lazy again.
		marks, _ := filepath.Glob(filepath.Join(a.root, ".crwrap", "lazy-failed-*"))
		for _, m := range marks {
			_ = os.Remove(m)
		}
	}
	t.Logf("%d lazy restores (%d daemons killed, %d apps stopped after a kill): %d crashes, %d wrong answers", n, killed, stopped, crashes, wrong)
}

// pollHeap asks the app for /heap as fast as it answers until crwrap logged the app ready and
// all memory loaded, or exited; the returned func stops and returns every answer.
func pollHeap(a *testApp, p *harness.Proc) func() []string {
	var mu sync.Mutex
	var answers []string
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-p.Done():
				return
			default:
			}
			if body, err := harness.Get(a.url("/heap")); err == nil {
				mu.Lock()
				answers = append(answers, body)
				mu.Unlock()
			} else {
				time.Sleep(2 * time.Millisecond)
			}
		}
	}()
	return func() []string {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return answers
	}
}

// busyBuild keeps both cores busy with a parallel Go build (from scratch, in a cache of its
// own) until the test ends.
func busyBuild(t *testing.T) {
	t.Helper()
	cache := t.TempDir()
	cmd := exec.Command("sh", "-c", "while :; do go build -a -p 2 -o /dev/null ./test/testapp || exit 1; done")
	cmd.Dir = harness.RepoRoot()
	cmd.Env = append(os.Environ(), "GOCACHE="+cache, "CGO_ENABLED=0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the busy build: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
}
