package rootfs

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

const opaqueXattr = "trusted.overlay.opaque"

// ExportDiff writes the app's changes to its root filesystem: new and changed files to a
// tar archive at tarPath and deleted paths, as a JSON list (Podman's deleted.files), at
// deletedPath. It writes a file only when there is something to put in it and reports
// whether it wrote each.
//
// Not saved, as in moby's archive code: sockets (CRIU binds a listening socket's file again
// when it restores the socket) and device nodes. Setuid and setgid bits are dropped: a restore
// cannot tell such a file from one planted in a checkpoint, so it refuses them (see CheckDiff).
// A diff beyond MaxDiffEntries or MaxDiffBytes is an error: it could not be restored.
func ExportDiff(upper, tarPath, deletedPath string) (wroteTar, wroteDeleted bool, err error) {
	var deleted []string
	var entries []string
	err = filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == upper {
			return nil
		}
		rel, _ := filepath.Rel(upper, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if isWhiteout(info) {
			deleted = append(deleted, "/"+rel)
			return nil
		}
		if info.Mode()&(fs.ModeSocket|fs.ModeDevice|fs.ModeCharDevice|fs.ModeIrregular) != 0 {
			return nil
		}
		if len(entries) >= MaxDiffEntries || len(deleted) >= MaxDiffEntries {
			return fmt.Errorf("more than %d changed files", MaxDiffEntries)
		}
		if len(rel) > maxNameBytes {
			return fmt.Errorf("%s: path longer than %d bytes", rel, maxNameBytes)
		}
		if d.IsDir() && isOpaque(p) {
			deleted = append(deleted, "/"+rel)
		}
		entries = append(entries, rel)
		return nil
	})
	if err != nil {
		return false, false, fmt.Errorf("walk %s: %w", upper, err)
	}
	if len(entries) > 0 {
		if err := writeTar(upper, entries, tarPath); err != nil {
			return false, false, err
		}
		wroteTar = true
	}
	if len(deleted) > 0 {
		b, _ := json.Marshal(deleted)
		if err := os.WriteFile(deletedPath, b, 0o600); err != nil {
			return wroteTar, false, fmt.Errorf("write %s: %w", deletedPath, err)
		}
		wroteDeleted = true
	}
	return wroteTar, wroteDeleted, nil
}

func isWhiteout(info fs.FileInfo) bool {
	if info.Mode()&fs.ModeCharDevice == 0 {
		return false
	}
	// os.Lstat and DirEntry.Info give a *syscall.Stat_t (not x/sys/unix's).
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && st.Rdev == 0
}

func isOpaque(p string) bool {
	buf := make([]byte, 4)
	n, err := unix.Lgetxattr(p, opaqueXattr, buf)
	return err == nil && n == 1 && buf[0] == 'y'
}

func writeTar(root string, entries []string, tarPath string) (err error) {
	f, err := os.OpenFile(tarPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", tarPath, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s: %w", tarPath, cerr)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	var total int64
	for _, rel := range entries {
		p := filepath.Join(root, rel)
		info, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return fmt.Errorf("read link %s: %w", p, err)
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return fmt.Errorf("tar header for %s: %w", p, err)
		}
		hdr.Name = rel
		hdr.Uname, hdr.Gname = "", ""
		hdr.Mode &^= unix.S_ISUID | unix.S_ISGID
		if total += hdr.Size; total > MaxDiffBytes {
			return fmt.Errorf("write %s: the changed files exceed %d bytes", tarPath, int64(MaxDiffBytes))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write tar header %s: %w", rel, err)
		}
		if info.Mode().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return fmt.Errorf("open %s: %w", p, err)
			}
			_, err = io.Copy(tw, src)
			src.Close()
			if err != nil {
				return fmt.Errorf("archive %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finish %s: %w", tarPath, err)
	}
	return bw.Flush()
}

// ApplyDiff puts a saved diff back into the empty upper layer directory upper before the
// overlay is used: the tar diff's entries are extracted and the paths of the JSON list deleted
// become overlay whiteouts (or opaque directories, when the tar recreates them). A nil reader
// means that part of the diff is empty.
//
// Both are untrusted input (a checkpoint may come from another node or a registry): all writes
// go through an os.Root of upper, so nothing is written outside it, and every entry passes
// the rules of CheckDiff first. Owners, permissions, the sticky bit and modification times are
// restored; FIFOs are recreated (CRIU reopens them). Errors wrap ErrUnsafeDiff for an entry
// that breaks a rule.
func ApplyDiff(upper string, diff, deleted io.Reader) error {
	root, err := os.OpenRoot(upper)
	if err != nil {
		return fmt.Errorf("open upper layer %s: %w", upper, err)
	}
	defer root.Close()
	c := newDiffCheck()
	if diff != nil {
		tr := tar.NewReader(bufio.NewReaderSize(diff, 1<<20))
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", DiffFile, err)
			}
			name, err := c.header(hdr)
			if err != nil {
				return err
			}
			if name == "" {
				continue
			}
			if err := extract(root, tr, hdr, name); err != nil {
				return fmt.Errorf("extract %q from %s: %w", hdr.Name, DiffFile, err)
			}
		}
	}
	if deleted == nil {
		return nil
	}
	paths, err := readDeleted(deleted)
	if err != nil {
		return err
	}
	for _, rel := range paths {
		if err := c.below(rel); err != nil {
			return err
		}
		if c.seen[rel] {
			if err := markOpaque(root, rel); err != nil {
				return fmt.Errorf("mark /%s opaque: %w", rel, err)
			}
			continue
		}
		if err := mknodIn(root, rel, unix.S_IFCHR, 0); err != nil {
			return fmt.Errorf("create whiteout /%s: %w", rel, err)
		}
	}
	return nil
}

