package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/crwrap/crwrap/internal/checkpoint"
	"github.com/crwrap/crwrap/internal/container"
	"github.com/crwrap/crwrap/internal/readiness"
)

func (s *Supervisor) store() checkpoint.Store {
	return checkpoint.Store{
		Dir:  filepath.Join(s.Settings.CheckpointRoot, s.Settings.CheckpointDirectory),
		Name: s.Settings.CheckpointName,
	}
}

// identity is what makes a checkpoint this app's (files are added at checkpoint time).
func (s *Supervisor) identity() checkpoint.App {
	return checkpoint.App{Args: s.Settings.Command, TemplateDigest: s.Template.Digest(), Mounts: s.Settings.Mounts}
}

// checkpoint: start, ready, warm up, dump, publish, then idle (or exit). A terminating
// signal before the publication ends it with 128+N and nothing published (see interrupted);
// one during the dump lets CRIU finish (stopping it half-way could leave the app frozen),
// then the new version is discarded.
func (s *Supervisor) checkpoint(ctx context.Context) (code int, err error) {
	defer func() {
		if c, ok := s.interrupted(ctx, "checkpointing"); ok && err != nil {
			code, err = c, nil
		}
	}()
	st := s.store()
	lockStart := time.Now()
	w, err := st.LockContext(ctx, func() {
		s.Log.WithField("checkpoint", st.Path()).Info("waiting for another checkpointer of this name to finish")
	})
	if err != nil {
		return 1, err
	}
	defer w.Unlock()
	s.phase("lock", lockStart, logrus.Fields{"checkpoint": st.Path()})

	if s.Settings.CheckpointRefresh != "always" {
		if reason := s.usable(st); reason == nil {
			s.Log.WithFields(logrus.Fields{"phase": "keep", "checkpoint": st.Path()}).
				Info("an intact checkpoint of this app made on this host exists: keeping it (cr.checkpoint.refresh=auto)")
			s.startPush(ctx, st)
			w.Unlock() // idle without holding the name: another checkpointer may refresh it
			return s.idle(ctx)
		} else if !errors.Is(reason, checkpoint.ErrNotFound) {
			s.Log.WithFields(logrus.Fields{"checkpoint": st.Path(), "reason": reason.Error()}).Info("checkpointing again")
		}
	}

	begin := time.Now()
	a, code, err := s.launch()
	if err != nil {
		return code, err
	}
	defer s.release(a)
	if _, err := s.waitReady(ctx, a, begin, "checkpoint"); err != nil {
		return 1, fmt.Errorf("checkpoint %s: nothing published: %w", st.Path(), err)
	}
	if s.Settings.CheckpointWarmup != "" {
		t := time.Now()
		err := readiness.RunOnce(ctx, s.Settings.CheckpointWarmup, readiness.WithAttemptTimeout(s.Settings.ReadinessTimeout),
			readiness.WithRunner(readiness.RunnerFunc(s.holdRunner)))
		if err != nil {
			return 1, fmt.Errorf("checkpoint %s: nothing published: warm-up %q: %w", st.Path(), s.Settings.CheckpointWarmup, err)
		}
		s.phase("warmup", t, nil)
	}
	if err := context.Cause(ctx); err != nil {
		return 1, fmt.Errorf("checkpoint %s: nothing published: %w", st.Path(), err)
	}
	tmp, err := w.NewVersion()
	if err != nil {
		return 1, err
	}
	// The app is frozen during the dump and stays frozen (CRIU leaves it as it found it)
	// until the checkpoint is published: a failure at any step before that thaws it, and
	// the checkpoint pod keeps its app.
	size, err := s.dump(ctx, a, checkpoint.Draft{Dir: tmp})
	if err == nil {
		err = context.Cause(ctx) // terminated during the dump: nothing is published
	}
	t := time.Now()
	if err == nil {
		err = w.Publish(tmp)
	}
	if err != nil {
		_ = w.Discard(tmp)
		return s.keepServing(ctx, a, w, fmt.Errorf("checkpoint %s: nothing published: %w", st.Path(), err))
	}
	s.phase("publish", t, logrus.Fields{"checkpoint": st.Path(), "bytes": size})
	// What a dump without --leave-running would have done: the app ends here.
	s.stopFrozen(a)
	total := time.Since(begin)
	s.Metrics.ObserveCheckpoint(total, size)
	s.summary("checkpoint published", logrus.Fields{"checkpoint": st.Path(), "bytes": size, "total_ms": total.Milliseconds()})
	if s.OnPublished != nil {
		s.OnPublished()
	}
	w.Unlock()
	s.startPush(ctx, st)
	return s.idle(ctx)
}

