package reaper

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"

	"golang.org/x/sys/unix"
)

// Reaper reaps orphans. Code that starts a child and waits for it must either hold Hold's
// lock from before the fork until after the wait, or Protect the child's pid, so the reaper
// never collects that child's status first.
type Reaper struct {
	mu        sync.RWMutex // write: reaping; read: a fork+wait in progress
	pmu       sync.Mutex
	protected map[int]bool
	reaped    int
}

// Start makes this process a child subreaper and reaps orphans until ctx is done.
func Start(ctx context.Context) (*Reaper, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become child subreaper: %w", err)
	}
	r := &Reaper{protected: map[int]bool{}}
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, unix.SIGCHLD)
	go func() {
		defer signal.Stop(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				r.reap()
			}
		}
	}()
	return r, nil
}

// Hold blocks reaping until the returned func is called. Wrap a fork and the wait for it.
func (r *Reaper) Hold() (release func()) {
	if r == nil {
		return func() {}
	}
	r.mu.RLock()
	return r.mu.RUnlock
}

// Protect keeps pid from being reaped here (its owner waits for it).
func (r *Reaper) Protect(pid int) {
	if r == nil {
		return
	}
	r.pmu.Lock()
	r.protected[pid] = true
	r.pmu.Unlock()
}

// Unprotect forgets pid.
func (r *Reaper) Unprotect(pid int) {
	if r == nil {
		return
	}
	r.pmu.Lock()
	delete(r.protected, pid)
	r.pmu.Unlock()
}

// Reaped is the number of orphans reaped so far.
func (r *Reaper) Reaped() int {
	r.pmu.Lock()
	defer r.pmu.Unlock()
	return r.reaped
}

func (r *Reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var info unix.Siginfo
		// Peek (WNOWAIT) at an exited child before deciding whether it is ours to reap.
		if err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err != nil {
			return
		}
		pid := siginfoPid(&info)
		if pid <= 0 {
			return
		}
		r.pmu.Lock()
		prot := r.protected[pid]
		r.pmu.Unlock()
		if prot {
			return // its owner collects it; others get their turn at the next SIGCHLD
		}
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err != nil {
			return
		}
		r.pmu.Lock()
		r.reaped++
		r.pmu.Unlock()
	}
}
