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
	// kernel refuses the overlay, Path is a plain writable bind of the pod's root and
	// changes to it cannot be saved with a checkpoint.
	Overlay bool

	dir   string
	lower string
	upper string
	tmpfs bool
}

// Prepare builds a root filesystem for the app under dir (which it creates), from the
// pod's root "/". The app's writes go to an overlay upper layer on a tmpfs of size bytes
// mounted on dir: past it they fail with ENOSPC (size 0: no tmpfs of its own; dir must then
// be on a filesystem that can hold an upper layer: tmpfs, ext4, xfs; not overlay or FUSE).
func Prepare(dir string, size int64) (*Rootfs, error) {
	r := &Rootfs{
		dir:   dir,
		lower: filepath.Join(dir, "lower"),
		upper: filepath.Join(dir, "upper"),
		Path:  filepath.Join(dir, "rootfs"),
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	if size > 0 {
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("mode=0700,size=%d", size)); err != nil {
			return nil, fmt.Errorf("mount a tmpfs of %d bytes for the app's root filesystem on %s: %w", size, dir, err)
		}
		r.tmpfs = true
	}
	for _, d := range []string{r.lower, r.upper, filepath.Join(dir, "work"), r.Path} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			r.Release()
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	// The merged root directory takes the upper directory's owner and mode: keep the pod
	// root's, or an app that is not root could not even look up a path.
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err == nil {
		_ = unix.Chown(r.upper, int(st.Uid), int(st.Gid))
		_ = unix.Chmod(r.upper, st.Mode&0o7777)
	}
	// Non-recursive: the pod's /proc, /dev, volumes, the checkpoint hostPath stay out.
	if err := unix.Mount("/", r.lower, "", unix.MS_BIND, ""); err != nil {
		return nil, fmt.Errorf("bind the pod root to %s: %w", r.lower, err)
	}
	// CRIU finds the files inotify/fanotify watch by their file handle, else by scanning
	// paths for their device and inode ("fsnotify: Can't dump that handle" when both fail).
	// index=on,nfs_export=on make the overlay's handles decodable, which the kernel keeps
	// only when every layer supports handles (not when the pod's root is an overlay);
	// xino=on gives every file the overlay's device and a stable inode number, so that the
	// scan matches. A kernel that refuses the options outright gets a plain overlay.
	base := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", r.lower, r.upper, filepath.Join(dir, "work"))
	var err error
	for _, extra := range []string{",index=on,nfs_export=on,xino=on", ",xino=on", ""} {
		_ = os.RemoveAll(filepath.Join(dir, "work", "index"))
		if err = unix.Mount("overlay", r.Path, "overlay", 0, base+extra); err == nil {
			break
		}
	}
	if err != nil {
		// Some hosts (an old kernel, an upper layer on overlay) refuse; fall back to a
		// writable bind so the app still runs, without rootfs-diff support.
		if berr := unix.Mount(r.lower, r.Path, "", unix.MS_BIND, ""); berr != nil {
			r.Release()
			return nil, fmt.Errorf("mount overlay root at %s: %w (bind fallback: %v)", r.Path, err, berr)
		}
		return r, nil
	}
	r.Overlay = true
	return r, nil
}

// Upper is the directory that holds the app's changes (empty unless Overlay).
func (r *Rootfs) Upper() string { return r.upper }

// Release unmounts everything Prepare mounted and removes dir. The app must be gone.
func (r *Rootfs) Release() error {
	var errs []error
	mounts := []string{r.Path, r.lower}
	if r.tmpfs {
		mounts = append(mounts, r.dir)
	}
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	if err := os.RemoveAll(r.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", r.dir, err))
	}
	return errors.Join(errs...)
}
