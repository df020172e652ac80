package main

import (
	"github.com/spf13/cobra"

	"github.com/crwrap/crwrap/internal/config"
	"github.com/crwrap/crwrap/internal/entrypoint"
)

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
		code, err := entrypoint.Run(cmd.Context(), s, entrypoint.Options{Logger: newLogger})
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
