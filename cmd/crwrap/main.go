// Command crwrap runs an app in a container under embedded runc and removes its cold start:
// it checkpoints the warm app with CRIU once and restores every new replica from that image.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/crwrap/crwrap/internal/config"
	"github.com/crwrap/crwrap/internal/container"
	"github.com/crwrap/crwrap/internal/criu"
	"github.com/crwrap/crwrap/internal/spec"
	"github.com/crwrap/crwrap/internal/termlog"
	// Enter a private mount namespace (before the Go runtime starts) for the commands that mount.
	_ "github.com/crwrap/crwrap/internal/mountns"
	// Run bundled CRIU tools without starting the Go runtime.
	_ "github.com/crwrap/crwrap/internal/multicall"
)

// exitError carries an exit status decided by the command (the app's own status, 127 for a
// missing executable), with the error to print when there is one.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return fmt.Sprintf("exit status %d", e.code)
}

// usageError marks bad command-line usage (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	if container.IsInit() {
		container.Init() // does not return
	}
	if container.IsGuard() {
		os.Exit(container.RunGuard(os.Args[2:]))
	}
	if handled, err := criu.Dispatch(os.Args[0], os.Args[1:]); handled {
		fmt.Fprintf(os.Stderr, "crwrap: %v\n", err)
		os.Exit(127)
	}
	os.Exit(execute(os.Args[1:]))
}

func execute(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	err := root.Execute()
	return exitCode(err, root)
}

// exitCode decides the process's exit status, once, from the error a command returned.
func exitCode(err error, root *cobra.Command) int {
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) && ee.err == nil {
		return ee.code
	}
	fmt.Fprintf(root.ErrOrStderr(), "crwrap: %v\n", err)
	// What kubectl describe pod shows as the reason the container terminated.
	_ = termlog.Write(err.Error())
	var ue usageError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue), errors.Is(err, config.ErrInvalid), errors.Is(err, spec.ErrInvalid),
		strings.HasPrefix(err.Error(), "unknown command "):
		return 2
	default:
		return 1
	}
}
