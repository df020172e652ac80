package container

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// GuardArg is argv[1] of a guard process (see StartGuard). Its waiting half is a C
// constructor (guard.c); once crwrap is gone it re-executes itself with GuardCleanupArg,
// for which main must call RunGuard.
const (
	GuardArg        = "__crwrap_guard"
	GuardCleanupArg = "__crwrap_guard_cleanup"
)

// IsGuard reports whether this process is a guard cleaning up after crwrap.
func IsGuard() bool { return len(os.Args) > 1 && os.Args[1] == GuardCleanupArg }

// StartGuard starts a small process that outlives crwrap only to clean up after it: when
// crwrap dies without removing this container (it was killed with SIGKILL), the guard kills
// the app and removes the container's cgroups and state. On a pod this happens anyway (the
// pod's PID namespace dies with crwrap); on a host the app would otherwise keep running
// (libcontainer's parent-death signal does not reach a container init in a new PID
// namespace). It is not on a restore's critical path: call it after the app runs.
func (c *Container) StartGuard() error {
	cmd := exec.Command("/proc/self/exe", GuardArg, c.rt.Root, c.id, strconv.Itoa(os.Getpid()))
	cmd.Args[0] = "crwrap-guard"
	cmd.Env = []string{}                              // nothing of the app's environment: it is not part of the app
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true} // not in crwrap's process group: a ^C is crwrap's to handle
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start guard for %s: %w", c.id, err)
	}
	go func() { _ = cmd.Wait() }() // or reaped by crwrap's reaper; either is fine
	return nil
}

// RunGuard is the guard's clean-up after crwrap exited: args are the state root and the
// container id. It removes the container unless crwrap did, or another crwrap owns the id.
func RunGuard(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "crwrap-guard: want STATE-ROOT ID")
		return 2
	}
	rt := &Runtime{Root: args[0]}
	lock, err := rt.lockID(args[1])
	if err != nil {
		return 0 // another crwrap owns the id now
	}
	defer rt.unlockID(args[1], lock)
	if _, err := os.Stat(filepath.Join(rt.Root, args[1])); err != nil {
		return 0 // crwrap removed it itself
	}
	if err := rt.removeStale(args[1]); err != nil {
		return 1
	}
	return 0
}
