package checkpoint

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotFound means there is no published checkpoint under that name.
var ErrNotFound = errors.New("no checkpoint")

// Store is one checkpoint name in one directory: <dir>/<name> is a symlink to the
// complete version directory <dir>/.<name>.v<time> (or, when made by hand or by an older
// tool, a plain directory). Versions are written as <dir>/.<name>.tmp-<random> and renamed
// into place, so a reader sees the previous complete checkpoint or the new one, never a part.
type Store struct {
	Dir  string
	Name string
}

// Path is the checkpoint's public path, <dir>/<name>.
func (s Store) Path() string { return filepath.Join(s.Dir, s.Name) }

func (s Store) lockPath() string { return filepath.Join(s.Dir, "."+s.Name+".lock") }

// Writer is an exclusive claim on the name, held while checkpointing.
type Writer struct {
	s    Store
	lock *os.File
}

// Lock takes the writers' lock for the name (waiting for another checkpointer to finish)
// and removes the leftovers of interrupted attempts. It is LockContext without a way out.
func (s Store) Lock() (*Writer, error) { return s.LockContext(context.Background(), nil) }

// lockPoll is how often LockContext tries again while another checkpointer holds the name:
// flock(2) cannot be interrupted, so LockContext polls without blocking instead.
const lockPoll = 50 * time.Millisecond

// LockContext is Lock that gives up when ctx is done (a pod being deleted must not wait for
// another pod's checkpoint): the error then wraps context.Cause(ctx). onWait, when not nil,
// is called once if another writer holds the name.
func (s Store) LockContext(ctx context.Context, onWait func()) (*Writer, error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create checkpoint directory %s: %w", s.Dir, err)
	}
	f, err := os.OpenFile(s.lockPath(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", s.lockPath(), err)
	}
	for first := true; ; first = false {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", s.lockPath(), err)
		}
		if first && onWait != nil {
			onWait()
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", s.lockPath(), context.Cause(ctx))
		case <-time.After(lockPoll):
		}
	}
	w := &Writer{s: s, lock: f}
	w.collect(true)
	return w, nil
}

// Unlock releases the name; a second call does nothing.
func (w *Writer) Unlock() {
	if w.lock != nil {
		w.lock.Close()
		w.lock = nil
	}
}

// NewVersion creates an empty, private directory to write a new checkpoint into.
func (w *Writer) NewVersion() (string, error) {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	p := filepath.Join(w.s.Dir, "."+w.s.Name+".tmp-"+hex.EncodeToString(b))
	if err := os.Mkdir(p, 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", p, err)
	}
	return p, nil
}

// Publish makes the fully written directory tmp the current checkpoint, atomically, then
// removes older versions no reader holds.
func (w *Writer) Publish(tmp string) error {
	if err := SyncTree(tmp); err != nil {
		return err
	}
	version := "." + w.s.Name + ".v" + time.Now().UTC().Format("20060102T150405.000000000Z")
	vpath := filepath.Join(w.s.Dir, version)
	if err := os.Rename(tmp, vpath); err != nil {
		return fmt.Errorf("publish %s: %w", vpath, err)
	}
	link := filepath.Join(w.s.Dir, "."+w.s.Name+".link")
	_ = os.Remove(link)
	if err := os.Symlink(version, link); err != nil {
		return fmt.Errorf("publish %s: %w", link, err)
	}
	pub := w.s.Path()
	if fi, err := os.Lstat(pub); err == nil && fi.IsDir() {
		// A plain directory cannot be replaced atomically: move it aside as a version first.
		if err := os.Rename(pub, filepath.Join(w.s.Dir, "."+w.s.Name+".v0-plain")); err != nil {
			return fmt.Errorf("move aside %s: %w", pub, err)
		}
	}
	if err := os.Rename(link, pub); err != nil {
		return fmt.Errorf("publish %s: %w", pub, err)
	}
	if err := SyncDir(w.s.Dir); err != nil {
		return err
	}
	w.collect(false)
	return nil
}

// Discard removes a version directory that will not be published.
func (w *Writer) Discard(tmp string) error { return os.RemoveAll(tmp) }

