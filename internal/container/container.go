package container

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// ErrNotFound is returned by Start when the app's executable does not exist or cannot be run.
var ErrNotFound = errors.New("app executable not found")

// Runtime creates containers whose state lives under Root (libcontainer's state directory,
// shared by every crwrap on the machine).
type Runtime struct {
	// Root is libcontainer's state root; ids are unique below it.
	Root string
	// Log receives libcontainer and cleanup messages.
	Log *logrus.Entry
	// CRIUVersion is the version of the "criu" on PATH ("4.2.1"), when known: libcontainer is
	// then told it instead of starting CRIU once more to ask (see criuversion.go).
	CRIUVersion string
}

// Config is what a container is made of.
type Config struct {
	// ID of the container; also the last element of its cgroups path.
	ID string
	// Spec is the rendered OCI spec.
	Spec *specs.Spec
	// Stdout and Stderr receive the app's output, line by line.
	Stdout, Stderr io.Writer
}

// Container is one running app container.
type Container struct {
	c       *libcontainer.Container
	proc    *libcontainer.Process
	io      *stdio
	lock    *os.File
	rt      *Runtime
	id      string
	waitMu  sync.Mutex
	waited  bool
	status  int
	waitErr error
}

// ID is the container id.
func (c *Container) ID() string { return c.id }

func (r *Runtime) create(cfg Config) (*Container, error) {
	if err := os.MkdirAll(r.Root, 0o700); err != nil {
		return nil, fmt.Errorf("create state root %s: %w", r.Root, err)
	}
	lock, err := r.lockID(cfg.ID)
	if err != nil {
		return nil, err
	}
	lcfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName: cfg.ID,
		Spec:       cfg.Spec,
	})
	if err != nil {
		r.unlockID(cfg.ID, lock)
		return nil, fmt.Errorf("convert spec: %w", err)
	}
	// If crwrap dies without a chance to clean up, the app dies with it: its PID
	// namespace goes when its init does.
	lcfg.ParentDeathSignal = int(unix.SIGKILL)
	lcfg.Labels = append(lcfg.Labels, r.criuConfigLabel(cfg.ID))
	c, err := libcontainer.Create(r.Root, cfg.ID, lcfg)
	if err != nil {
		r.unlockID(cfg.ID, lock)
		return nil, fmt.Errorf("create container %s: %w", cfg.ID, err)
	}
	if r.CRIUVersion != "" {
		if v, err := libcontainerVersion(r.CRIUVersion); (err != nil || !presetCRIUVersion(c, v)) && r.Log != nil {
			r.Log.WithField("criu_version", r.CRIUVersion).Debug("libcontainer will ask CRIU for its version")
		}
	}
	s, err := newStdio(cfg.Stdout, cfg.Stderr)
	if err != nil {
		_ = c.Destroy()
		r.unlockID(cfg.ID, lock)
		return nil, err
	}
	p := &libcontainer.Process{
		Args:   cfg.Spec.Process.Args,
		Env:    cfg.Spec.Process.Env,
		Cwd:    cfg.Spec.Process.Cwd,
		UID:    int(cfg.Spec.Process.User.UID),
		GID:    int(cfg.Spec.Process.User.GID),
		Stdin:  s.stdinR,
		Stdout: s.stdoutW,
		Stderr: s.stderrW,
		Init:   true,
	}
	for _, g := range cfg.Spec.Process.User.AdditionalGids {
		p.AdditionalGroups = append(p.AdditionalGroups, int(g))
	}
	return &Container{c: c, proc: p, io: s, lock: lock, rt: r, id: cfg.ID}, nil
}

// Start creates the container and starts the app in it.
func (r *Runtime) Start(cfg Config) (*Container, error) {
	c, err := r.create(cfg)
	if err != nil {
		return nil, err
	}
	if err := c.c.Run(c.proc); err != nil {
		c.io.close()
		c.destroy()
		if isNotFound(err) {
			return nil, fmt.Errorf("start %q: %w: %v", cfg.Spec.Process.Args[0], ErrNotFound, err)
		}
		return nil, fmt.Errorf("start container %s: %w", cfg.ID, err)
	}
	c.io.closeChildEnds()
	return c, nil
}

