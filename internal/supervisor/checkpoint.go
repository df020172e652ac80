package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/crwrap/crwrap/internal/archive"
	"github.com/crwrap/crwrap/internal/checkpoint"
	"github.com/crwrap/crwrap/internal/container"
	"github.com/crwrap/crwrap/internal/readiness"
	"github.com/crwrap/crwrap/internal/rootfs"
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
	size, err := s.dump(ctx, a, tmp)
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

// dumpAttempts is how often a dump failing on a TCP socket is tried.
const dumpAttempts = 3

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

// dump checkpoints the running app into dir in the archive layout and returns its size.
// The app is frozen first and stays frozen after a successful dump (the caller thaws or
// stops it); it is never killed here.
func (s *Supervisor) dump(ctx context.Context, a *app, dir string) (int64, error) {
	t := time.Now()
	pids, err := a.c.Processes()
	if err != nil {
		return 0, fmt.Errorf("list the app's processes: %w", err)
	}
	files, err := checkpoint.AppFiles("/", pids)
	if err != nil {
		return 0, fmt.Errorf("identify the app's files: %w", err)
	}
	s.phase("identify", t, logrus.Fields{"files": len(files)})

	t = time.Now()
	work := filepath.Join(a.dir, "criu-dump")
	// Nothing of CRIU's work directory stays, whatever happens (its log went to the error).
	defer os.RemoveAll(work)
	images := filepath.Join(dir, checkpoint.ImagesDir)
	// Frozen, the app is dumped as it is and can be left alive: CRIU then leaves it frozen.
	// Not with cr.criu.tcp-established: CRIU unlocks the network when it leaves an app
	// alive, and stopping the app afterwards would close its connections towards their
	// peers, which a restore in this network namespace could otherwise take over; CRIU
	// stops that app itself, with its connections locked.
	frozen := !s.Settings.TCPEstablished
	if frozen {
		if err := a.c.Pause(); err != nil {
			s.Log.WithError(err).Warn("the app cannot be frozen: CRIU dumps it and then stops it, so a failure after the dump ends it")
			frozen = false
		}
	}
	for attempt := 1; ; attempt++ {
		release := s.Reaper.Hold()
		dctx, cancel := context.WithTimeout(ctx, s.Settings.CheckpointTimeout)
		err = a.c.Checkpoint(dctx, s.criuOptions(images, work, frozen))
		cancel()
		release()
		keepCRIULog(work, "dump.log")
		if err == nil {
			break
		}
		tail := criuLogTail(filepath.Join(work, "dump.log"))
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, fmt.Errorf("the dump did not end within %s (cr.checkpoint.timeout): %w%s", s.Settings.CheckpointTimeout, err, tail)
		}
		err = fmt.Errorf("%w%s", err, tail)
		// A connection that is just being closed (the last readiness probe's, a client's)
		// makes CRIU refuse; CRIU left the app running, so a moment later the dump works.
		if attempt == dumpAttempts || !strings.Contains(tail, "TCP") || isDone(a.exited) || ctx.Err() != nil {
			return 0, err
		}
		s.Log.WithError(err).WithField("attempt", attempt).Warn("dump failed on a TCP socket; trying again")
		_ = os.RemoveAll(images)
		_ = os.RemoveAll(work)
		if frozen {
			if err := a.c.Resume(); err != nil {
				return 0, err
			}
		}
		time.Sleep(200 * time.Millisecond)
		if frozen {
			if err := a.c.Pause(); err != nil {
				return 0, err
			}
		}
	}
	// CRIU leaves a frozen app frozen; should another CRIU not, the rest of the checkpoint
	// must still see the app as it was dumped.
	if !frozen {
		select {
		case <-a.exited: // CRIU stopped it
		case <-time.After(10 * time.Second):
			return 0, errors.New("the app still runs 10 s after CRIU dumped it and should have stopped it")
		}
	} else if !a.c.Paused() {
		s.Log.Debug("the app runs after the dump; freezing it again")
		if err := a.c.Pause(); err != nil {
			return 0, err
		}
	}
	fields := logrus.Fields{}
	if st, err := readDumpStats(work); err == nil {
		fields["criu_frozen_ms"] = st.FrozenTime.Milliseconds()
		fields["criu_memdump_ms"] = st.MemdumpTime.Milliseconds()
		fields["criu_memwrite_ms"] = st.MemwriteTime.Milliseconds()
		fields["pages_written"] = st.PagesWritten
		s.Metrics.ObserveDumpStats(st)
	}
	dumpDur := s.phase("dump", t, fields)
	checkpointed := time.Now()

	t = time.Now()
	if a.fs.Overlay {
		if _, _, err := rootfs.ExportDiff(a.fs.Upper(), filepath.Join(dir, checkpoint.RootfsDiffFile), filepath.Join(dir, checkpoint.DeletedFilesFile)); err != nil {
			return 0, fmt.Errorf("save root filesystem changes: %w", err)
		}
	}
	if err := copyFile(filepath.Join(work, "stats-dump"), filepath.Join(dir, checkpoint.StatsDumpFile)); err != nil {
		return 0, fmt.Errorf("save CRIU statistics: %w", err)
	}
	host, err := checkpoint.CurrentHost()
	if err != nil {
		return 0, err
	}
	app := s.identity()
	app.Files = files
	m := &checkpoint.Manifest{
		Name:          s.Settings.CheckpointName,
		Created:       checkpointed.UTC(),
		CrwrapVersion: s.Version,
		CRIUVersion:   s.CRIUVersion,
		Host:          host,
		App:           app,
		DurationsMS:   s.timeline.durations(),
	}
	m.DurationsMS["dump"] = dumpDur.Milliseconds()
	// spec.dump and config.dump as Podman/CRI-O write them, so checkpointctl reads the archive.
	sp := *a.spec
	sp.Annotations = map[string]string{}
	for k, v := range a.spec.Annotations {
		sp.Annotations[k] = v
	}
	for k, v := range archive.SpecAnnotations(s.Settings.CheckpointName, os.Getenv("POD_NAME"), os.Getenv("POD_NAMESPACE")) {
		sp.Annotations[k] = v
	}
	if err := writeJSON(filepath.Join(dir, checkpoint.SpecDumpFile), &sp); err != nil {
		return 0, err
	}
	if err := archive.WriteConfigDump(dir, archive.ConfigDump(m, os.Getenv("CRWRAP_IMAGE"), a.started)); err != nil {
		return 0, err
	}
	if err := restrict(dir); err != nil {
		return 0, err
	}
	if err := checkpoint.WriteManifest(dir, m); err != nil {
		return 0, err
	}
	var size int64
	for _, f := range m.Files {
		size += f.Size
	}
	s.phase("write", t, logrus.Fields{"bytes": size})
	return size, nil
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

func writeJSON(p string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(p), err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}

// restrict makes everything under dir root-only (CRIU writes its images 0644): they hold the
// app's memory, and a copy or export must not widen access to them.
func restrict(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o600)
		if d.IsDir() {
			mode = 0o700
		} else if !d.Type().IsRegular() {
			return nil
		}
		if err := os.Chmod(p, mode); err != nil {
			return fmt.Errorf("restrict %s: %w", p, err)
		}
		return nil
	})
}
