package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/crwrap/crwrap/internal/config"
)

// globalFlags are the flags every command has.
type globalFlags struct {
	config    string
	logFormat string
	logLevel  string
	set       []string
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "crwrap",
		Short: "Run an app in a container and remove its cold start with checkpoint/restore",
		Long: `crwrap is the entrypoint of a container image. It reads /etc/cr.properties, renders an
OCI config.json from a template and runs the app under embedded runc. In checkpoint mode it
waits until the app is ready, dumps it with CRIU and publishes the images under
<cr.checkpoint.root>/<cr.checkpoint.directory>/<cr.checkpoint.name>; in restore mode it
starts the app from those images in a fraction of its cold start, and falls back to a
normal start when the checkpoint is missing, damaged or not this app's.

Every cr.* setting comes from, in order: --set cr.KEY=VALUE, the environment (cr.restore.wait
is CR_RESTORE_WAIT), the properties file, the default.`,
		Example: `  # In an image
  ENTRYPOINT ["/crwrap/bin/crwrap", "run", "--"]
  CMD ["/app/server"]

  # On a node: warm up once and publish a checkpoint, then restore from it
  crwrap checkpoint -- /app/server
  crwrap restore -- /app/server`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&g.config, "config", "", "properties file (default $CR_PROPERTIES, else "+config.DefaultPath+")")
	pf.StringVar(&g.logFormat, "log-format", "", "log format: text or json (cr.log.format)")
	pf.StringVar(&g.logLevel, "log-level", "", "log level: debug, info, warn, error (cr.log.level)")
	pf.StringArrayVar(&g.set, "set", nil, "set a cr.* key, overriding environment and file (repeatable), e.g. --set cr.restore.wait=30s")

	root.AddCommand(
		newRunCmd(g, ""),
		newRunCmd(g, config.ModeCheckpoint),
		newRunCmd(g, config.ModeRestore),
		newRenderCmd(g),
		newDoctorCmd(g),
		newVersionCmd(),
		newInspectCmd(),
		newExportCmd(),
		newImportCmd(),
		newVerifyCmd(g),
		newPushCmd(),
		newPullCmd(),
	)
	return root
}

// load reads the settings with the command line's overrides.
func (g *globalFlags) load(args []string, extra map[string]string) (*config.Settings, error) {
	return g.loadWith(args, extra, false)
}

// loadWith is load for commands that may run without an app command (doctor).
func (g *globalFlags) loadWith(args []string, extra map[string]string, commandOptional bool) (*config.Settings, error) {
	flags := map[string]string{}
	names := map[string]string{}
	for _, kv := range g.set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, "cr.") {
			return nil, usageError{fmt.Errorf("--set %q: want cr.KEY=VALUE", kv)}
		}
		flags[k], names[k] = v, "--set "+k
	}
	if g.logFormat != "" {
		flags["cr.log.format"], names["cr.log.format"] = g.logFormat, "--log-format"
	}
	if g.logLevel != "" {
		flags["cr.log.level"], names["cr.log.level"] = g.logLevel, "--log-level"
	}
	for k, v := range extra {
		flags[k] = v
	}
	return config.Load(config.LoadOptions{
		Path:      g.config,
		Explicit:  g.config != "",
		Env:       os.Environ(),
		Flags:     flags,
		FlagNames: names,
		Args:      args,

		CommandOptional: commandOptional,
	})
}

// newLogger configures logging for the command (text or JSON, to stderr).
func newLogger(s *config.Settings) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	if s.LogFormat == "json" {
		l.SetFormatter(&logrus.JSONFormatter{TimestampFormat: "2006-01-02T15:04:05.000Z07:00"})
	} else {
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000", DisableColors: true})
	}
	if lvl, err := logrus.ParseLevel(s.LogLevel); err == nil {
		l.SetLevel(lvl)
	}
	// libcontainer logs through the standard logger: keep it quiet and in the same format.
	logrus.SetOutput(os.Stderr)
	logrus.SetFormatter(l.Formatter)
	logrus.SetLevel(logrus.ErrorLevel) // its CRIU log quotes: crwrap reports the tail itself
	if l.Level >= logrus.DebugLevel {
		logrus.SetLevel(l.Level)
	}
	return l
}
