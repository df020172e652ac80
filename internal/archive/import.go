package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/crwrap/crwrap/internal/checkpoint"
	"github.com/crwrap/crwrap/internal/rootfs"
)

// ErrUnsafeEntry means an archive entry could write outside the destination, alias another
// entry, or create a special file; the whole import is refused.
var ErrUnsafeEntry = errors.New("unsafe archive entry")

// ErrDamaged means an archive's files disagree with its crwrap.json (missing, other size or
// digest): it is checkpoint.ErrDamaged, the one sentinel for a damaged checkpoint.
var ErrDamaged = checkpoint.ErrDamaged

// Limits of an archive Import accepts; past them it is refused with ErrUnsafeEntry.
const (
	// MaxImportEntries bounds the archive's entries (a checkpoint directory holds at most
	// checkpoint.MaxFiles).
	MaxImportEntries = checkpoint.MaxFiles
	// MaxImportBytes bounds the total size of the archive's regular files.
	MaxImportBytes = 256 << 30
	// MaxZstdWindow bounds the window (and so the memory) of a zstd archive: 128 MiB, what
	// `zstd --long` writes at most by default; crwrap export writes 8 MiB windows.
	MaxZstdWindow = 128 << 20
)

// importEntryLimit is MaxImportEntries (lowered by tests).
var importEntryLimit = MaxImportEntries

// ImportOptions tunes Import.
type ImportOptions struct {
	// NoVerify skips checking the unpacked files against the sizes and digests of crwrap.json.
	// Archives without a crwrap.json (from Podman, CRI-O) are never verified.
	NoVerify bool
}

// ImportFile unpacks the checkpoint archive file into the new checkpoint directory dir; see
// Import.
func ImportFile(file, dir string, opts ImportOptions) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("import %s: %w", file, err)
	}
	defer f.Close()
	if err := Import(f, dir, opts); err != nil {
		return fmt.Errorf("import %s: %w", file, err)
	}
	return nil
}

// Import unpacks a checkpoint archive (plain, zstd or gzip tar, detected from its first bytes)
// into dir, which must not exist; its parent is created if needed. Everything is unpacked into
// a temporary directory beside dir, checked, synced and then renamed to dir, so dir either
// appears complete or not at all.
//
// Refused with ErrUnsafeEntry: absolute names, names with a ".." element, entries below a
// symlink, symlinks that are absolute or resolve outside the tree, hardlinks to anything but a
// regular file earlier in the archive, devices, fifos and other special types, duplicate
// names, more than MaxImportEntries entries or MaxImportBytes bytes, a zstd window over
// MaxZstdWindow, and an inner rootfs-diff.tar or deleted.files that a restore would refuse
// (rootfs.CheckDiff). Owners and modes are not restored: files become 0600 and directories
// 0700 (no setuid, no group or world access), as they hold process memory. An archive without
// a checkpoint/ directory fails with ErrNotCheckpoint. An archive with a crwrap.json is
// verified as a restore verifies it (checkpoint.Open, with digests) unless opts.NoVerify; when
// that fails, the error is ErrDamaged.
func Import(r io.Reader, dir string, opts ImportOptions) (err error) {
	dir = filepath.Clean(dir)
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("unpack into %s: %w", dir, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unpack into %s: %w", dir, err)
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("unpack into %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".import-*")
	if err != nil {
		return fmt.Errorf("unpack into %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return fmt.Errorf("unpack into %s: %w", dir, err)
	}
	defer root.Close()

	u := &unpacker{root: root, seen: map[string]bool{}, symlinks: map[string]bool{}, files: map[string]fileSum{}}
	if err := u.unpack(r); err != nil {
		return fmt.Errorf("unpack into %s: %w", dir, err)
	}
	if err := u.check(tmp, opts); err != nil {
		return fmt.Errorf("unpack into %s: %w", dir, err)
	}
	if err := checkpoint.SyncDir(tmp); err != nil {
		return fmt.Errorf("unpack into %s: %w", dir, err)
	}
	if err := renameNoReplace(tmp, dir); err != nil {
		return fmt.Errorf("unpack into %s: %w", dir, err)
	}
	if err := checkpoint.SyncDir(parent); err != nil {
		return fmt.Errorf("unpack into %s: %w", dir, err)
	}
	return nil
}

type fileSum struct {
	size   int64
	sha256 string
}

type unpacker struct {
	entries  int
	bytes    int64
	root     *os.Root
	seen     map[string]bool
	symlinks map[string]bool
	files    map[string]fileSum
	mtimes   []mtime
}

type mtime struct {
	name string
	t    time.Time
}

// Magic numbers of the compressions Import recognises or names.
var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicBzip2 = []byte("BZh")
)

// decompress detects the compression of r from its first bytes.
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(6)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(head, magicGzip):
		return gzip.NewReader(br)
	case bytes.HasPrefix(head, magicZstd):
		d, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(MaxZstdWindow), zstd.WithDecoderMaxMemory(MaxZstdWindow),
			zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case bytes.HasPrefix(head, magicXz), bytes.HasPrefix(head, magicBzip2):
		return nil, errors.New("xz and bzip2 archives are not supported (use zstd, gzip or none)")
	}
	return io.NopCloser(br), nil
}

