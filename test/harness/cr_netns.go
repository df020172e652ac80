package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// NetNSPath is the bind-mounted namespace file of a named network namespace (ip netns).
func NetNSPath(ns string) string { return filepath.Join("/run/netns", ns) }

// StartInNetNS runs crwrap with args inside the named network namespace, entered with
// nsenter --net, so that, as in a pod, only the network is the namespace's own.
//
// Options.NetNS (ip netns exec) is not that: ip netns exec also unshares the mount namespace
// and mounts a fresh sysfs over /sys, which hides /sys/fs/cgroup, and crwrap then fails with
// "no cgroup mount found in mountinfo". A pod's runtime mounts cgroups under its /sys.
func StartInNetNS(t testing.TB, ns string, opts Options, args ...string) *Proc {
	t.Helper()
	return StartWrapped(t, []string{"nsenter", "--net=" + NetNSPath(ns), "--"}, opts, args...)
}

// StartWrapped runs wrapper... crwrap args...: wrapper is a command line that ends by
// exec'ing its arguments (nsenter, unshare, a shell with exec "$@"), so that the process's
// PID, signals and exit status are crwrap's. opts.NetNS must be empty. The process is
// killed when the test ends.
func StartWrapped(t testing.TB, wrapper []string, opts Options, args ...string) *Proc {
	t.Helper()
	if opts.NetNS != "" {
		t.Fatal("StartWrapped: Options.NetNS is not supported; use StartInNetNS")
	}
	if len(wrapper) == 0 {
		return Start(t, opts, args...)
	}
	argv := append(append(append([]string{}, wrapper[1:]...), Crwrap()), args...)
	cmd := exec.Command(wrapper[0], argv...)
	cmd.Env = append(os.Environ(), opts.Env...)
	cmd.Dir = opts.Dir
	p := &Proc{Cmd: cmd, Stdout: &Buffer{}, Stderr: &Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Stdout, p.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s crwrap: %v", wrapper[0], err)
	}
	go func() {
		_ = cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.code = 128 + int(ws.Signal())
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s crwrap %s\nstdout:\n%s\nstderr:\n%s", strings.Join(wrapper, " "), strings.Join(args, " "), p.Stdout, p.Stderr)
		}
	})
	return p
}
