package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Rootfs is a prepared root filesystem for one app container.
type Rootfs struct {
	// Path is the directory to use as the container's root.
	Path string
	// Overlay reports whether Path is an overlay that tracks the app's writes; when the
	// kernel refuses the overlay, or the pod's root is an overlay itself, Path is a plain
	// writable bind of the pod's root and changes to it cannot be saved with a checkpoint.
	Overlay bool
	// NoOverlay says why Path is not an overlay (empty when it is).
	NoOverlay string

	dir   string
	lower string
	upper string
}

// Prepare builds a root filesystem for the app under dir (which it creates), from the
// pod's root "/". dir must be on a filesystem that can hold an overlay upper layer
// (tmpfs, ext4, xfs; not overlay or FUSE).
func Prepare(dir string) (*Rootfs, error) {
	r := &Rootfs{
		dir:   dir,
		lower: filepath.Join(dir, "lower"),
		upper: filepath.Join(dir, "upper"),
		Path:  filepath.Join(dir, "rootfs"),
	}
	for _, d := range []string{r.lower, r.upper, filepath.Join(dir, "work"), r.Path} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	// Non-recursive: the pod's /proc, /dev, volumes, the checkpoint hostPath stay out.
	if err := unix.Mount("/", r.lower, "", unix.MS_BIND, ""); err != nil {
		return nil, fmt.Errorf("bind the pod root to %s: %w", r.lower, err)
	}
	// An overlay stacked on the pod's overlay root (containerd's and CRI-O's overlayfs
	// snapshotters) maps the app's files through a mount of the lower overlay that is in no
	// mount namespace: CRIU cannot dump them ("Can't lookup mount=N for fd=-3"). Such a root
	// gets the bind.
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err == nil && st.Type == unix.OVERLAYFS_SUPER_MAGIC {
		if err := r.bind("the pod's root filesystem is an overlay (CRIU cannot dump an app on an overlay stacked on it)"); err != nil {
			return nil, err
		}
		return r, nil
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", r.lower, r.upper, filepath.Join(dir, "work"))
	if err := unix.Mount("overlay", r.Path, "overlay", 0, opts); err != nil {
		// Some hosts (an old kernel, an upper layer on overlay) refuse; fall back to a
		// writable bind so the app still runs, without rootfs-diff support.
		if err := r.bind(fmt.Sprintf("the kernel refused an overlay root: %v", err)); err != nil {
			return nil, err
		}
		return r, nil
	}
	r.Overlay = true
	return r, nil
}

// bind makes Path a writable bind of the pod's root, for the reason given.
func (r *Rootfs) bind(reason string) error {
	if err := unix.Mount(r.lower, r.Path, "", unix.MS_BIND, ""); err != nil {
		r.Release()
		return fmt.Errorf("bind the pod root at %s (%s): %w", r.Path, reason, err)
	}
	r.NoOverlay = reason
	return nil
}

// Upper is the directory that holds the app's changes (empty unless Overlay).
func (r *Rootfs) Upper() string { return r.upper }

// Release unmounts everything Prepare mounted and removes dir. The app must be gone.
func (r *Rootfs) Release() error {
	var errs []error
	for _, m := range []string{r.Path, r.lower} {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	if err := os.RemoveAll(r.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", r.dir, err))
	}
	return errors.Join(errs...)
}
