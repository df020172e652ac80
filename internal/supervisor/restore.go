package supervisor

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/crwrap/crwrap/internal/checkpoint"
	"github.com/crwrap/crwrap/internal/container"
	"github.com/crwrap/crwrap/internal/metrics"
)

// ErrRestoreFailed is returned when a restore was impossible and cr.restore.fallback=fail.
var ErrRestoreFailed = errors.New("restore failed")

// Fallback reasons (the reason label of crwrap_restore_fallbacks_total and of the log line).
const (
	ReasonNotFound     = metrics.FallbackMissing
	ReasonDamaged      = metrics.FallbackDamaged
	ReasonForeign      = metrics.FallbackForeign
	ReasonIncompatible = metrics.FallbackIncompatible
	ReasonRestore      = metrics.FallbackRestoreFailed
	ReasonNotReady     = metrics.FallbackNotReady
)

func reasonOf(err error) string {
	switch {
	case errors.Is(err, checkpoint.ErrNotFound):
		return ReasonNotFound
	case errors.Is(err, checkpoint.ErrDamaged):
		return ReasonDamaged
	case errors.Is(err, checkpoint.ErrForeign):
		return ReasonForeign
	case errors.Is(err, checkpoint.ErrIncompatible):
		return ReasonIncompatible
	case errors.Is(err, ErrNotReady):
		return ReasonNotReady
	case errors.Is(err, errPull):
		return pullReason(err)
	default:
		return ReasonRestore
	}
}

// restore restores the app from its checkpoint, or falls back to a cold start.
func (s *Supervisor) restore(ctx context.Context) (int, error) {
	begin := time.Now()
	defer s.endFetch() // lazyfetch.go: nothing half-fetched outlives crwrap
	a, err := s.tryRestore(ctx, begin)
	if err != nil {
		// A pod being deleted while it waits for a checkpoint, or for the restored app to be
		// ready, stops: starting the app cold then would only delay its end.
		if code, ok := s.interrupted(ctx, "restoring"); ok {
			return code, nil
		}
		err = s.fetchFailure(err) // lazyfetch.go: a failed lazy fetch is the reason
		reason := reasonOf(err)
		s.Metrics.IncRestoreFallback(reason)
		if s.Settings.RestoreFallback == "fail" || s.StopWhenReady {
			s.Log.WithFields(logrus.Fields{"phase": "fallback", "reason": reason}).Error("not restoring, and cr.restore.fallback=fail")
			return 1, fmt.Errorf("%w: %v", ErrRestoreFailed, err)
		}
		s.Log.WithFields(logrus.Fields{"phase": "fallback", "reason": reason, "error": err.Error(), "duration_ms": time.Since(begin).Milliseconds()}).
			Warn("not restoring; starting the app cold")
		return s.run(ctx, "cold")
	}
	defer s.release(a)
	if s.StopWhenReady {
		return s.stop(a)
	}
	return s.serve(ctx, a)
}

// stop ends a ready app with SIGTERM (SIGKILL after 10 s) and returns 0.
func (s *Supervisor) stop(a *app) (int, error) {
	_ = a.c.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		_ = a.c.Signal(syscall.SIGKILL)
		<-a.exited
	}
	return 0, nil
}

// tryRestore finds, checks and restores the checkpoint, and waits until the app is ready.
// On error nothing of the attempt is left.
func (s *Supervisor) tryRestore(ctx context.Context, begin time.Time) (*app, error) {
	st := s.store()
	r, err := s.locate(ctx, st) // found and checked: the node's own, or pulled (remote.go)
	if err != nil {
		return nil, err
	}
	// A lazy restore keeps the checkpoint held until all pages are in (watchLazyPages).
	release := sync.OnceFunc(func() { r.Close() })
	held := false
	defer func() {
		if !held {
			release()
			s.fetch.unmount(s.Log) // lazyfetch.go: CRIU is done reading the images
		}
	}()

	m := r.Manifest
	lazy := s.Settings.RestoreLazy
	if lazy && s.lazyFailedBefore(r.Dir, m.Created) {
		s.Log.WithFields(logrus.Fields{"checkpoint": r.Dir, "mark": s.lazyFailureMark(r.Dir, m.Created)}).
			Warn("a lazy restore of this checkpoint failed on this node before: restoring with all memory loaded first")
		lazy = false
	}
	var a *app
	var lazyErr error
	for {
		var lz *lazyPages
		a, lz, err = s.restoreOnce(r, lazy)
		daemonFailed, appDied := false, false
		if err == nil {
			if lz != nil {
				go s.watchLazyPages(a, lz, release, r.Dir, m.Created)
			}
			if _, err = s.waitReady(ctx, a, begin, "restore"); err != nil {
				daemonFailed = lz != nil && isDone(lz.done) && lz.err != nil
				// An app that dies before it is ready after a lazy restore may have met
				// memory the daemon could not deliver: it is tried once more, eagerly.
				appDied = lz != nil && isDone(a.exited)
				s.release(a)
				lz.stop() // not left to watchLazyPages: nothing of the attempt outlives tryRestore
			}
		}
		if err == nil {
			held = lz != nil
			a.lazy = lz
			break
		}
		if !lazy || ctx.Err() != nil || (lz != nil && !daemonFailed && !appDied) {
			return nil, err
		}
		// Lazy restore needs userfaultfd and CRIU's lazy-pages daemon (a seccomp profile, an
		// old kernel or missing privileges can stand in the way, or the daemon dies before the
		// app is ready); memory loaded up front still beats a cold start. A damaged
		// checkpoint fails this second try too.
		s.Log.WithError(err).Warn("lazy restore failed; restoring with all memory loaded first")
		lazy = false
		if !daemonFailed {
			lazyErr = err // (a daemon that died was remembered by watchLazyPages)
		}
	}
	if lazyErr != nil {
		// Only lazy restores fail here: the next pod need not try.
		s.rememberLazyFailure(r.Dir, m.Created, lazyErr)
	}
	s.keepKdat()   // remote.go: for the next pod on a node that has no checkpoint of its own
	s.fetchReady() // lazyfetch.go: logs what was fetched; the rest of the pages may stream in now
	// The guard is started only now: its start-up would compete for the CPU with the restored
	// app becoming ready; until then a killed crwrap's leftovers are removed by the next start.
	go s.guard(a)
	s.summary("restored", logrus.Fields{"checkpoint": st.Path(), "total_ms": time.Since(begin).Milliseconds(), "lazy": held})
	return a, nil
}