// CheckDiff reads a rootfs-diff.tar to its end and applies the rules ApplyDiff applies to each
// entry, writing nothing: for checking an archive before it is accepted (crwrap import).
func CheckDiff(diff io.Reader) error {
	c := newDiffCheck()
	tr := tar.NewReader(diff)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", DiffFile, err)
		}
		if _, err := c.header(hdr); err != nil {
			return err
		}
	}
}

// CheckDeleted reads a deleted.files and applies ApplyDiff's rules to it, writing nothing.
func CheckDeleted(deleted io.Reader) error {
	_, err := readDeleted(deleted)
	return err
}

// DiffFile and DeletedFile are the names the diff has inside a checkpoint: named here for this
// package's messages, and the checkpoint layout (internal/checkpoint) uses them.
const (
	DiffFile    = "rootfs-diff.tar"
	DeletedFile = "deleted.files"
)

// Limits of a root filesystem diff; ExportDiff refuses to write one beyond them, ApplyDiff
// and CheckDiff refuse to read one.
const (
	// MaxDiffEntries bounds the entries of rootfs-diff.tar and the paths of deleted.files.
	MaxDiffEntries = 1_000_000
	// MaxDiffBytes bounds the total size of the regular files in rootfs-diff.tar.
	MaxDiffBytes = 16 << 30
	// MaxDeletedBytes bounds deleted.files.
	MaxDeletedBytes = 64 << 20
	// maxNameBytes bounds an entry's name and a symlink's target (PATH_MAX).
	maxNameBytes = 4096
)

// diffEntryLimit is MaxDiffEntries (lowered by tests).
var diffEntryLimit = MaxDiffEntries

// ErrUnsafeDiff means a root filesystem diff has an entry crwrap never writes: a path that
// leaves the root (absolute, "..", below a symlink of the diff), a hardlink, a device node, a
// socket, a setuid or setgid bit, a duplicate, or more than the limits allow.
var ErrUnsafeDiff = errors.New("unsafe root filesystem diff")

// diffCheck applies the rules to a diff's entries in order.
type diffCheck struct {
	entries  int
	bytes    int64
	seen     map[string]bool
	symlinks map[string]bool
}

func newDiffCheck() *diffCheck {
	return &diffCheck{seen: map[string]bool{}, symlinks: map[string]bool{}}
}

func unsafeEntry(name, format string, a ...any) error {
	if len(name) > 120 {
		name = name[:120] + "..."
	}
	return fmt.Errorf("%w: %s entry %q: %s", ErrUnsafeDiff, DiffFile, name, fmt.Sprintf(format, a...))
}

// cleanRel validates a slash-separated path of the diff (leading "./" or "/" allowed only
// where noted by the caller) and returns it relative and clean ("" for the root).
func cleanRel(n string) (string, bool) {
	if n == "" || len(n) > maxNameBytes || strings.ContainsRune(n, 0) {
		return "", false
	}
	for _, e := range strings.Split(n, "/") {
		if e == ".." {
			return "", false
		}
	}
	c := path.Clean(n)
	if c == "." {
		return "", true
	}
	return c, true
}

// below refuses a path under a symlink the diff created: os.Root would resolve it inside
// upper, but a real upper layer never has such an entry.
func (c *diffCheck) below(rel string) error {
	for p := path.Dir(rel); p != "."; p = path.Dir(p) {
		if c.symlinks[p] {
			return unsafeEntry(rel, "below the symlink %q", p)
		}
	}
	return nil
}

