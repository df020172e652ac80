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
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

const opaqueXattr = "trusted.overlay.opaque"

// ExportDiff writes the app's changes to its root filesystem: new and changed files to a
// tar archive at tarPath and deleted paths, as a JSON list (Podman's deleted.files), at
// deletedPath. It writes a file only when there is something to put in it and reports
// whether it wrote each.
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
	st, ok := info.Sys().(*unix.Stat_t)
	if !ok {
		st2, ok2 := info.Sys().(interface{ Rdev() uint64 })
		return ok2 && st2.Rdev() == 0
	}
	return st.Rdev == 0
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

// ApplyDiff puts a saved diff back into an empty upper layer before the overlay is used:
// the tar's files are extracted and deleted paths become overlay whiteouts (or opaque
// directories, when the tar recreates them). Missing files mean an empty diff.
func ApplyDiff(upper, tarPath, deletedPath string) error {
	extracted := map[string]bool{}
	if f, err := os.Open(tarPath); err == nil {
		defer f.Close()
		tr := tar.NewReader(bufio.NewReaderSize(f, 1<<20))
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", tarPath, err)
			}
			name := filepath.Clean(hdr.Name)
			if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
				return fmt.Errorf("read %s: unsafe path %q", tarPath, hdr.Name)
			}
			dst := filepath.Join(upper, name)
			if err := extract(tr, hdr, dst); err != nil {
				return fmt.Errorf("extract %s from %s: %w", hdr.Name, tarPath, err)
			}
			extracted["/"+name] = true
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("open %s: %w", tarPath, err)
	}
	b, err := os.ReadFile(deletedPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", deletedPath, err)
	}
	var deleted []string
	if err := json.Unmarshal(b, &deleted); err != nil {
		return fmt.Errorf("parse %s: %w", deletedPath, err)
	}
	for _, d := range deleted {
		clean := filepath.Clean("/" + d)
		dst := filepath.Join(upper, clean)
		if extracted[clean] {
			if err := unix.Lsetxattr(dst, opaqueXattr, []byte("y"), 0); err != nil {
				return fmt.Errorf("mark %s opaque: %w", clean, err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("create parent of whiteout %s: %w", clean, err)
		}
		if err := unix.Mknod(dst, unix.S_IFCHR, 0); err != nil {
			return fmt.Errorf("create whiteout %s: %w", clean, err)
		}
	}
	return nil
}

func extract(tr *tar.Reader, hdr *tar.Header, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	mode := hdr.FileInfo().Mode()
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := os.MkdirAll(dst, mode.Perm()); err != nil {
			return err
		}
	case tar.TypeReg:
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode.Perm())
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
		if err := os.Symlink(hdr.Linkname, dst); err != nil {
			return err
		}
	default:
		return nil // devices, fifos: not carried over
	}
	if err := os.Lchown(dst, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if err := os.Chmod(dst, mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			return err
		}
		return os.Chtimes(dst, hdr.AccessTime, hdr.ModTime)
	}
	return nil
}
