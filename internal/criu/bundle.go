package criu

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Layout of a bundle directory, relative to Bundle.Dir.
const (
	// LoaderPath is the bundle's dynamic loader, relative to the bundle's root/.
	LoaderPath  = "lib64/ld-linux-x86-64.so.2"
	rootDir     = "root"
	binDir      = "bin"
	versionFile = "VERSION"
	// xtablesLibDir holds the iptables extensions (dlopened), relative to root/.
	xtablesLibDir = "usr/lib/x86_64-linux-gnu/xtables"
)

// libraryDirs are searched by the bundle's loader, relative to root/ (--library-path).
var libraryDirs = []string{"lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"}

// BundleEnv names an environment variable that, when set, points at the bundle directory
// instead of <dir of the executable>/../criu (development and tests). It is inherited by CRIU
// and by what CRIU executes, so every multi-call hop finds the same bundle.
const BundleEnv = "CRWRAP_CRIU_BUNDLE"

// ErrNoBundle is returned when no usable CRIU bundle is next to the running executable.
var ErrNoBundle = errors.New("no CRIU bundle")

// Bundle is a self-contained CRIU: its programs, their libraries and loader, and the bin/
// directory of multi-call symlinks to crwrap that goes first on PATH.
type Bundle struct {
	// Dir is the bundle directory (…/crwrap/criu), symlinks resolved.
	Dir string
	// BinDir is Dir/bin: criu, tar, gzip, iptables-restore, nft … as links to crwrap.
	BinDir string
	// Version is the bundled CRIU's version, from Dir/VERSION.
	Version Version
}

// Root is the directory holding the bundled programs at their Debian paths.
func (b *Bundle) Root() string { return filepath.Join(b.Dir, rootDir) }

// Loader is the absolute path of the bundle's dynamic loader.
func (b *Bundle) Loader() string { return filepath.Join(b.Root(), LoaderPath) }

// FindBundle locates the bundle: $CRWRAP_CRIU_BUNDLE when set, else <dir of /proc/self/exe>/../criu.
func FindBundle() (*Bundle, error) {
	if dir := os.Getenv(BundleEnv); dir != "" {
		return OpenBundle(dir)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find CRIU bundle: locate executable: %w", err)
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return OpenBundle(BundleDirFor(exe))
}

// BundleDirFor returns where the bundle of the crwrap binary at exe lives: <dir>/../criu.
func BundleDirFor(exe string) string {
	return filepath.Join(filepath.Dir(filepath.Dir(exe)), "criu")
}

// OpenBundle checks the bundle at dir: its loader, criu and VERSION must be there.
func OpenBundle(dir string) (*Bundle, error) {
	resolved, err := filepath.EvalSymlinks(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open CRIU bundle %s: %w", dir, ErrNoBundle)
		}
		return nil, fmt.Errorf("open CRIU bundle %s: %w", dir, err)
	}
	b := &Bundle{Dir: resolved, BinDir: filepath.Join(resolved, binDir)}
	for _, p := range []string{b.Loader(), filepath.Join(b.Root(), criuPath)} {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("open CRIU bundle %s: %w (%v)", dir, ErrNoBundle, err)
		}
		if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
			return nil, fmt.Errorf("open CRIU bundle %s: %s is not an executable file: %w", dir, p, ErrNoBundle)
		}
	}
	raw, err := os.ReadFile(filepath.Join(resolved, versionFile))
	if err != nil {
		return nil, fmt.Errorf("open CRIU bundle %s: %w (%v)", dir, ErrNoBundle, err)
	}
	if b.Version, err = ParseRelease(string(raw)); err != nil {
		return nil, fmt.Errorf("open CRIU bundle %s: VERSION: %w", dir, err)
	}
	return b, nil
}

// CheckLinks reports an error when BinDir/criu does not lead to an executable (the crwrap binary
// at Dir/../bin/crwrap): runc would then find no criu on PATH.
func (b *Bundle) CheckLinks() error {
	link := filepath.Join(b.BinDir, "criu")
	st, err := os.Stat(link)
	if err != nil {
		return fmt.Errorf("check CRIU bundle: %s: %w", link, err)
	}
	if st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("check CRIU bundle: %s is not executable", link)
	}
	return nil
}

// Activate puts BinDir first on the process's PATH, so that runc and go-criu, which exec "criu"
// from PATH, and CRIU, which execs tar, gzip and iptables-restore from PATH, run the bundle.
func (b *Bundle) Activate() error {
	if err := b.CheckLinks(); err != nil {
		return err
	}
	return prependPath(b.BinDir)
}

// ActivatePath makes criuPath (cr.criu.path) the "criu" found on PATH: when its base name is
// already "criu" its directory goes first on PATH; otherwise a directory under tempDir gets a
// "criu" symlink to it and goes first. A bare name ("criu4") is looked up on PATH first.
func ActivatePath(criuPath, tempDir string) error {
	if !strings.ContainsRune(criuPath, '/') {
		found, err := exec.LookPath(criuPath)
		if err != nil {
			return fmt.Errorf("activate cr.criu.path %q: %w", criuPath, err)
		}
		criuPath = found
	}
	abs, err := filepath.Abs(criuPath)
	if err != nil {
		return fmt.Errorf("activate cr.criu.path %q: %w", criuPath, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return fmt.Errorf("activate cr.criu.path %q: %w", criuPath, err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("activate cr.criu.path %q: not an executable file", criuPath)
	}
	if filepath.Base(abs) == "criu" {
		return prependPath(filepath.Dir(abs))
	}
	dir, err := os.MkdirTemp(tempDir, "criu-path-")
	if err != nil {
		return fmt.Errorf("activate cr.criu.path %q: %w", criuPath, err)
	}
	if err := os.Symlink(abs, filepath.Join(dir, "criu")); err != nil {
		return fmt.Errorf("activate cr.criu.path %q: %w", criuPath, err)
	}
	return prependPath(dir)
}

// prependPath puts dir first on PATH (once).
func prependPath(dir string) error {
	return os.Setenv("PATH", PrependPath(os.Getenv("PATH"), dir))
}

// PrependPath returns the PATH value with dir first and no other occurrence of dir.
func PrependPath(path, dir string) string {
	parts := []string{dir}
	for _, p := range filepath.SplitList(path) {
		if p != "" && p != dir {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, string(os.PathListSeparator))
}