func isNotFound(err error) bool {
	msg := err.Error()
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EACCES) ||
		strings.Contains(msg, "no such file or directory") || strings.Contains(msg, "executable file not found") ||
		strings.Contains(msg, "permission denied")
}

// Pid is the app's pid, as crwrap sees it.
func (c *Container) Pid() (int, error) { return c.proc.Pid() }

// Processes lists the pids of every process of the app.
func (c *Container) Processes() ([]int, error) { return c.c.Processes() }

// Signal sends sig to the app's init process.
func (c *Container) Signal(sig os.Signal) error {
	// After a restore the container object may not know its init; the process does (FACTS.md).
	if err := c.proc.Signal(sig); err != nil {
		return fmt.Errorf("signal %v to the app: %w", sig, err)
	}
	return nil
}

// Wait waits until the app exits and its output is drained, then returns its exit code the
// way a shell reports it (128+N when killed by signal N). It may be called more than once.
func (c *Container) Wait() (int, error) {
	c.waitMu.Lock()
	defer c.waitMu.Unlock()
	if c.waited {
		return c.status, c.waitErr
	}
	ps, err := c.proc.Wait()
	c.waited = true
	switch {
	case ps != nil:
		c.status = exitCode(ps)
	case err != nil:
		c.status, c.waitErr = 1, fmt.Errorf("wait for the app: %w", err)
	}
	c.io.drain()
	return c.status, c.waitErr
}

func exitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// Destroy kills whatever is left of the app, removes its cgroups and state, and releases its id.
func (c *Container) Destroy() error {
	c.io.close()
	return c.destroy()
}

func (c *Container) destroy() error {
	err := c.c.Destroy()
	c.rt.unlockID(c.id, c.lock)
	if err != nil {
		return fmt.Errorf("destroy container %s: %w", c.id, err)
	}
	return nil
}

// lockID takes an exclusive lock that says "a live crwrap owns this id"; CleanupStale
// removes only containers whose lock is free.
func (r *Runtime) lockID(id string) (*os.File, error) {
	p := filepath.Join(r.Root, id+".lock")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create lock %s: %w", p, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	return f, nil
}

func (r *Runtime) unlockID(id string, f *os.File) {
	_ = os.Remove(filepath.Join(r.Root, id+".lock"))
	_ = os.Remove(r.criuConfigPath(id))
	f.Close()
}

// CleanupStale destroys containers that a crwrap which is gone left behind (it was killed
// before it could clean up): their processes are killed, cgroups and state removed.
// Containers of live crwrap processes are left alone. It returns the ids it removed.
func (r *Runtime) CleanupStale() ([]string, error) {
	entries, err := os.ReadDir(r.Root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state root %s: %w", r.Root, err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		id := e.Name()
		lock, err := r.lockID(id)
		if err != nil {
			continue // a live crwrap owns it
		}
		err = r.removeStale(id)
		r.unlockID(id, lock)
		if err != nil {
			errs = append(errs, fmt.Errorf("remove stale container %s: %w", id, err))
			continue
		}
		removed = append(removed, id)
	}
	return removed, errors.Join(errs...)
}

// removeStale removes the container id whose lock the caller holds.
func (r *Runtime) removeStale(id string) error {
	c, err := libcontainer.Load(r.Root, id)
	if err == nil {
		err = killAndDestroy(c)
	}
	if err != nil {
		// A state directory libcontainer cannot read: remove it so the id can be reused.
		err = os.RemoveAll(filepath.Join(r.Root, id))
	}
	return err
}

// killAndDestroy kills every process of c and removes its cgroups and state. libcontainer
// refuses to destroy a container that still runs, so it waits (up to 10 s) for the kill.
func killAndDestroy(c *libcontainer.Container) error {
	_ = c.Signal(unix.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := c.Status()
		if err != nil || st == libcontainer.Stopped || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c.Destroy()
}
