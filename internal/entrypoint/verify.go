package entrypoint

import (
	"context"
	"fmt"
	"os"

	"github.com/crwrap/crwrap/internal/config"
)

// Verify is the CI gate of an app image: it runs the app as in checkpoint mode but into a
// temporary directory (never pushed), restores it from there with cr.restore.fallback=fail,
// waits until it is ready again and stops it. load gives the settings the CLI would, with
// extra keys set over them. The error says which step failed and why (for CRIU failures in
// CRIU's own words).
func Verify(ctx context.Context, load func(extra map[string]string) (*config.Settings, error), opts Options) error {
	tmp, err := os.MkdirTemp("", "crwrap-verify-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	extra := map[string]string{
		"cr.mode": string(config.ModeCheckpoint), "cr.checkpoint.root": tmp,
		"cr.checkpoint.directory": "verify", "cr.checkpoint.exit": "true", "cr.checkpoint.refresh": "always",
	}
	if s, err := load(nil); err == nil && s.CheckpointName != "" {
		extra["cr.checkpoint.name"] = s.CheckpointName
	} else {
		extra["cr.checkpoint.name"] = "verify"
	}
	s, err := load(extra)
	if err != nil {
		return err
	}
	s.CheckpointImage = "" // a CI gate's throwaway checkpoint is never pushed
	opts.StopWhenReady = false
	if code, err := Run(ctx, s, opts); err != nil || code != 0 {
		return verifyFailed("checkpoint", code, err)
	}
	s.Mode = config.ModeRestore
	s.RestoreFallback = "fail"
	opts.StopWhenReady = true
	if code, err := Run(ctx, s, opts); err != nil || code != 0 {
		return verifyFailed("restore", code, err)
	}
	return nil
}

func verifyFailed(step string, code int, err error) error {
	if err == nil {
		err = fmt.Errorf("exit status %d", code)
	}
	return fmt.Errorf("verify: %s failed: %w", step, err)
}
