package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/opencontainers/runc/libcontainer"
)

// CRIUOptions are the CRIU settings crwrap exposes.
type CRIUOptions struct {
	// ImagesDir holds the CRIU images (written by Checkpoint, only read by Restore).
	ImagesDir string
	// WorkDir receives CRIU's log and statistics; never inside a shared checkpoint.
	WorkDir string
	// TCPEstablished lets CRIU checkpoint established TCP connections.
	TCPEstablished bool
	// LazyPages restores memory on demand from a running "criu lazy-pages" daemon.
	LazyPages bool
	// LeaveRunning leaves the app in the state it had before the dump (running, or frozen
	// when it was paused) instead of killing it.
	LeaveRunning bool
	// Features are further CRIU options by the names of cr.criu.options (config.CRIUFeatures).
	Features []string
	// GhostLimit is the largest deleted-but-open file CRIU saves in the images, in bytes
	// (0: CRIU's default).
	GhostLimit uint64
	// IrmapScanPaths are where CRIU looks for watched files it cannot open by handle.
	IrmapScanPaths []string
}

// criuFeature is how one of cr.criu.options reaches CRIU: a field of libcontainer's options
// or, where libcontainer has none, a line of CRIU's configuration file.
type criuFeature struct {
	rpc  func(o *libcontainer.CriuOpts)
	conf string
}

// criuFeatures maps the names config.CRIUFeatures accepts onto CRIU.
var criuFeatures = map[string]criuFeature{
	"file-locks":          {rpc: func(o *libcontainer.CriuOpts) { o.FileLocks = true }},
	"link-remap":          {rpc: func(o *libcontainer.CriuOpts) { o.LinkRemap = true }},
	"ext-unix-sk":         {rpc: func(o *libcontainer.CriuOpts) { o.ExternalUnixConnections = true }},
	"tcp-skip-in-flight":  {rpc: func(o *libcontainer.CriuOpts) { o.TcpSkipInFlight = true }},
	"shell-job":           {rpc: func(o *libcontainer.CriuOpts) { o.ShellJob = true }},
	"tcp-close":           {conf: "tcp-close"},
	"force-irmap":         {conf: "force-irmap"},
	"evasive-devices":     {conf: "evasive-devices"},
	"skip-file-rwx-check": {conf: "skip-file-rwx-check"},
}

// HasCRIUFeature reports whether name is a CRIU option crwrap can pass (for tests that keep
// config.CRIUFeatures and this table in step).
func HasCRIUFeature(name string) bool {
	_, ok := criuFeatures[name]
	return ok
}

func (o CRIUOptions) lib() (*libcontainer.CriuOpts, error) {
	lo := &libcontainer.CriuOpts{
		ImagesDirectory: o.ImagesDir,
		WorkDirectory:   o.WorkDir,
		TcpEstablished:  o.TCPEstablished,
		FileLocks:       true,
		LeaveRunning:    o.LeaveRunning,
		// "soft": restore into the new container's own cgroups.
		ManageCgroupsMode: "soft",
		StatusFd:          -1,
		LazyPages:         o.LazyPages,
	}
	for _, name := range o.Features {
		f, ok := criuFeatures[name]
		if !ok {
			return nil, fmt.Errorf("unknown CRIU option %q", name)
		}
		if f.rpc != nil {
			f.rpc(lo)
		}
	}
	return lo, nil
}

// configFile is CRIU's configuration file for the options libcontainer cannot pass: one
// option a line, as on CRIU's command line without the dashes. CRIU reads it on every call.
func (o CRIUOptions) configFile() string {
	var b strings.Builder
	b.WriteString("# written by crwrap for this container (cr.criu.* keys)\n")
	for _, name := range o.Features {
		if f := criuFeatures[name]; f.conf != "" {
			b.WriteString(f.conf + "\n")
		}
	}
	for _, p := range o.IrmapScanPaths {
		b.WriteString("irmap-scan-path " + p + "\n")
	}
	if o.GhostLimit > 0 {
		b.WriteString("ghost-limit " + strconv.FormatUint(o.GhostLimit, 10) + "\n")
	}
	return b.String()
}