func (u *unpacker) unpack(r io.Reader) error {
	rc, err := decompress(r)
	if err != nil {
		return fmt.Errorf("read archive: %w", err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		if err := u.entry(tr, hdr); err != nil {
			return err
		}
	}
	// Times last: creating an entry changes its directory's modification time.
	for i := len(u.mtimes) - 1; i >= 0; i-- {
		m := u.mtimes[i]
		if err := u.root.Chtimes(m.name, m.t, m.t); err != nil {
			return err
		}
	}
	return nil
}

// unsafe builds an ErrUnsafeEntry error for entry name.
func unsafe(name, format string, a ...any) error {
	return fmt.Errorf("%w %q: %s", ErrUnsafeEntry, name, fmt.Sprintf(format, a...))
}

// cleanName validates an entry name and returns it cleaned, "." for the archive's root.
func cleanName(n string) (string, error) {
	switch {
	case n == "":
		return "", unsafe(n, "empty name")
	case strings.ContainsRune(n, 0):
		return "", unsafe(n, "NUL in name")
	case strings.HasPrefix(n, "/"):
		return "", unsafe(n, "absolute path")
	}
	for _, e := range strings.Split(n, "/") {
		if e == ".." {
			return "", unsafe(n, "path with ..")
		}
	}
	return path.Clean(n), nil
}

func (u *unpacker) entry(tr *tar.Reader, hdr *tar.Header) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	if u.entries++; u.entries > importEntryLimit {
		return unsafe(hdr.Name, "more than %d entries", importEntryLimit)
	}
	if hdr.Size > 0 {
		if u.bytes += hdr.Size; u.bytes > MaxImportBytes {
			return unsafe(hdr.Name, "files larger than %d bytes in all", int64(MaxImportBytes))
		}
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		if hdr.Typeflag != tar.TypeDir {
			return unsafe(hdr.Name, "the archive's root is not a directory")
		}
		return nil
	}
	if u.seen[name] {
		return unsafe(hdr.Name, "duplicate entry")
	}
	u.seen[name] = true
	for p := path.Dir(name); p != "."; p = path.Dir(p) {
		if u.symlinks[p] {
			return unsafe(hdr.Name, "below the symlink %q", p)
		}
	}
	if d := path.Dir(name); d != "." {
		if err := u.root.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("unpack %q: %w", hdr.Name, err)
		}
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := u.root.Mkdir(name, 0o700); err != nil {
			fi, serr := u.root.Lstat(name)
			if serr != nil || !fi.IsDir() {
				return fmt.Errorf("unpack %q: %w", hdr.Name, err)
			}
		}
		u.mtimes = append(u.mtimes, mtime{name, hdr.ModTime})
	//lint:ignore SA1019 tar.Reader turns TypeRegA into TypeReg; kept for readers of this switch
	case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archivers still write TypeRegA
		f, err := u.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("unpack %q: %w", hdr.Name, err)
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(f, h), tr)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("unpack %q: %w", hdr.Name, err)
		}
		u.files[name] = fileSum{n, hex.EncodeToString(h.Sum(nil))}
		u.mtimes = append(u.mtimes, mtime{name, hdr.ModTime})
	case tar.TypeSymlink:
		t := hdr.Linkname
		if t == "" || path.IsAbs(t) {
			return unsafe(hdr.Name, "symlink to %q leaves the checkpoint", t)
		}
		if !inside(path.Join(path.Dir(name), t)) {
			return unsafe(hdr.Name, "symlink to %q leaves the checkpoint", t)
		}
		if err := u.root.Symlink(t, name); err != nil {
			return fmt.Errorf("unpack %q: %w", hdr.Name, err)
		}
		u.symlinks[name] = true
	case tar.TypeLink:
		t, err := cleanName(hdr.Linkname)
		if err != nil {
			return unsafe(hdr.Name, "hardlink to %q leaves the checkpoint", hdr.Linkname)
		}
		sum, ok := u.files[t]
		if !ok {
			return unsafe(hdr.Name, "hardlink to %q, which is not a regular file earlier in the archive", hdr.Linkname)
		}
		if err := u.root.Link(t, name); err != nil {
			return fmt.Errorf("unpack %q: %w", hdr.Name, err)
		}
		u.files[name] = sum
	case tar.TypeChar, tar.TypeBlock:
		return unsafe(hdr.Name, "device node")
	case tar.TypeFifo:
		return unsafe(hdr.Name, "fifo")
	default:
		return unsafe(hdr.Name, "unsupported entry type %q", hdr.Typeflag)
	}
	return nil
}

