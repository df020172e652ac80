package readiness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Runner starts a prepared command and waits for it. Run must call cmd.Start and cmd.Wait (or
// cmd.Run) and return Wait's error unchanged; it must not touch cmd.SysProcAttr, Stdout,
// Stderr or Cancel. It exists for crwrap as PID 1: its reaper must not collect the probe's
// shell before exec.Cmd does, so crwrap's Runner holds the reaper's lock around start and wait.
type Runner interface {
	Run(ctx context.Context, cmd *exec.Cmd) error
}

// RunnerFunc adapts a function to a Runner.
type RunnerFunc func(ctx context.Context, cmd *exec.Cmd) error

// Run calls f(ctx, cmd).
func (f RunnerFunc) Run(ctx context.Context, cmd *exec.Cmd) error { return f(ctx, cmd) }

// DefaultRunner runs the command with cmd.Run.
var DefaultRunner Runner = RunnerFunc(func(_ context.Context, cmd *exec.Cmd) error { return cmd.Run() })

const (
	// stderrTail is how much of a command's standard error ends up in its error.
	stderrTail = 200
	// stderrGrace is how long to wait for the stderr pipe to close once the command's process
	// group is dead: only a process that left the group (setsid) can keep it open.
	stderrGrace = 100 * time.Millisecond
)

// commandProbe runs /bin/sh -c spec; exit status 0 is ready.
type commandProbe struct {
	spec   string
	runner Runner
}

func (p *commandProbe) String() string { return p.spec }

func (p *commandProbe) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("command %q: %w", p.spec, err)
	}
	// Our own pipe rather than exec's copying goroutine: exec.Cmd.Wait would wait for every
	// process holding the pipe (a backgrounded child), here the group is killed first.
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("command %q: create stderr pipe: %w", p.spec, err)
	}
	tail := &tailBuffer{max: stderrTail}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(tail, r)
	}()

	cmd := exec.CommandContext(ctx, Shell, "-c", p.spec)
	cmd.Stdin = nil  // /dev/null
	cmd.Stdout = nil // /dev/null
	cmd.Stderr = w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd.Process) }
	cmd.WaitDelay = time.Second

	runErr := p.runner.Run(ctx, cmd)
	// Whatever the shell left behind in its group goes too, success or not.
	_ = killGroup(cmd.Process)
	_ = w.Close()
	select {
	case <-copied:
	case <-time.After(stderrGrace):
	}
	_ = r.Close()
	<-copied

	if runErr == nil {
		return nil
	}
	var err2 error
	if ctxErr := ctx.Err(); ctxErr != nil {
		err2 = fmt.Errorf("command %q: killed: %w", p.spec, ctxErr)
	} else {
		err2 = fmt.Errorf("command %q: %w", p.spec, runErr)
	}
	if msg := tail.String(); msg != "" {
		err2 = fmt.Errorf("%w: %s", err2, msg)
	}
	return err2
}

// killGroup SIGKILLs the process group led by p (Setpgid makes the shell its leader). The
// group's ID cannot be reused while any member is alive, so this reaches nobody else.
func killGroup(p *os.Process) error {
	if p == nil || p.Pid <= 0 {
		return nil
	}
	err := syscall.Kill(-p.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu        sync.Mutex
	buf       []byte
	max       int
	truncated bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.truncated = true
	}
	return len(p), nil
}

// String returns the tail on one line, valid UTF-8, "…" in front when bytes were dropped.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.ToValidUTF8(string(t.buf), "")
	s = strings.Join(strings.Fields(s), " ")
	if s != "" && t.truncated {
		s = "…" + s
	}
	return s
}