// criuConfigPath is where the container's CRIU configuration file lives (libcontainer
// names it to CRIU through the org.criu.config label).
func (r *Runtime) criuConfigPath(id string) string { return filepath.Join(r.Root, id+".criu.conf") }

// criuConfigLabel is the label that names the container's CRIU configuration file; without
// it libcontainer would make CRIU read /etc/criu/runc.conf of the pod.
func (r *Runtime) criuConfigLabel(id string) string {
	return "org.criu.config=" + r.criuConfigPath(id)
}

func (c *Container) writeCRIUConfig(o CRIUOptions) (*libcontainer.CriuOpts, error) {
	lo, err := o.lib()
	if err != nil {
		return nil, err
	}
	p := c.rt.criuConfigPath(c.id)
	if err := os.WriteFile(p, []byte(o.configFile()), 0o600); err != nil {
		return nil, fmt.Errorf("write CRIU configuration %s: %w", p, err)
	}
	return lo, nil
}

// Pause freezes every process of the app (the cgroup freezer).
func (c *Container) Pause() error {
	if err := c.c.Pause(); err != nil {
		return fmt.Errorf("freeze container %s: %w", c.id, err)
	}
	return nil
}

// Paused reports whether the app is frozen.
func (c *Container) Paused() bool {
	st, err := c.c.Status()
	return err == nil && st == libcontainer.Paused
}

// Resume thaws a paused app; an app that is not paused is left alone.
func (c *Container) Resume() error {
	if err := c.c.Resume(); err != nil && err != libcontainer.ErrNotPaused {
		return fmt.Errorf("thaw container %s: %w", c.id, err)
	}
	return nil
}

// Checkpoint dumps the app with CRIU into opts.ImagesDir; the app is gone afterwards unless
// opts.LeaveRunning. The CRIU binary is "criu" on PATH (libcontainer has no other way to
// name it). When ctx ends first, CRIU is killed (a seized app is let go; a frozen one stays
// frozen) and the error wraps ctx.Err().
func (c *Container) Checkpoint(ctx context.Context, opts CRIUOptions) error {
	lo, err := c.writeCRIUConfig(opts)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- c.c.Checkpoint(lo) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// libcontainer's call takes no context: end the CRIU it started, then its call returns.
		killed := killCRIUChildren()
		err = <-done
		c.rt.Log.WithFields(logrus.Fields{"container": c.id, "criu_pids": killed}).Debug("stopped CRIU")
		return fmt.Errorf("checkpoint container %s: %w (CRIU stopped): %v", c.id, ctx.Err(), err)
	}
	if err != nil {
		return fmt.Errorf("checkpoint container %s: %w", c.id, err)
	}
	return nil
}

// killCRIUChildren kills every "criu swrk" process this process started (libcontainer runs
// CRIU as a child in service mode) and waits until they are gone; it returns their pids.
func killCRIUChildren() []int {
	self := os.Getpid()
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || parentOf(pid) != self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if len(args) >= 2 && args[len(args)-2] == "swrk" {
			if p, err := os.FindProcess(pid); err == nil && p.Kill() == nil {
				pids = append(pids, pid)
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for parentOf(pid) == self && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return pids
}

// parentOf is the parent pid of pid (0 when pid is gone or a zombie that was reaped).
func parentOf(pid int) int {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 || f[0] == "Z" || f[0] == "X" {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// Restore creates a container from cfg and restores the app into it from opts.ImagesDir,
// which it only reads. The restored app's output goes to cfg.Stdout/cfg.Stderr.
func (r *Runtime) Restore(cfg Config, opts CRIUOptions) (*Container, error) {
	t0 := time.Now()
	c, err := r.create(cfg)
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	lo, err := c.writeCRIUConfig(opts)
	if err == nil {
		err = c.c.Restore(c.proc, lo)
	}
	r.Log.WithFields(logrus.Fields{"create_ms": t1.Sub(t0).Milliseconds(), "libcontainer_restore_ms": time.Since(t1).Milliseconds()}).Debug("restore timing")
	if err != nil {
		c.io.close()
		c.destroy()
		return nil, fmt.Errorf("restore container %s: %w", cfg.ID, err)
	}
	c.io.closeChildEnds()
	return c, nil
}
