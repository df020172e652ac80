package archive

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// hold resolves the checkpoint directory dir (following the published symlink to its version
// directory) and holds that version open with a shared flock, as checkpoint.Store readers do:
// a checkpointer publishing a newer version then leaves this one in place until release.
func hold(dir string) (root string, release func(), err error) {
	for attempt := 0; ; attempt++ {
		root, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return "", nil, err
		}
		f, err := os.Open(root)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && attempt < 5 {
				continue // replaced meanwhile: resolve again
			}
			return "", nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
			f.Close()
			return "", nil, err
		}
		// Removed between resolving and locking: the directory has no links left.
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err == nil && st.Nlink == 0 && attempt < 5 {
			f.Close()
			continue
		}
		return root, func() { f.Close() }, nil
	}
}
