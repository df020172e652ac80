package checkpoint

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The reasons a checkpoint is not restored; callers branch on them (fallback reasons).
var (
	// ErrDamaged: files missing, truncated or changed since the checkpoint was written.
	ErrDamaged = errors.New("checkpoint damaged")
	// ErrForeign: the checkpoint is of another app (command, template, mounts, executable or library).
	ErrForeign = errors.New("checkpoint belongs to another app")
	// ErrIncompatible: the checkpoint was made on an incompatible host (kernel, CPU, CRIU).
	ErrIncompatible = errors.New("checkpoint made on an incompatible host")
)

// WriteManifest lists every file under dir into m.Files (with digests), writes
// dir/crwrap.json (0600) and seals it (SealManifest). It is the last write into a new version.
func WriteManifest(dir string, m *Manifest) error {
	files, err := digestTree(dir)
	if err != nil {
		return err
	}
	m.Files = files
	m.FormatVersion = FormatVersion
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return SealManifest(dir)
}

// SealManifest writes dir/crwrap.json.sha256 for the crwrap.json in dir and returns nothing
// else: after it, any change to crwrap.json (and so to any file it lists) is ErrDamaged.
func SealManifest(dir string) error {
	d, err := DigestFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return fmt.Errorf("seal manifest: %w", err)
	}
	line := d.SHA256 + "  " + ManifestFile + "\n"
	if err := os.WriteFile(filepath.Join(dir, ManifestDigestFile), []byte(line), 0o600); err != nil {
		return fmt.Errorf("seal manifest: %w", err)
	}
	return nil
}

func digestTree(dir string) ([]File, error) {
	var files []File
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == ManifestFile || rel == ManifestDigestFile {
			return nil
		}
		f, err := DigestFile(p)
		if err != nil {
			return err
		}
		f.Path = rel
		files = append(files, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list checkpoint files: %w", err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// DigestFile returns the size and sha256 of the regular file at p (Path is p). Anything else
// (a FIFO, a device, a directory) is refused without being read, and without blocking.
func DigestFile(p string) (File, error) {
	f, err := openRegular(p)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return File{}, fmt.Errorf("read %s: %w", p, err)
	}
	return File{Path: p, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// openRegular opens p for reading if it is a regular file. It looks with O_PATH first: a
// manifest naming a device or a FIFO (say /dev/watchdog) must not make crwrap open it.
func openRegular(p string) (*os.File, error) {
	pfd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s: is a %s, not a regular file", p, typeName(st.Mode))
	}
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(pfd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// CurrentHost describes this machine.
func CurrentHost() (Host, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return Host{}, fmt.Errorf("uname: %w", err)
	}
	h := Host{
		Hostname: unix.ByteSliceToString(u.Nodename[:]),
		Kernel:   unix.ByteSliceToString(u.Release[:]),
		Arch:     runtime.GOARCH,
	}
	model, flags, err := cpuInfo("/proc/cpuinfo")
	if err != nil {
		return Host{}, err
	}
	h.CPUModel = model
	sum := sha256.Sum256([]byte(strings.Join(flags, " ")))
	h.CPUFlagsDigest = hex.EncodeToString(sum[:])
	return h, nil
}

func cpuInfo(path string) (model string, flags []string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, fmt.Errorf("read cpu info: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name":
			if model == "" {
				model = strings.TrimSpace(v)
			}
		case "flags", "Features":
			if flags == nil {
				flags = strings.Fields(v)
				sort.Strings(flags)
			}
		}
	}
	return model, flags, sc.Err()
}

// CheckHost refuses a checkpoint made on a host this one cannot restore it on.
func (m *Manifest) CheckHost(h Host, criuVersion string) error {
	switch {
	case m.Host.Arch != h.Arch:
		return fmt.Errorf("%w: architecture %s, this host is %s", ErrIncompatible, m.Host.Arch, h.Arch)
	case m.Host.Kernel != h.Kernel:
		return fmt.Errorf("%w: kernel %s, this host runs %s", ErrIncompatible, m.Host.Kernel, h.Kernel)
	case m.Host.CPUFlagsDigest != h.CPUFlagsDigest:
		return fmt.Errorf("%w: CPU features differ (%s vs %s)", ErrIncompatible, m.Host.CPUModel, h.CPUModel)
	case m.CRIUVersion != criuVersion:
		return fmt.Errorf("%w: CRIU %s, this crwrap uses %s", ErrIncompatible, m.CRIUVersion, criuVersion)
	}
	return nil
}

// CheckApp refuses a checkpoint of another app: another command line, template or set of
// volumes, or any executable or library the app had mapped that differs now (by content,
// even at the same size) in the root filesystem at rootfs. A file whose size and Stat are
// those recorded is known unchanged without reading it, unless digests is set.
func (m *Manifest) CheckApp(app App, rootfs string, digests bool) error {
	switch {
	case !slices.Equal(m.App.Args, app.Args):
		return fmt.Errorf("%w: command %q, this app runs %q", ErrForeign, m.App.Args, app.Args)
	case m.App.TemplateDigest != app.TemplateDigest:
		return fmt.Errorf("%w: made with another config template", ErrForeign)
	case !slices.Equal(m.App.Mounts, app.Mounts):
		return fmt.Errorf("%w: volumes %q, this app has %q", ErrForeign, m.App.Mounts, app.Mounts)
	}
	for _, f := range m.App.Files {
		p := filepath.Join(rootfs, f.Path)
		if !digests && f.Stat != "" {
			if size, st, err := statID(p); err == nil && size == f.Size && st == f.Stat {
				continue
			}
		}
		d, err := DigestFile(p)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrForeign, f.Path, err)
		}
		if d.Size != f.Size || d.SHA256 != f.SHA256 {
			return fmt.Errorf("%w: %s changed since the checkpoint", ErrForeign, f.Path)
		}
	}
	return nil
}

// AppFiles lists, with digests, the files the processes pids have mapped (their
// executables and libraries), as paths inside the container whose root is rootfs.
func AppFiles(rootfs string, pids []int) ([]File, error) {
	seen := map[string]bool{}
	var files []File
	for _, pid := range pids {
		paths, err := mappedFiles(pid)
		if err != nil {
			return nil, err
		}
		for _, p := range paths {
			if seen[p] {
				continue
			}
			seen[p] = true
			fi, err := os.Stat(filepath.Join(rootfs, p))
			if err != nil || !fi.Mode().IsRegular() {
				continue // deleted, or on a tmpfs of the container: not part of the image
			}
			d, err := DigestFile(filepath.Join(rootfs, p))
			if err != nil {
				return nil, err
			}
			d.Path = p
			if size, st, err := statID(filepath.Join(rootfs, p)); err == nil && size == d.Size {
				d.Stat = st
			}
			files = append(files, d)
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

func mappedFiles(pid int) ([]string, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		return nil, fmt.Errorf("read maps of pid %d: %w", pid, err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		p := strings.Join(fields[5:], " ")
		if !strings.HasPrefix(p, "/") || strings.HasSuffix(p, " (deleted)") {
			continue
		}
		if strings.HasPrefix(p, "/dev/") || strings.HasPrefix(p, "/proc/") || strings.HasPrefix(p, "/sys/") {
			continue
		}
		out = append(out, p)
	}
	return out, sc.Err()
}

// statID returns a file's size and its Stat identity (inode, ctime, mtime in ns).
func statID(p string) (int64, string, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return 0, "", err
	}
	return st.Size, fmt.Sprintf("%d:%d:%d", st.Ino, st.Ctim.Nano(), st.Mtim.Nano()), nil
}
