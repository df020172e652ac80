package supervisor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	"github.com/crwrap/crwrap/internal/checkpoint"
)

// dumpAttempts is how often a dump failing on a TCP socket is tried.
const dumpAttempts = 3

// dump checkpoints the running app into the new version d and returns its size: identify
// the app's files, freeze it, dump it with CRIU, write the rest of the checkpoint and seal
// it. The app is frozen first and stays frozen after a successful dump (the caller thaws or
// stops it); it is never killed here.
func (s *Supervisor) dump(ctx context.Context, a *app, d checkpoint.Draft) (int64, error) {
	t := time.Now()
	files, err := appFiles(a)
	if err != nil {
		return 0, err
	}
	s.phase("identify", t, logrus.Fields{"files": len(files)})

	t = time.Now()
	work := filepath.Join(a.dir, "criu-dump")
	// Nothing of CRIU's work directory stays, whatever happens (its log went to the error).
	defer os.RemoveAll(work)
	frozen := s.freeze(a)
	if err := s.criuDump(ctx, a, d, work, frozen); err != nil {
		return 0, err
	}
	if err := s.settle(a, frozen); err != nil {
		return 0, err
	}
	dumpDur := s.phase("dump", t, s.dumpStats(work))
	checkpointed := time.Now()

	t = time.Now()
	m, err := s.manifest(files, checkpointed, dumpDur)
	if err != nil {
		return 0, err
	}
	if err := s.writeParts(a, d, work, m); err != nil {
		return 0, err
	}
	var size int64
	for _, f := range m.Files {
		size += f.Size
	}
	s.phase("write", t, logrus.Fields{"bytes": size})
	return size, nil
}

// appFiles lists the executables and libraries the app's processes have mapped.
func appFiles(a *app) ([]checkpoint.File, error) {
	pids, err := a.c.Processes()
	if err != nil {
		return nil, fmt.Errorf("list the app's processes: %w", err)
	}
	files, err := checkpoint.AppFiles("/", pids)
	if err != nil {
		return nil, fmt.Errorf("identify the app's files: %w", err)
	}
	return files, nil
}

// freeze freezes the app for the dump and reports whether it is frozen. Frozen, the app is
// dumped as it is and can be left alive: CRIU then leaves it frozen. Not with
// cr.criu.tcp-established: CRIU unlocks the network when it leaves an app alive, and stopping
// the app afterwards would close its connections towards their peers, which a restore in
// this network namespace could otherwise take over; CRIU stops that app itself, with its
// connections locked.
func (s *Supervisor) freeze(a *app) bool {
	if s.Settings.TCPEstablished {
		return false
	}
	if err := a.c.Pause(); err != nil {
		s.Log.WithError(err).Warn("the app cannot be frozen: CRIU dumps it and then stops it, so a failure after the dump ends it")
		return false
	}
	return true
}

// criuDump dumps the app's processes into d's images directory, with CRIU's work files in
// work, leaving a frozen app alive. A dump failing on a TCP socket is tried again, up to
// dumpAttempts times.
func (s *Supervisor) criuDump(ctx context.Context, a *app, d checkpoint.Draft, work string, frozen bool) error {
	for attempt := 1; ; attempt++ {
		release := s.Reaper.Hold()
		dctx, cancel := context.WithTimeout(ctx, s.Settings.CheckpointTimeout)
		err := a.c.Checkpoint(dctx, s.criuOptions(d.ImagesDir(), work, frozen))
		cancel()
		release()
		keepCRIULog(work, "dump.log")
		if err == nil {
			return nil
		}
		tail := criuLogTail(filepath.Join(work, "dump.log"))
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("the dump did not end within %s (cr.checkpoint.timeout): %w%s", s.Settings.CheckpointTimeout, err, tail)
		}
		err = fmt.Errorf("%w%s", err, tail)
		// A connection that is just being closed (the last readiness probe's, a client's)
		// makes CRIU refuse; CRIU left the app running, so a moment later the dump works.
		if attempt == dumpAttempts || !strings.Contains(tail, "TCP") || isDone(a.exited) || ctx.Err() != nil {
			return err
		}
		s.Log.WithError(err).WithField("attempt", attempt).Warn("dump failed on a TCP socket; trying again")
		if err := s.retryPause(a, d, work, frozen); err != nil {
			return err
		}
	}
}

