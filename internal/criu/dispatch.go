package criu

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// XtablesEnv selects the iptables backend of the bundled iptables tools: "nft" (default) or
// "legacy" (hosts whose kernel lacks nf_tables but has ip_tables).
const XtablesEnv = "CRWRAP_XTABLES"

// Tools returns the names crwrap answers to as a multi-call binary.
func Tools() []string {
	names := make([]string, len(bundledTools))
	for i, t := range bundledTools {
		names[i] = t.Name
	}
	return names
}

// IsTool reports whether name (a base name) is one of the bundled programs.
func IsTool(name string) bool {
	_, ok := lookupTool(name)
	return ok
}

func isXtables(name string) bool {
	t, ok := lookupTool(name)
	return ok && t.Xtables
}

// ToolPath returns the absolute path, under the bundle's root, of the program that serves the
// multi-call name tool, honouring CRWRAP_XTABLES for the iptables names.
func (b *Bundle) ToolPath(tool string) (string, error) {
	t, ok := lookupTool(tool)
	if !ok {
		return "", fmt.Errorf("%s: not a bundled tool", tool)
	}
	cands := t.Paths
	if t.Xtables && os.Getenv(XtablesEnv) == "legacy" {
		cands = []string{XtablesLegacy}
	}
	for _, c := range cands {
		p := filepath.Join(b.Root(), c)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not in the CRIU bundle %s: %w", tool, b.Dir, ErrNoBundle)
}

// LibraryPath is the loader's --library-path for the bundle rooted at root.
func LibraryPath(root string) string {
	dirs := make([]string, len(libraryDirs))
	for i, d := range libraryDirs {
		dirs[i] = filepath.Join(root, d)
	}
	return strings.Join(dirs, ":")
}

// LoaderArgv builds the command line that runs program (an absolute path under root) as name
// through the bundle's loader: the loader path first (it is both the file to exec and argv[0]),
// then --library-path, --argv0 name, the program and its arguments.
func LoaderArgv(root, name, program string, args []string) []string {
	argv := []string{
		filepath.Join(root, LoaderPath),
		"--library-path", LibraryPath(root),
		"--argv0", name,
		program,
	}
	return append(argv, args...)
}

// Argv is the command line that runs the bundled tool (as LoaderArgv) with args; run it with
// exec.Command(argv[0], argv[1:]...). No shell and no crwrap binary is involved.
func (b *Bundle) Argv(tool string, args ...string) ([]string, error) {
	prog, err := b.ToolPath(tool)
	if err != nil {
		return nil, err
	}
	return LoaderArgv(b.Root(), tool, prog, args), nil
}

// Env returns the environment a bundled tool needs on top of env: the iptables tools load their
// extensions from the bundle (XTABLES_LIBDIR) instead of the compiled-in host path. Everything
// else passes unchanged.
func (b *Bundle) Env(tool string, env []string) []string {
	if !isXtables(tool) {
		return env
	}
	return ToolEnv(b.Root(), tool, env)
}

// ToolEnv is Bundle.Env for the bundle rooted at root.
func ToolEnv(root, tool string, env []string) []string {
	if !isXtables(tool) {
		return env
	}
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "XTABLES_LIBDIR=") {
			out = append(out, kv)
		}
	}
	return append(out, "XTABLES_LIBDIR="+filepath.Join(root, xtablesLibDir))
}

// Command returns an *exec.Cmd running the bundled tool with args, environment included.
func (b *Bundle) Command(tool string, args ...string) (*exec.Cmd, error) {
	argv, err := b.Argv(tool, args...)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = b.Env(tool, os.Environ())
	return cmd, nil
}

// Dispatch makes crwrap a multi-call binary: when filepath.Base(argv0) names a bundled tool
// (criu, tar, gzip, iptables-restore, nft …), it replaces the process with that program run
// through the bundle's loader, with args and the environment passed on. main calls it first;
// it returns handled=false, nil for any other name. On success it does not return; handled=true
// with an error means the name was a tool that cannot run (no bundle): main should print the
// error and exit 127, as a shell does for a missing command.
func Dispatch(argv0 string, args []string) (handled bool, err error) {
	name := filepath.Base(argv0)
	if !IsTool(name) {
		return false, nil
	}
	b, err := FindBundle()
	if err != nil {
		return true, fmt.Errorf("run %s: %w", name, err)
	}
	argv, err := b.Argv(name, args...)
	if err != nil {
		return true, fmt.Errorf("run %s: %w", name, err)
	}
	err = syscall.Exec(argv[0], argv, b.Env(name, os.Environ()))
	return true, fmt.Errorf("run %s: exec %s: %w", name, argv[0], err)
}
