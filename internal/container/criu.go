package container

import (
	"fmt"
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
}

func (o CRIUOptions) lib() *libcontainer.CriuOpts {
	return &libcontainer.CriuOpts{
		ImagesDirectory: o.ImagesDir,
		WorkDirectory:   o.WorkDir,
		TcpEstablished:  o.TCPEstablished,
		FileLocks:       true,
		// "soft": restore into the new container's own cgroups.
		ManageCgroupsMode: "soft",
		StatusFd:          -1,
		LazyPages:         o.LazyPages,
	}
}

// Checkpoint dumps the app with CRIU into opts.ImagesDir; the app is gone afterwards.
// The CRIU binary is "criu" on PATH (libcontainer has no other way to name it).
func (c *Container) Checkpoint(opts CRIUOptions) error {
	if err := c.c.Checkpoint(opts.lib()); err != nil {
		return fmt.Errorf("checkpoint container %s: %w", c.id, err)
	}
	return nil
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
	err = c.c.Restore(c.proc, opts.lib())
	r.Log.WithFields(logrus.Fields{"create_ms": t1.Sub(t0).Milliseconds(), "libcontainer_restore_ms": time.Since(t1).Milliseconds()}).Debug("restore timing")
	if err != nil {
		c.io.close()
		c.destroy()
		return nil, fmt.Errorf("restore container %s: %w", cfg.ID, err)
	}
	c.io.closeChildEnds()
	return c, nil
}