// header checks one tar entry and returns its clean relative name ("" for the root directory,
// which is skipped).
func (c *diffCheck) header(hdr *tar.Header) (string, error) {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return "", nil
	}
	if c.entries++; c.entries > diffEntryLimit {
		return "", unsafeEntry(hdr.Name, "more than %d entries", diffEntryLimit)
	}
	if strings.HasPrefix(hdr.Name, "/") {
		return "", unsafeEntry(hdr.Name, "absolute path")
	}
	name, ok := cleanRel(hdr.Name)
	if !ok {
		return "", unsafeEntry(hdr.Name, "path leaves the root filesystem")
	}
	if name == "" {
		if hdr.Typeflag != tar.TypeDir {
			return "", unsafeEntry(hdr.Name, "the root is not a directory")
		}
		return "", nil
	}
	if c.seen[name] {
		return "", unsafeEntry(hdr.Name, "duplicate entry")
	}
	c.seen[name] = true
	if err := c.below(name); err != nil {
		return "", err
	}
	if hdr.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
		return "", unsafeEntry(hdr.Name, "setuid or setgid bit (crwrap never saves them)")
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid >= 1<<32-1 || hdr.Gid >= 1<<32-1 {
		return "", unsafeEntry(hdr.Name, "owner %d:%d", hdr.Uid, hdr.Gid)
	}
	switch hdr.Typeflag {
	case tar.TypeDir, tar.TypeFifo:
	case tar.TypeReg: // tar.Reader turns the old TypeRegA into TypeReg
		if hdr.Size < 0 {
			return "", unsafeEntry(hdr.Name, "size %d", hdr.Size)
		}
		if c.bytes += hdr.Size; c.bytes > MaxDiffBytes {
			return "", unsafeEntry(hdr.Name, "files larger than %d bytes in all", int64(MaxDiffBytes))
		}
	case tar.TypeSymlink:
		// Any target: it is resolved in the app's root by the app, never by crwrap.
		if hdr.Linkname == "" || len(hdr.Linkname) > maxNameBytes || strings.ContainsRune(hdr.Linkname, 0) {
			return "", unsafeEntry(hdr.Name, "symlink target %q", hdr.Linkname)
		}
		c.symlinks[name] = true
	case tar.TypeLink:
		return "", unsafeEntry(hdr.Name, "hardlink (crwrap never saves them)")
	case tar.TypeChar, tar.TypeBlock:
		return "", unsafeEntry(hdr.Name, "device node (crwrap never saves them)")
	default:
		return "", unsafeEntry(hdr.Name, "entry type %q", hdr.Typeflag)
	}
	return name, nil
}

// readDeleted parses deleted.files into clean relative paths.
func readDeleted(r io.Reader) ([]string, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxDeletedBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", DeletedFile, err)
	}
	if len(b) > MaxDeletedBytes {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrUnsafeDiff, DeletedFile, MaxDeletedBytes)
	}
	var deleted []string
	if err := json.Unmarshal(b, &deleted); err != nil {
		return nil, fmt.Errorf("parse %s: %w", DeletedFile, err)
	}
	if len(deleted) > diffEntryLimit {
		return nil, fmt.Errorf("%w: %s lists more than %d paths", ErrUnsafeDiff, DeletedFile, diffEntryLimit)
	}
	out := make([]string, 0, len(deleted))
	for _, d := range deleted {
		rel, ok := cleanRel(strings.TrimPrefix(d, "/"))
		if !ok || rel == "" || !strings.HasPrefix(d, "/") {
			if len(d) > 120 {
				d = d[:120] + "..."
			}
			return nil, fmt.Errorf("%w: %s: path %q", ErrUnsafeDiff, DeletedFile, d)
		}
		out = append(out, rel)
	}
	return out, nil
}

// extract creates one checked entry inside root.
func extract(root *os.Root, tr *tar.Reader, hdr *tar.Header, name string) error {
	if d := path.Dir(name); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	perm := fs.FileMode(hdr.Mode) & fs.ModePerm
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := root.Mkdir(name, 0o700); err != nil {
			if fi, serr := root.Lstat(name); serr != nil || !fi.IsDir() {
				return err
			}
		}
	case tar.TypeReg:
		// O_EXCL: never through a symlink, never over an earlier entry.
		f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, tr); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := root.Symlink(hdr.Linkname, name); err != nil {
			return err
		}
		return root.Lchown(name, hdr.Uid, hdr.Gid)
	case tar.TypeFifo:
		if err := mknodIn(root, name, unix.S_IFIFO|0o600, 0); err != nil {
			return err
		}
	}
	if err := root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	mode := perm
	if hdr.Mode&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	if err := root.Chmod(name, mode); err != nil {
		return err
	}
	return root.Chtimes(name, hdr.AccessTime, hdr.ModTime)
}

// mknodIn creates the node rel (a FIFO or a whiteout) in root: mknodat in its parent opened
// through root, so the node cannot land outside it; an existing name is an error.
func mknodIn(root *os.Root, rel string, mode uint32, dev int) error {
	dir, base := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	} else if err := root.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Mknodat(int(d.Fd()), base, mode, dev); err != nil {
		return &os.PathError{Op: "mknod", Path: rel, Err: err}
	}
	return nil
}

// markOpaque sets the overlay's opaque attribute on the directory rel of root.
func markOpaque(root *os.Root, rel string) error {
	fi, err := root.Lstat(rel)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s lists /%s, which the diff has as a %v, not a directory", ErrUnsafeDiff, DeletedFile, rel, fi.Mode().Type())
	}
	d, err := root.Open(rel)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Fsetxattr(int(d.Fd()), opaqueXattr, []byte("y"), 0)
}