// check runs the whole-tree checks once everything is unpacked into dir (u.root).
func (u *unpacker) check(dir string, opts ImportOptions) error {
	r, err := checkpoint.Hold(dir)
	if err != nil {
		return err
	}
	defer r.Close()
	if !r.HasImages() {
		return fmt.Errorf("no %s/ directory in the archive: %w", checkpoint.ImagesDir, ErrNotCheckpoint)
	}
	// A symlink that looks contained by itself can escape through another symlink
	// (a -> "b/../x" with b -> "."): resolve each one through the final tree.
	for name := range u.symlinks {
		if err := resolvesInside(u.root, name); err != nil {
			return err
		}
	}
	// A restore's rules for the inner rootfs-diff.tar and deleted.files: an imported
	// checkpoint never fails (or worse) only when it is restored.
	if err := r.CheckRootfsDiff(); errors.Is(err, rootfs.ErrUnsafeDiff) {
		return fmt.Errorf("%w: %w", ErrUnsafeEntry, err)
	} else if err != nil {
		return err
	}
	if opts.NoVerify {
		return nil
	}
	if !r.HasManifest() {
		return nil
	}
	if _, err := r.Verify(true); err != nil && !errors.Is(err, ErrDamaged) {
		return fmt.Errorf("%w: %w", ErrDamaged, err) // another format version: damaged for import
	} else if err != nil {
		return err
	}
	return nil
}

// resolvesInside follows the symlink name, and every symlink on its way, inside root, and fails
// if the path ever climbs above root.
func resolvesInside(root *os.Root, name string) error {
	var done []string
	todo := strings.Split(name, "/")
	for hops := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) == 0 {
				return unsafe(name, "symlink resolves outside the checkpoint")
			}
			done = done[:len(done)-1]
			continue
		}
		cur := path.Join(append(done, c)...)
		fi, err := root.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			done = append(done, c)
			continue
		}
		if err != nil {
			return fmt.Errorf("resolve %q: %w", name, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, c)
			continue
		}
		if hops++; hops > 40 {
			return unsafe(name, "too many levels of symlinks")
		}
		t, err := root.Readlink(cur)
		if err != nil {
			return fmt.Errorf("resolve %q: %w", name, err)
		}
		if path.IsAbs(t) {
			return unsafe(name, "symlink resolves outside the checkpoint")
		}
		todo = append(strings.Split(t, "/"), todo...)
	}
	return nil
}

// renameNoReplace renames the directory oldpath to newpath unless newpath exists: a plain
// rename(2) would silently replace an empty directory created meanwhile.
func renameNoReplace(oldpath, newpath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		if _, serr := os.Lstat(newpath); serr == nil {
			return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: fs.ErrExist}
		}
		return os.Rename(oldpath, newpath)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}