// collect removes unreferenced versions (and, with tmps, interrupted writes), skipping
// versions a reader holds.
func (w *Writer) collect(tmps bool) {
	cur, _ := os.Readlink(w.s.Path())
	entries, err := os.ReadDir(w.s.Dir)
	if err != nil {
		return
	}
	prefix := "." + w.s.Name + "."
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, prefix) || n == cur {
			continue
		}
		rest := strings.TrimPrefix(n, prefix)
		switch {
		case strings.HasPrefix(rest, "v"):
			removeIfUnread(filepath.Join(w.s.Dir, n))
		case tmps && (strings.HasPrefix(rest, "tmp-") || rest == "link"):
			_ = os.RemoveAll(filepath.Join(w.s.Dir, n))
		}
	}
}

func removeIfUnread(p string) {
	d, err := os.Open(p)
	if err != nil {
		return
	}
	defer d.Close()
	if unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return // a restore is reading it; a later checkpoint removes it
	}
	_ = os.RemoveAll(p)
}

// Reader holds one complete checkpoint version open for reading: it cannot be removed by
// a checkpointer until Close, and everything read through it (Verify, OpenFile, Path) comes
// from that one directory, whatever happens to the names leading to it meanwhile.
type Reader struct {
	// Dir is the version directory as resolved when it was opened (for messages; reading goes
	// through the held descriptor).
	Dir string
	// Manifest and ManifestDigest ("sha256:<hex>" of crwrap.json) are set by a successful Verify.
	Manifest       *Manifest
	ManifestDigest string

	f      *os.File
	held   []*os.File // directories handed out by Path
	sealed []File     // crwrap.json and crwrap.json.sha256, as verified
}

// Open finds the current checkpoint and holds it for reading (see Hold). A directory there
// without a manifest is ErrDamaged; no checkpoint at all is ErrNotFound. Verify it before use.
func (s Store) Open() (*Reader, error) {
	r, err := Hold(s.Path())
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s", ErrNotFound, s.Path())
	}
	if err != nil {
		return nil, fmt.Errorf("open checkpoint %s: %w", s.Path(), err)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(int(r.f.Fd()), ManifestFile, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		r.Close()
		return nil, fmt.Errorf("%w at %s: %s is missing", ErrDamaged, r.Dir, ManifestFile)
	}
	return r, nil
}

// Hold resolves path (a checkpoint directory, or the published link to one) and holds that
// version open with a shared flock: a checkpointer publishing a newer version leaves it in
// place until the Reader is closed. It writes nothing, so it works on a read-only mount.
func Hold(path string) (*Reader, error) {
	for attempt := 0; ; attempt++ {
		dir, err := filepath.EvalSymlinks(path)
		if err != nil {
			return nil, err
		}
		// O_NOFOLLOW: a version swapped for a symlink after resolving is not followed.
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP)) && attempt < 5 {
				continue // replaced meanwhile: resolve again
			}
			return nil, &os.PathError{Op: "open", Path: dir, Err: err}
		}
		f := os.NewFile(uintptr(fd), dir)
		if err := unix.Flock(fd, unix.LOCK_SH); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", dir, err)
		}
		// Removed between resolving and locking: the directory has no links left.
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err == nil && st.Nlink == 0 && attempt < 5 {
			f.Close()
			continue
		}
		return &Reader{Dir: dir, f: f}, nil
	}
}

// Close releases the checkpoint.
func (r *Reader) Close() error {
	for _, h := range r.held {
		h.Close()
	}
	r.held = nil
	return r.f.Close()
}

// SyncTree fsyncs every regular file and directory under root, so that renaming root into
// place publishes it durably (a crash never leaves a published version with missing bytes).
func SyncTree(root string) error {
	return filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() && !info.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("sync %s: %w", p, err)
		}
		defer f.Close()
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", p, err)
		}
		return nil
	})
}

// SyncDir fsyncs directory p, making a rename inside it durable.
func SyncDir(p string) error {
	d, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("sync %s: %w", p, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", p, err)
	}
	return nil
}
