package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/crwrap/crwrap/internal/config"
	"github.com/crwrap/crwrap/internal/container"
	"github.com/crwrap/crwrap/internal/criu"
	"github.com/crwrap/crwrap/internal/metrics"
	"github.com/crwrap/crwrap/internal/mountns"
	"github.com/crwrap/crwrap/internal/reaper"
	"github.com/crwrap/crwrap/internal/supervisor"
	"github.com/crwrap/crwrap/internal/version"
)

// Where crwrap keeps libcontainer state (shared by all crwraps of a machine, so a later one
// can clean up after a killed one) and per-container scratch space (a private tmpfs).
const (
	defaultStateDir = "/var/lib/crwrap/state"
	defaultWorkDir  = "/run/crwrap"
)

// forwarded are the signals crwrap passes on to the app.
var forwarded = []os.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2}

func newRunCmd(g *globalFlags, fixed config.Mode) *cobra.Command {
	var mode string
	cmd := &cobra.Command{
		Args: cobra.ArbitraryArgs,
	}
	switch fixed {
	case config.ModeCheckpoint:
		cmd.Use = "checkpoint [-- CMD ARG...]"
		cmd.Short = "Start the app, wait until it is ready, checkpoint it and publish the images (= run --mode checkpoint)"
	case config.ModeRestore:
		cmd.Use = "restore [-- CMD ARG...]"
		cmd.Short = "Start the app from its checkpoint, or cold when that cannot be done (= run --mode restore)"
	default:
		cmd.Use = "run [--mode run|checkpoint|restore] [-- CMD ARG...]"
		cmd.Short = "Run the app in a container (the image entrypoint); the mode comes from --mode, CR_MODE or cr.mode"
		cmd.Flags().StringVar(&mode, "mode", "", "run, checkpoint or restore (cr.mode)")
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		extra := map[string]string{}
		if fixed != "" {
			extra["cr.mode"] = string(fixed)
		} else if mode != "" {
			extra["cr.mode"] = mode
		}
		s, err := g.load(args, extra)
		if err != nil {
			return err
		}
		code, err := runApp(cmd.Context(), s, false)
		if err != nil && code > 1 {
			return exitError{code, err}
		}
		if err != nil {
			return err
		}
		return exitError{code: code}
	}
	return cmd
}

// runApp sets up what the supervisor needs (CRIU, directories, reaping, signals) and runs it.
func runApp(ctx context.Context, s *config.Settings, stopWhenReady bool) (int, error) {
	log := newLogger(s)
	entry := log.WithField("mode", string(s.Mode))
	env := os.Environ() // the app's environment, before PATH gets the CRIU bundle
	if os.Geteuid() != 0 {
		return 1, errors.New("crwrap needs root (in a pod: a privileged securityContext or the capabilities in docs/kubernetes.md)")
	}
	tmpl, err := loadTemplate(s)
	if err != nil {
		return 2, err
	}
	criuVersion := ""
	if s.Mode != config.ModeRun {
		v, err := activateCRIU(ctx, s)
		if err != nil {
			return 1, err
		}
		criuVersion = v
	}
	stateDir := envOr("CRWRAP_STATE_DIR", defaultStateDir)
	workDir := envOr("CRWRAP_WORK_DIR", defaultWorkDir)
	if err := prepareWorkDir(workDir); err != nil {
		return 1, err
	}
	if mountns.Entered() {
		if err := container.WritableCgroups(); err != nil {
			return 1, err
		}
	}
	var onPublished func()
	if s.Mode != config.ModeRun && mountns.Entered() {
		// CRIU's kernel probe cache lives on the checkpoint root, so that restores skip the probes.
		kdat := criu.KdatCache{Path: filepath.Join(s.CheckpointRoot, ".crwrap", "criu-"+criuVersion+".kdat")}
		if err := kdat.Load(); err != nil {
			entry.WithError(err).Warn("CRIU kernel probe cache")
		}
		if s.Mode == config.ModeCheckpoint {
			// After the dump CRIU has written its cache; keep it before the pod idles.
			onPublished = func() {
				if err := kdat.Save(); err != nil {
					entry.WithError(err).Debug("CRIU kernel probe cache not saved")
				}
			}
		}
	}

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	rctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rp, err := reaper.Start(rctx)
	if err != nil {
		return 1, err
	}
	var m *metrics.Metrics
	if s.MetricsAddress != "" {
		m = metrics.New()
		m.SetInfo(version.Version, criuVersion)
		addr, err := m.Serve(rctx, s.MetricsAddress, entry)
		if err != nil {
			return 1, fmt.Errorf("serve metrics on %s: %w", s.MetricsAddress, err)
		}
		entry.WithField("address", addr.String()).Info("serving Prometheus metrics at /metrics")
	}
	sup := &supervisor.Supervisor{
		Metrics:       m,
		StopWhenReady: stopWhenReady,
		OnPublished:   onPublished,
		Settings:      s,
		Template:      tmpl,
		Log:           entry,
		Runtime:       &container.Runtime{Root: stateDir, Log: entry, CRIUVersion: criuVersion},
		Reaper:        rp,
		WorkRoot:      workDir,
		Env:           env,
		Stdout:        os.Stdout,
		Stderr:        os.Stderr,
		Signals:       sigs,
		CRIUVersion:   criuVersion,
		Version:       version.Version,
	}
	return sup.Run(ctx)
}

// activateCRIU makes the CRIU to use the "criu" on PATH and returns its version.
func activateCRIU(ctx context.Context, s *config.Settings) (string, error) {
	if s.CRIUPath != "" {
		if b, err := criu.FindBundle(); err == nil {
			_ = b.Activate() // tar, gzip and iptables still come from the bundle
		}
		if err := criu.ActivatePath(s.CRIUPath, os.TempDir()); err != nil {
			return "", err
		}
		v, err := criu.QueryVersion(ctx, []string{"criu"})
		if err != nil {
			return "", err
		}
		return v.String(), nil
	}
	b, err := criu.FindBundle()
	if err != nil {
		return "", fmt.Errorf("%w (set cr.criu.path to use another CRIU)", err)
	}
	if err := b.Activate(); err != nil {
		return "", err
	}
	return b.Version.String(), nil
}

// prepareWorkDir gives this crwrap a tmpfs of its own on /run, for root filesystem layers,
// CRIU work directories and CRIU's kernel probe cache: invisible to the app (its root is a
// non-recursive bind of "/") and gone with crwrap.
func prepareWorkDir(dir string) error {
	if mountns.Entered() {
		if err := criu.PrivateRun(); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create work directory %s: %w", dir, err)
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return filepath.Clean(v)
	}
	return def
}