// keepServing is where a checkpoint that failed after the app was ready goes: the app is
// thawed and served as in run mode (a DaemonSet pod keeps a working app), or, with
// cr.checkpoint.exit (a Job), crwrap exits 1. Nothing was published.
func (s *Supervisor) keepServing(ctx context.Context, a *app, w *checkpoint.Writer, err error) (int, error) {
	if rerr := a.c.Resume(); rerr != nil {
		err = fmt.Errorf("%w; and the app cannot be thawed: %v", err, rerr)
		return 1, err
	}
	if s.Settings.CheckpointExit || isDone(a.exited) || ctx.Err() != nil {
		return 1, err
	}
	w.Unlock()
	s.Log.WithFields(logrus.Fields{"phase": "checkpoint-failed", "error": err.Error()}).
		Error("checkpoint failed, nothing published; the app keeps running")
	return s.serve(ctx, a)
}

// stopFrozen kills the frozen app and thaws it so that it can die.
func (s *Supervisor) stopFrozen(a *app) {
	_ = a.c.Signal(killSignal)
	if err := a.c.Resume(); err != nil {
		s.Log.WithError(err).Warn("thaw the checkpointed app to stop it")
	}
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		s.Log.WithField("container", a.id).Warn("the checkpointed app did not exit after SIGKILL")
	}
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// holdRunner runs readiness and warm-up commands with orphan reaping held off.
func (s *Supervisor) holdRunner(ctx context.Context, cmd *exec.Cmd) error {
	release := s.Reaper.Hold()
	defer release()
	return readiness.DefaultRunner.Run(ctx, cmd)
}

// idle waits for SIGTERM (a DaemonSet pod must not crash-loop) unless cr.checkpoint.exit.
func (s *Supervisor) idle(ctx context.Context) (int, error) {
	if s.Settings.CheckpointExit {
		return 0, nil
	}
	s.Log.Info("checkpoint done; idle until terminated")
	for {
		select {
		case <-ctx.Done():
			return 0, nil
		case sig := <-s.Signals:
			if isTerminating(sig) {
				s.Log.WithField("signal", sig.String()).Info("terminated")
				return 0, nil
			}
		}
	}
}

// usable tells why the published checkpoint cannot be kept/restored (nil: it can).
func (s *Supervisor) usable(st checkpoint.Store) error {
	r, err := st.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = s.check(r)
	return err
}

// check verifies the held checkpoint r (as untrusted input) and then against this host and
// app; the pod's root is where the app's files are compared.
func (s *Supervisor) check(r *checkpoint.Reader) (*checkpoint.Manifest, error) {
	m, err := r.Verify(s.Settings.RestoreVerify == "digest")
	if err != nil {
		return nil, err
	}
	host, err := checkpoint.CurrentHost()
	if err != nil {
		return nil, err
	}
	if err := m.CheckHost(host, s.CRIUVersion); err != nil {
		return nil, err
	}
	if err := m.CheckApp(s.identity(), "/", s.Settings.RestoreVerify == "digest"); err != nil {
		return nil, err
	}
	return m, nil
}

// criuOptions are the CRIU options of the settings for images and a work directory.
func (s *Supervisor) criuOptions(images, work string, leaveRunning bool) container.CRIUOptions {
	return container.CRIUOptions{
		ImagesDir:      images,
		WorkDir:        work,
		TCPEstablished: s.Settings.TCPEstablished,
		LeaveRunning:   leaveRunning,
		Features:       s.Settings.CRIUOptions,
		GhostLimit:     s.Settings.CRIUGhostLimit,
		IrmapScanPaths: s.Settings.CRIUIrmapScanPaths,
	}
}
