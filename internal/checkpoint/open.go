package checkpoint

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrUnsafe means a checkpoint directory holds something crwrap never writes there (a
// symlink, a FIFO, a device, a file its manifest does not list, a path leaving the directory)
// or exceeds a limit: it was not made by crwrap as it is, so none of it is used. It is an
// ErrDamaged (the restore falls back with reason "damaged").
var ErrUnsafe = fmt.Errorf("%w: untrusted content", ErrDamaged)

// fileLimit is MaxFiles (lowered by tests).
var fileLimit = MaxFiles

// Open holds the checkpoint at path (a version directory or the published link to one, see
// Hold) and verifies it (see Reader.Verify): the one call for code that reads a checkpoint
// made elsewhere (restore, import, a registry pull). The Reader must be closed.
func Open(path string, digests bool) (*Reader, error) {
	r, err := Hold(path)
	if err != nil {
		return nil, err
	}
	if _, err := r.Verify(digests); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Verify checks the held directory as untrusted input, reading only through the held
// descriptor and never following a symlink:
//   - crwrap.json.sha256 is a regular file naming crwrap.json's sha256, and crwrap.json (a
//     regular file of at most MaxManifestBytes) has that digest: the manifest is verified
//     before a byte of it is parsed;
//   - the manifest's paths are relative, clean, without "..", at most MaxPathBytes long and
//     unique; its app files are absolute and clean; each list has at most MaxFiles entries;
//   - the tree holds only directories and regular files (no symlinks, FIFOs, sockets or
//     devices), at most MaxFiles entries, and every regular file but the two above is listed;
//   - every listed file is there with its size and, with digests, its sha256.
//
// Any failure is ErrDamaged (ErrUnsafe for what crwrap never writes), or ErrIncompatible for
// another format version. On success r.Manifest and r.ManifestDigest are set.
func (r *Reader) Verify(digests bool) (*Manifest, error) {
	m, problems := r.verify(digests, false)
	if len(problems) > 0 {
		return nil, problems[0]
	}
	return m, nil
}

// Check makes Verify's checks for a report (crwrap inspect): it does not stop at the first
// problem but returns them all, in the order found, with the manifest whenever it could be
// parsed — even unsealed, which is why nothing but a description may come of it. A
// directory without crwrap.json is one problem ("no crwrap.json"). Past a problem with the
// manifest's paths or a limit the tree is not compared. With no problems, r.Manifest and
// r.ManifestDigest are set as by Verify.
func (r *Reader) Check(digests bool) (*Manifest, []error) {
	return r.verify(digests, true)
}

// verify is Verify (all false: it returns at the first problem) and Check (all).
func (r *Reader) verify(digests, all bool) (*Manifest, []error) {
	var problems []error
	// fail records a problem and reports whether to stop.
	fail := func(err error) bool {
		problems = append(problems, err)
		return !all
	}
	sum, seal, err := r.readManifestDigest()
	if err != nil && (!all || !errors.Is(err, os.ErrNotExist) || r.has(ManifestFile)) {
		if fail(err) {
			return nil, problems
		}
	}
	b, err := r.readSmall(ManifestFile, MaxManifestBytes)
	if errors.Is(err, os.ErrNotExist) {
		err = fmt.Errorf("%w: no %s: not made by crwrap, or not completely: %w", ErrDamaged, ManifestFile, os.ErrNotExist)
	}
	if err != nil {
		return nil, append(problems, err)
	}
	if got := sha256.Sum256(b); sum != nil && !bytes.Equal(got[:], sum) {
		if fail(fmt.Errorf("%w: %s does not match %s (changed after it was written)", ErrDamaged, ManifestFile, ManifestDigestFile)) {
			return nil, problems
		}
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, append(problems, fmt.Errorf("%w: parse %s: %v", ErrDamaged, ManifestFile, err))
	}
	if m.FormatVersion != FormatVersion {
		if fail(fmt.Errorf("%w: format version %d, this crwrap reads %d", ErrIncompatible, m.FormatVersion, FormatVersion)) {
			return nil, problems
		}
	}
	want, err := m.checkPaths()
	if err != nil {
		return &m, append(problems, err)
	}
	w := &treeWalk{want: want, digests: digests, fail: fail}
	if err := w.dir(int(r.f.Fd()), "", 0); errors.Is(err, errStop) {
		return nil, problems
	} else if err != nil {
		return &m, append(problems, err)
	}
	for _, f := range m.Files { // in the manifest's order: the same problems every time
		if !w.seen[f.Path] && fail(fmt.Errorf("%w: %s: missing (%s lists it)", ErrDamaged, f.Path, ManifestFile)) {
			return nil, problems
		}
	}
	if len(problems) > 0 {
		return &m, problems
	}
	r.Manifest = &m
	r.ManifestDigest = "sha256:" + hex.EncodeToString(sum)
	sealSum := sha256.Sum256(seal)
	r.sealed = []File{
		{Path: ManifestFile, Size: int64(len(b)), SHA256: hex.EncodeToString(sum)},
		{Path: ManifestDigestFile, Size: int64(len(seal)), SHA256: hex.EncodeToString(sealSum[:])},
	}
	return &m, nil
}

// has reports whether the held directory has an entry name.
func (r *Reader) has(name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(int(r.f.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}

// readManifestDigest reads crwrap.json.sha256: the digest it names, and its bytes.
func (r *Reader) readManifestDigest() (sum, raw []byte, err error) {
	b, err := r.readSmall(ManifestDigestFile, 256)
	if err != nil {
		return nil, nil, err
	}
	hexSum, name, ok := strings.Cut(strings.TrimSuffix(string(b), "\n"), "  ")
	sum, herr := hex.DecodeString(hexSum)
	if !ok || name != ManifestFile || herr != nil || len(sum) != sha256.Size || strings.ToLower(hexSum) != hexSum {
		return nil, nil, fmt.Errorf("%w: %s is not \"<sha256 hex>  %s\"", ErrDamaged, ManifestDigestFile, ManifestFile)
	}
	return sum, b, nil
}

// readSmall reads the regular file name (directly in the held directory) of at most max bytes.
func (r *Reader) readSmall(name string, max int64) ([]byte, error) {
	f, err := r.OpenFile(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrDamaged, name, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrUnsafe, name, max)
	}
	return b, nil
}

// OpenFile opens the regular file rel (slash-separated, relative) of the held directory for
// reading without following any symlink on the way; anything but a regular file is ErrUnsafe.
// A missing file is an error satisfying errors.Is(err, os.ErrNotExist) (and ErrDamaged).
func (r *Reader) OpenFile(rel string) (*os.File, error) {
	fd, err := openBeneath(int(r.f.Fd()), rel, false)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), path.Join(r.Dir, rel)), nil
}

// Files lists every file of the verified checkpoint with its size and sha256: crwrap.json
// and crwrap.json.sha256 first, then the files crwrap.json lists. It is an error before a
// successful Verify.
func (r *Reader) Files() ([]File, error) {
	if r.Manifest == nil {
		return nil, fmt.Errorf("files of %s: the checkpoint was not verified", r.Dir)
	}
	return append(append([]File(nil), r.sealed...), r.Manifest.Files...), nil
}

// OpenListed opens the file f of the checkpoint (as listed by Files) for reading: it reads
// exactly f.Size bytes and, with check, fails the read that reaches the end with ErrDamaged
// unless they have f's sha256 — so what is streamed elsewhere (a registry push) is what the
// manifest says.
func (r *Reader) OpenListed(f File, check bool) (io.ReadCloser, error) {
	fd, err := r.OpenFile(f.Path)
	if err != nil {
		return nil, err
	}
	lr := &listedReader{f: fd, file: f, left: f.Size}
	if check {
		lr.h = sha256.New()
	}
	return lr, nil
}

// listedReader reads a listed file, checking its size and, with h, its digest at the end.
type listedReader struct {
	f    *os.File
	file File
	left int64
	h    hash.Hash
}

func (l *listedReader) Read(p []byte) (int, error) {
	if l.left == 0 {
		if l.h != nil {
			if got := hex.EncodeToString(l.h.Sum(nil)); got != strings.ToLower(l.file.SHA256) {
				return 0, digestProblem(l.file, got)
			}
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.f.Read(p)
	l.left -= int64(n)
	if l.h != nil {
		l.h.Write(p[:n])
	}
	if errors.Is(err, io.EOF) {
		if l.left > 0 {
			return n, sizeProblem(l.file, l.file.Size-l.left)
		}
		err = nil
	}
	if err != nil {
		return n, fmt.Errorf("%w: read %s: %v", ErrDamaged, l.file.Path, err)
	}
	return n, nil
}

func (l *listedReader) Close() error { return l.f.Close() }

// CheckDigests compares the sha256 of each listed file, taken while it was written into this
// directory (a registry pull hashes as it unpacks; path → hex), with the verified manifest:
// Verify(true)'s digest check without reading every file again.
func (r *Reader) CheckDigests(sums map[string]string) error {
	if r.Manifest == nil {
		return fmt.Errorf("check %s: the checkpoint was not verified", r.Dir)
	}
	for _, f := range r.Manifest.Files {
		if got := sums[f.Path]; got != strings.ToLower(f.SHA256) {
			return digestProblem(f, got)
		}
	}
	return nil
}

// Path returns a path to the directory rel of the held checkpoint that stays valid, and leads
// to this very directory, until Close: /proc/<pid>/fd/<n> of a descriptor opened without
// following symlinks. Give it to CRIU (and the tools it starts, which run as root in this PID
// namespace) instead of a path that could be swapped after Verify.
func (r *Reader) Path(rel string) (string, error) {
	fd, err := openBeneath(int(r.f.Fd()), rel, true)
	if err != nil {
		return "", err
	}
	r.held = append(r.held, os.NewFile(uintptr(fd), path.Join(r.Dir, rel)))
	return "/proc/" + strconv.Itoa(os.Getpid()) + "/fd/" + strconv.Itoa(fd), nil
}

// openBeneath opens rel below the directory dirfd one component at a time with O_PATH and
// O_NOFOLLOW, so no symlink is followed, ".." is refused outright and nothing is opened for
// real before its type is known (opening a FIFO blocks, a device has side effects). The end
// must be a directory when dir (the result is then an O_PATH descriptor: enough for *at calls
// and /proc/<pid>/fd paths), else a regular file (reopened for reading).
func openBeneath(dirfd int, rel string, dir bool) (int, error) {
	if !validRel(rel) {
		return -1, fmt.Errorf("%w: path %q leaves the checkpoint", ErrUnsafe, short(rel))
	}
	parts := strings.Split(rel, "/")
	cur := dirfd
	closeCur := func() {
		if cur != dirfd {
			unix.Close(cur)
		}
	}
	for i, p := range parts {
		flags := unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i < len(parts)-1 || dir {
			flags |= unix.O_DIRECTORY
		}
		fd, err := unix.Openat(cur, p, flags, 0)
		closeCur()
		if err != nil {
			switch {
			case errors.Is(err, unix.ENOENT):
				return -1, fmt.Errorf("%w: %s is missing: %w", ErrDamaged, rel, os.ErrNotExist)
			case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
				return -1, fmt.Errorf("%w: %s: a symlink or not a directory on the way", ErrUnsafe, rel)
			}
			return -1, fmt.Errorf("%w: open %s: %v", ErrDamaged, rel, err)
		}
		cur = fd
	}
	var st unix.Stat_t
	if err := unix.Fstat(cur, &st); err != nil {
		closeCur()
		return -1, fmt.Errorf("%w: stat %s: %v", ErrDamaged, rel, err)
	}
	want := uint32(unix.S_IFREG)
	if dir {
		want = unix.S_IFDIR
	}
	if st.Mode&unix.S_IFMT != want {
		closeCur()
		return -1, fmt.Errorf("%w: %s is a %s", ErrUnsafe, rel, typeName(st.Mode))
	}
	if dir {
		return cur, nil
	}
	// Reopening the O_PATH descriptor through /proc opens this very inode.
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(cur), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	closeCur()
	if err != nil {
		return -1, fmt.Errorf("%w: open %s: %v", ErrDamaged, rel, err)
	}
	return fd, nil
}

// validRel reports whether p is a clean, relative, slash-separated path inside its tree.
func validRel(p string) bool {
	if p == "" || len(p) > MaxPathBytes || strings.ContainsRune(p, 0) || path.Clean(p) != p || path.IsAbs(p) {
		return false
	}
	for _, e := range strings.Split(p, "/") {
		if e == ".." || e == "." {
			return false
		}
	}
	return true
}

// checkPaths validates the manifest's lists and returns its files by path.
func (m *Manifest) checkPaths() (map[string]File, error) {
	if len(m.Files) > fileLimit || len(m.App.Files) > fileLimit {
		return nil, fmt.Errorf("%w: %s lists more than %d files", ErrUnsafe, ManifestFile, fileLimit)
	}
	want := make(map[string]File, len(m.Files))
	for _, f := range m.Files {
		switch {
		case !validRel(f.Path):
			return nil, fmt.Errorf("%w: %s lists %q, a path outside the checkpoint or too long", ErrUnsafe, ManifestFile, short(f.Path))
		case f.Path == ManifestFile || f.Path == ManifestDigestFile:
			return nil, fmt.Errorf("%w: %s lists itself", ErrUnsafe, ManifestFile)
		case f.Size < 0 || !validSHA256(f.SHA256):
			return nil, fmt.Errorf("%w: %s: bad size or sha256 for %s", ErrDamaged, ManifestFile, f.Path)
		}
		if _, dup := want[f.Path]; dup {
			return nil, fmt.Errorf("%w: %s lists %s twice", ErrUnsafe, ManifestFile, f.Path)
		}
		want[f.Path] = f
	}
	for _, f := range m.App.Files {
		if len(f.Path) > MaxPathBytes || !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || strings.ContainsRune(f.Path, 0) {
			return nil, fmt.Errorf("%w: %s: app file %q is not a clean absolute path", ErrUnsafe, ManifestFile, short(f.Path))
		}
	}
	return want, nil
}

// short cuts a path from untrusted input for an error message.
func short(p string) string {
	if len(p) > 120 {
		return p[:120] + "..."
	}
	return p
}

func validSHA256(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == sha256.Size
}

// treeWalk checks a checkpoint tree against its manifest's files. A problem with one entry
// goes to fail, which says whether to stop (the walk then returns errStop); a limit reached or
// a directory that cannot be read ends the walk with its error.
type treeWalk struct {
	want    map[string]File
	seen    map[string]bool
	entries int
	digests bool
	fail    func(error) bool
}

// errStop ends a walk whose fail said stop.
var errStop = errors.New("stop")

// problem hands err to w.fail: errStop when the walk stops there, else nil.
func (w *treeWalk) problem(err error) error {
	if w.fail(err) {
		return errStop
	}
	return nil
}

// dir checks the directory dirfd (at rel) and everything below it.
func (w *treeWalk) dir(dirfd int, rel string, depth int) error {
	if w.seen == nil {
		w.seen = map[string]bool{}
	}
	if depth > maxDepth {
		return fmt.Errorf("%w: %s: directories nested deeper than %d", ErrUnsafe, rel, maxDepth)
	}
	// A duplicate of the descriptor: reading a directory moves its offset.
	dup, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: open %s: %v", ErrDamaged, rel, err)
	}
	d := os.NewFile(uintptr(dup), rel)
	defer d.Close()
	for {
		names, err := d.Readdirnames(1024)
		for _, n := range names {
			if w.entries++; w.entries > fileLimit {
				return fmt.Errorf("%w: more than %d entries", ErrUnsafe, fileLimit)
			}
			if err := w.entry(dup, rel, n, depth); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) || (err == nil && len(names) == 0) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: read directory %s: %v", ErrDamaged, rel, err)
		}
	}
}

func (w *treeWalk) entry(dirfd int, dirRel, name string, depth int) error {
	rel := path.Join(dirRel, name)
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return w.problem(fmt.Errorf("%w: stat %s: %v", ErrDamaged, rel, err))
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		fd, err := openBeneath(dirfd, name, true)
		if err != nil {
			return w.problem(err)
		}
		defer unix.Close(fd)
		return w.dir(fd, rel, depth+1)
	case unix.S_IFREG:
	default:
		return w.problem(fmt.Errorf("%w: %s is a %s", ErrUnsafe, rel, typeName(st.Mode)))
	}
	if rel == ManifestFile || rel == ManifestDigestFile {
		return nil
	}
	f, ok := w.want[rel]
	if !ok {
		return w.problem(fmt.Errorf("%w: %s is not listed in %s", ErrUnsafe, rel, ManifestFile))
	}
	w.seen[rel] = true
	if st.Size != f.Size {
		return w.problem(sizeProblem(f, st.Size))
	}
	if !w.digests {
		return nil
	}
	fd, err := openBeneath(dirfd, name, false)
	if err != nil {
		return w.problem(err)
	}
	file := os.NewFile(uintptr(fd), rel)
	defer file.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(file, f.Size+1)); err != nil {
		return w.problem(fmt.Errorf("%w: read %s: %v", ErrDamaged, rel, err))
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != strings.ToLower(f.SHA256) {
		return w.problem(digestProblem(f, got))
	}
	return nil
}

// sizeProblem says that the listed file f has size bytes.
func sizeProblem(f File, size int64) error {
	return fmt.Errorf("%w: %s: %d bytes, %s says %d", ErrDamaged, f.Path, size, ManifestFile, f.Size)
}

// digestProblem says that the listed file f has the sha256 got.
func digestProblem(f File, got string) error {
	return fmt.Errorf("%w: %s: sha256 %s, %s says %s", ErrDamaged, f.Path, got, ManifestFile, f.SHA256)
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFREG:
		return "regular file"
	}
	return "special file"
}
