package criu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// KdatFile is where CRIU caches its kernel probes. CRIU reads and writes it only when /run is
// a tmpfs; otherwise every CRIU start probes the kernel again (about 30 ms, and on some hosts
// several iptables runs), which is a large part of a restore.
const KdatFile = "/run/criu.kdat"

// KdatCache keeps CRIU's kernel probe cache across crwrap processes (and pods) in a file of
// crwrap's choosing, normally on the checkpoint hostPath. CRIU itself checks that a cache is
// for this kernel (boot id) and for its own version and probes again when it is not, so a
// stale or foreign file costs nothing but the probe it would have made anyway.
type KdatCache struct {
	// Path is the persistent copy.
	Path string
}

// KdatCacheIn is the cache of CRIU version in the directory dir (a checkpoint root, the node
// cache): <dir>/.crwrap/criu-<version>.kdat.
func KdatCacheIn(dir, version string) KdatCache {
	return KdatCache{Path: filepath.Join(dir, ".crwrap", "criu-"+version+".kdat")}
}

// Load puts the persistent copy where CRIU looks for it. /run must be a tmpfs private to this
// process (see PrivateRun). A missing copy is not an error.
func (k KdatCache) Load() error {
	b, err := os.ReadFile(k.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read CRIU kdat cache %s: %w", k.Path, err)
	}
	if err := os.WriteFile(KdatFile, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", KdatFile, err)
	}
	return nil
}

// Save stores what CRIU cached (when it did) as the persistent copy, atomically.
func (k KdatCache) Save() error {
	b, err := os.ReadFile(KdatFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", KdatFile, err)
	}
	if old, err := os.ReadFile(k.Path); err == nil && string(old) == string(b) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(k.Path), 0o700); err != nil {
		return fmt.Errorf("save CRIU kdat cache: %w", err)
	}
	tmp := k.Path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save CRIU kdat cache: %w", err)
	}
	if err := os.Rename(tmp, k.Path); err != nil {
		return fmt.Errorf("save CRIU kdat cache: %w", err)
	}
	return nil
}

// PrivateRun mounts a tmpfs on /run unless /run is one already. Call it only in a mount
// namespace of crwrap's own: the app does not see it (its root is a non-recursive bind of
// "/"), and it goes away with crwrap.
func PrivateRun() error {
	var st unix.Statfs_t
	if err := unix.Statfs("/run", &st); err == nil && st.Type == unix.TMPFS_MAGIC {
		return nil
	}
	if err := os.MkdirAll("/run", 0o755); err != nil {
		return fmt.Errorf("create /run: %w", err)
	}
	if err := unix.Mount("tmpfs", "/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on /run: %w", err)
	}
	return nil
}
