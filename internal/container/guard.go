package container

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"

	"golang.org/x/sys/unix"
)

// GuardArg is argv[1] of a guard process (see StartGuard); main must call RunGuard for it.
const GuardArg = "__crwrap_guard"

// IsGuard reports whether this process was started as a guard.
func IsGuard() bool { return len(os.Args) > 1 && os.Args[1] == GuardArg }

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

// RunGuard is the guard process: args are the state root, the container id and crwrap's pid.
// It waits for crwrap to exit, then removes the container if crwrap did not.
func RunGuard(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "crwrap-guard: want STATE-ROOT ID PID")
		return 2
	}
	pid, err := strconv.Atoi(args[2])
	if err != nil || os.Getppid() != pid {
		return 0 // crwrap is already gone (or this was not started by it): nothing to watch
	}
	unix.Close(0) // hold nothing of crwrap's: its pipes must close when it exits
	unix.Close(1)
	unix.Close(2)
	// The guard's job starts when crwrap is gone; signals sent to a session or group must not end it.
	signal.Ignore(unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT)
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return 1
	}
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			return 1
		}
		if fds[0].Revents&unix.POLLIN != 0 {
			break
		}
	}
	rt := &Runtime{Root: args[0]}
	lock, err := rt.lockID(args[1])
	if err != nil {
		return 0 // another crwrap owns the id now
	}
	defer rt.unlockID(args[1], lock)
	if _, err := os.Stat(rt.Root + "/" + args[1]); err != nil {
		return 0 // crwrap removed it itself
	}
	if err := rt.removeStale(args[1]); err != nil {
		return 1
	}
	return 0
}
