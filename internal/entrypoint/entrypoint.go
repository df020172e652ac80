package entrypoint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/crwrap/crwrap/internal/config"
	"github.com/crwrap/crwrap/internal/container"
	"github.com/crwrap/crwrap/internal/criu"
	"github.com/crwrap/crwrap/internal/metrics"
	"github.com/crwrap/crwrap/internal/mountns"
	"github.com/crwrap/crwrap/internal/reaper"
	"github.com/crwrap/crwrap/internal/supervisor"
	"github.com/crwrap/crwrap/internal/version"
	"github.com/crwrap/crwrap/templates"
)

// Where crwrap keeps libcontainer state (shared by all crwraps of a machine, so a later one
// can clean up after a killed one) and per-container scratch space (a private tmpfs);
// CRWRAP_STATE_DIR and CRWRAP_WORK_DIR override them.
const (
	DefaultStateDir = "/var/lib/crwrap/state"
	DefaultWorkDir  = "/run/crwrap"
)

// forwarded are the signals crwrap passes on to the app.
var forwarded = []os.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2}

// Options are what the CLI decides for a run.
type Options struct {
	// Logger makes the logger for the settings (text or JSON, the level): the CLI's.
	Logger func(*config.Settings) *logrus.Logger
	// StopWhenReady ends the app with SIGTERM once it is ready, and a restore that cannot be
	// done is a failure, not a cold start (crwrap verify).
	StopWhenReady bool
}

// Run sets up what the supervisor needs (root, CRIU, directories, cgroups, reaping, signals,
// metrics) and runs the mode of s. It returns crwrap's exit code: 2 for a template that
// cannot be read, the app's status when it ends, 1 for other failures.
func Run(ctx context.Context, s *config.Settings, opts Options) (int, error) {
	log := opts.Logger(s)
	entry := log.WithField("mode", string(s.Mode))
	env := os.Environ() // the app's environment, before PATH gets the CRIU bundle
	if os.Geteuid() != 0 {
		return 1, errors.New("crwrap needs root (in a pod: a privileged securityContext or the capabilities in docs/kubernetes.md)")
	}
	tmpl, err := LoadTemplate(s)
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
	stateDir := envOr("CRWRAP_STATE_DIR", DefaultStateDir)
	workDir := envOr("CRWRAP_WORK_DIR", DefaultWorkDir)
	if err := prepareWorkDir(workDir); err != nil {
		return 1, err
	}
	if mountns.Entered() {
		if err := container.WritableCgroups(); err != nil {
			return 1, err
		}
	}
	onPublished := kdatCache(s, criuVersion, entry)

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	rctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rp, err := reaper.Start(rctx)
	if err != nil {
		return 1, err
	}
	m, err := serveMetrics(rctx, s, criuVersion, entry)
	if err != nil {
		return 1, err
	}
	sup := &supervisor.Supervisor{
		Metrics:       m,
		StopWhenReady: opts.StopWhenReady,
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

// LoadTemplate returns cr.container.template's content, or the built-in template.
func LoadTemplate(s *config.Settings) (supervisor.Template, error) {
	if s.Template == "" {
		return supervisor.Template{Name: "built-in config.json template", Source: templates.Default}, nil
	}
	b, err := os.ReadFile(s.Template)
	if err != nil {
		return supervisor.Template{}, &config.Error{File: s.File, Key: "cr.container.template", Msg: fmt.Sprintf("read template: %v", err)}
	}
	return supervisor.Template{Name: s.Template, Source: string(b)}, nil
}

// kdatCache loads CRIU's kernel probe cache from the checkpoint root, so that restores skip
// the probes, and returns what saves it after a checkpoint is published (CRIU has written it
// by then; it is kept before the pod idles). Nil when there is nothing to save.
func kdatCache(s *config.Settings, criuVersion string, log *logrus.Entry) func() {
	if s.Mode == config.ModeRun || !mountns.Entered() {
		return nil
	}
	kdat := criu.KdatCacheIn(s.CheckpointRoot, criuVersion)
	if err := kdat.Load(); err != nil {
		log.WithError(err).Warn("CRIU kernel probe cache")
	}
	if s.Mode != config.ModeCheckpoint {
		return nil
	}
	return func() {
		if err := kdat.Save(); err != nil {
			log.WithError(err).Debug("CRIU kernel probe cache not saved")
		}
	}
}

// serveMetrics serves Prometheus metrics on cr.metrics.address until ctx ends; nil metrics
// when it is not set.
func serveMetrics(ctx context.Context, s *config.Settings, criuVersion string, log *logrus.Entry) (*metrics.Metrics, error) {
	if s.MetricsAddress == "" {
		return nil, nil
	}
	m := metrics.New()
	m.SetInfo(version.Version, criuVersion)
	addr, err := m.Serve(ctx, s.MetricsAddress, log)
	if err != nil {
		return nil, fmt.Errorf("serve metrics on %s: %w", s.MetricsAddress, err)
	}
	log.WithField("address", addr.String()).Info("serving Prometheus metrics at /metrics")
	return m, nil
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

// Render returns the OCI spec a run with the settings s would give the app (crwrap render),
// with the environment of this process; nothing is started or written.
func Render(s *config.Settings) (*specs.Spec, error) {
	tmpl, err := LoadTemplate(s)
	if err != nil {
		return nil, err
	}
	sup := &supervisor.Supervisor{Settings: s, Template: tmpl, Env: os.Environ()}
	return sup.Render("crwrap-render", filepath.Join(DefaultWorkDir, "crwrap-render", "fs", "rootfs"))
}