// retryPause clears a failed dump's files and lets a frozen app run for a moment (its
// closing connection goes away), then freezes it again.
func (s *Supervisor) retryPause(a *app, d checkpoint.Draft, work string, frozen bool) error {
	_ = d.ClearImages()
	_ = os.RemoveAll(work)
	if frozen {
		if err := a.c.Resume(); err != nil {
			return err
		}
	}
	time.Sleep(200 * time.Millisecond)
	if frozen {
		return a.c.Pause()
	}
	return nil
}

// settle makes sure that after the dump the app is as it was dumped: stopped by CRIU when it
// was not frozen, still frozen when it was (CRIU leaves a frozen app frozen; should another
// CRIU not, it is frozen again), so the rest of the checkpoint sees the dumped app.
func (s *Supervisor) settle(a *app, frozen bool) error {
	if !frozen {
		select {
		case <-a.exited: // CRIU stopped it
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("the app still runs 10 s after CRIU dumped it and should have stopped it")
		}
	}
	if !a.c.Paused() {
		s.Log.Debug("the app runs after the dump; freezing it again")
		return a.c.Pause()
	}
	return nil
}

// dumpStats reads CRIU's dump statistics from work into log fields (and the metrics); none
// when CRIU wrote none.
func (s *Supervisor) dumpStats(work string) logrus.Fields {
	fields := logrus.Fields{}
	if st, err := readDumpStats(work); err == nil {
		fields["criu_frozen_ms"] = st.FrozenTime.Milliseconds()
		fields["criu_memdump_ms"] = st.MemdumpTime.Milliseconds()
		fields["criu_memwrite_ms"] = st.MemwriteTime.Milliseconds()
		fields["pages_written"] = st.PagesWritten
		s.Metrics.ObserveDumpStats(st)
	}
	return fields
}

// manifest is crwrap.json of the checkpoint taken at checkpointed (its files are listed by
// Draft.Seal): this app, with its mapped files, on this host, and the phase durations.
func (s *Supervisor) manifest(files []checkpoint.File, checkpointed time.Time, dumpDur time.Duration) (*checkpoint.Manifest, error) {
	host, err := checkpoint.CurrentHost()
	if err != nil {
		return nil, err
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
	return m, nil
}

// writeParts writes what the checkpoint holds beside CRIU's images into d — the root
// filesystem changes, CRIU's statistics from work, spec.dump and config.dump as Podman and
// CRI-O write them (so checkpointctl reads the archive) — and seals it with m.
func (s *Supervisor) writeParts(a *app, d checkpoint.Draft, work string, m *checkpoint.Manifest) error {
	if a.fs.Overlay {
		if err := d.WriteRootfsDiff(a.fs.Upper()); err != nil {
			return fmt.Errorf("save root filesystem changes: %w", err)
		}
	}
	if err := d.CopyStats(work); err != nil {
		return fmt.Errorf("save CRIU statistics: %w", err)
	}
	if err := d.WriteSpec(s.specDump(a)); err != nil {
		return err
	}
	if err := d.WriteConfigDump(checkpoint.ConfigDump(m, os.Getenv("CRWRAP_IMAGE"), a.started)); err != nil {
		return err
	}
	return d.Seal(m)
}

// specDump is the app's spec with the annotations checkpointctl reads to name the container,
// pod and namespace.
func (s *Supervisor) specDump(a *app) *specs.Spec {
	sp := *a.spec
	sp.Annotations = maps.Clone(a.spec.Annotations)
	if sp.Annotations == nil {
		sp.Annotations = map[string]string{}
	}
	maps.Copy(sp.Annotations, checkpoint.SpecAnnotations(s.Settings.CheckpointName, os.Getenv("POD_NAME"), os.Getenv("POD_NAMESPACE")))
	return &sp
}