// restoreOnce prepares a container and restores the checkpoint r into it, with memory loaded
// on demand by a lazy-pages daemon (returned) or up front. On error nothing is left.
func (s *Supervisor) restoreOnce(r *checkpoint.Reader, lazy bool) (_ *app, _ *lazyPages, err error) {
	a, err := s.prepare()
	if err != nil {
		return nil, nil, err
	}
	var lz *lazyPages
	defer func() {
		if err != nil {
			lz.stop()
			s.release(a)
		}
	}()
	if a.fs.Overlay {
		if err := r.ApplyRootfsDiff(a.fs.Upper()); err != nil {
			return nil, nil, err
		}
	}

	t := time.Now()
	// The verified, held images directory: not a path that could be swapped since.
	images, err := s.imagesDir(r) // lazyfetch.go
	if err != nil {
		return nil, nil, err
	}
	work := filepath.Join(a.dir, "criu-restore")
	if lazy {
		if lz, err = s.startLazyPages(images, work); err != nil {
			return nil, nil, err
		}
	}
	watch := watchRestore(lz, s.Settings.ReadinessTimeout)
	release := s.Reaper.Hold()
	c, err := s.Runtime.Restore(container.Config{ID: a.id, Spec: a.spec, Stdout: s.Stdout, Stderr: s.Stderr},
		s.restoreOptions(images, work, lazy))
	ended := watch.finish()
	if err == nil {
		s.protect(c)
	}
	release()
	keepCRIULog(work, "restore.log")
	if err != nil {
		if ended != "" {
			err = fmt.Errorf("%s: %w", ended, err)
		}
		return nil, nil, fmt.Errorf("%w%s", err, criuLogTail(filepath.Join(work, "restore.log")))
	}
	a.c = c
	go s.await(a)
	fields := logrus.Fields{"checkpoint": r.Dir, "container": a.id, "lazy": lazy}
	if lz != nil {
		n, herr := lz.holdFaults()
		if n == 0 && isDone(lz.done) && lz.err != nil {
			// The daemon died before crwrap held its userfaultfds: the app's missing pages now
			// read as zeros. Not an app to serve from.
			err = fmt.Errorf("CRIU lazy-pages failed as the app resumed: %w", lz.err)
			return nil, nil, err
		}
		if herr != nil {
			s.Log.WithError(herr).Warn("lazy restore: should CRIU's lazy-pages daemon die, the app may briefly see zeros for memory not yet loaded")
		}
		fields["userfaultfds"] = n
	}
	if st, err := readRestoreStats(work); err == nil {
		fields["criu_restore_ms"] = st.RestoreTime.Milliseconds()
		fields["criu_forking_ms"] = st.ForkingTime.Milliseconds()
		fields["pages_restored"] = st.PagesRestored
		s.Metrics.ObserveRestoreStats(st)
	}
	d := s.phase("restore", t, fields)
	s.Metrics.ObserveRestore(d, -1)
	return a, lz, nil
}

// restoreOptions are the CRIU options of a restore from images, eager or lazy.
func (s *Supervisor) restoreOptions(images, work string, lazy bool) container.CRIUOptions {
	o := s.criuOptions(images, work, false)
	o.LazyPages = lazy
	return o
}

// find opens the checkpoint, waiting up to cr.restore.wait for it to appear.
func (s *Supervisor) find(ctx context.Context, st checkpoint.Store) (*checkpoint.Reader, error) {
	t := time.Now()
	deadline := t.Add(s.Settings.RestoreWait)
	logged := false
	for {
		r, err := st.Open()
		if err == nil {
			s.phase("find", t, logrus.Fields{"checkpoint": r.Dir})
			return r, nil
		}
		if !errors.Is(err, checkpoint.ErrNotFound) || time.Now().After(deadline) {
			return nil, err
		}
		if !logged {
			s.Log.WithFields(logrus.Fields{"checkpoint": st.Path(), "wait": s.Settings.RestoreWait.String()}).Info("waiting for a checkpoint to appear")
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for a checkpoint at %s: %w", st.Path(), context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
	}
}
