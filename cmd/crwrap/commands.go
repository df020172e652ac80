package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/crwrap/crwrap/internal/config"
	"github.com/crwrap/crwrap/internal/doctor"
	"github.com/crwrap/crwrap/internal/supervisor"
	"github.com/crwrap/crwrap/internal/version"
	"github.com/crwrap/crwrap/templates"
)

// loadTemplate returns cr.container.template's content, or the built-in template.
func loadTemplate(s *config.Settings) (supervisor.Template, error) {
	if s.Template == "" {
		return supervisor.Template{Name: "built-in config.json template", Source: templates.Default}, nil
	}
	b, err := os.ReadFile(s.Template)
	if err != nil {
		return supervisor.Template{}, &config.Error{File: s.File, Key: "cr.container.template", Msg: fmt.Sprintf("read template: %v", err)}
	}
	return supervisor.Template{Name: s.Template, Source: string(b)}, nil
}

func newRenderCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "render [-- CMD ARG...]",
		Short: "Print the config.json the app would run with; change nothing",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// The whole file is checked as run would check it, cr.mode included.
			s, err := g.load(args, nil)
			if err != nil {
				return err
			}
			tmpl, err := loadTemplate(s)
			if err != nil {
				return err
			}
			sup := &supervisor.Supervisor{Settings: s, Template: tmpl, Env: os.Environ()}
			sp, err := sup.Render("crwrap-render", filepath.Join(defaultWorkDir, "crwrap-render", "fs", "rootfs"))
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(sp)
		},
	}
}

func newDoctorCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check that this host can checkpoint and restore, and say why not",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !doctor.Run(cmd.Context(), cmd.OutOrStdout(), doctor.Options{CRIUPath: criuPathSetting(g)}) {
				return exitError{code: 1}
			}
			return nil
		},
	}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print crwrap's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "crwrap %s (%s, %s/%s)\n", version.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

// criuPathSetting is cr.criu.path when the settings load (doctor runs even when they do not).
func criuPathSetting(g *globalFlags) string {
	s, err := g.load(nil, map[string]string{"cr.mode": string(config.ModeRun)})
	if err != nil {
		return ""
	}
	return s.CRIUPath
}
