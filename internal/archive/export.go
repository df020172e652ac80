package archive

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/crwrap/crwrap/internal/checkpoint"
)

// Compression selects how an archive is compressed.
type Compression string

// Compressions. The zero value picks one: none for a stream, from the file name for a file.
const (
	CompressionAuto Compression = ""
	CompressionNone Compression = "none"
	CompressionZstd Compression = "zstd"
	CompressionGzip Compression = "gzip"
)

// ErrNotCheckpoint means a directory or archive lacks what every checkpoint has.
var ErrNotCheckpoint = errors.New("not a checkpoint")

// ParseCompression parses a --compression value: none, zstd or gzip ("" and "auto" mean auto).
func ParseCompression(s string) (Compression, error) {
	switch c := Compression(strings.ToLower(s)); c {
	case CompressionNone, CompressionZstd, CompressionGzip:
		return c, nil
	case "", "auto":
		return CompressionAuto, nil
	}
	return "", fmt.Errorf("unknown compression %q (want none, zstd or gzip)", s)
}

// CompressionForName returns the compression a file name's extension asks for: .zst, .tzst →
// zstd; .gz, .tgz → gzip; anything else → none.
func CompressionForName(name string) Compression {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".zst", ".tzst", ".zstd":
		return CompressionZstd
	case ".gz", ".tgz":
		return CompressionGzip
	}
	return CompressionNone
}

// Extension is the file name suffix for an archive with compression c (".tar", ".tar.zst",
// ".tar.gz"), to append to ArchiveName's result after trimming its ".tar".
func (c Compression) Extension() string {
	switch c {
	case CompressionZstd:
		return ".tar.zst"
	case CompressionGzip:
		return ".tar.gz"
	}
	return ".tar"
}

// ExportOptions tunes Export.
type ExportOptions struct {
	// Compression of the stream; CompressionAuto means none for Export and the file name's
	// extension for ExportFile.
	Compression Compression
}

// Export writes the checkpoint directory dir to w as a tar archive. dir may be a symlink to the
// published version: it is followed, and the version is held (shared flock) until Export
// returns, so a concurrent checkpoint does not remove it mid-export. Symlinks inside it are
// stored as symlinks and must stay inside it. Entry names are relative
// ("checkpoint/pages-1.img"), in lexical order, owned by root, with the files' permissions and
// modification times. dir must hold checkpoint/, config.dump and spec.dump (ErrNotCheckpoint).
func Export(dir string, w io.Writer, opts ExportOptions) (err error) {
	held, err := checkpoint.Hold(dir)
	if err != nil {
		return fmt.Errorf("export %s: %w", dir, err)
	}
	defer held.Close()
	root := held.Dir
	for _, e := range checkpoint.ArchiveEntries {
		fi, err := os.Lstat(filepath.Join(root, e.Name))
		if err != nil || fi.IsDir() != e.Dir {
			return fmt.Errorf("export %s: no %s: %w", dir, e.Name, ErrNotCheckpoint)
		}
	}

	cw, err := compressor(w, opts.Compression)
	if err != nil {
		return fmt.Errorf("export %s: %w", dir, err)
	}
	tw := tar.NewWriter(cw)
	walkErr := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		return writeEntry(tw, root, p, filepath.ToSlash(rel))
	})
	if walkErr != nil {
		return fmt.Errorf("export %s: %w", dir, walkErr)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("export %s: %w", dir, err)
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("export %s: %w", dir, err)
	}
	return nil
}

// writeEntry writes one file of the tree to tw.
func writeEntry(tw *tar.Writer, root, p, name string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	link := ""
	switch {
	case fi.Mode().IsRegular(), fi.IsDir():
	case fi.Mode()&fs.ModeSymlink != 0:
		link, err = os.Readlink(p)
		if err != nil {
			return err
		}
		if filepath.IsAbs(link) || !inside(path.Join(path.Dir(name), filepath.ToSlash(link))) {
			return fmt.Errorf("%s: symlink to %s leaves the checkpoint", name, link)
		}
	default:
		return fmt.Errorf("%s: cannot archive a %s", name, fi.Mode().Type())
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	hdr.Name = name
	if fi.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	// A file that changes size while it is archived would give a corrupt tar: fail instead.
	n, err := io.Copy(tw, io.LimitReader(f, fi.Size()+1))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if n != fi.Size() {
		return fmt.Errorf("%s: size changed while archiving (%d, then %d bytes)", name, fi.Size(), n)
	}
	return nil
}

// inside reports whether the slash-separated relative path p stays inside its tree.
func inside(p string) bool {
	p = path.Clean(p)
	return p != ".." && !strings.HasPrefix(p, "../") && !path.IsAbs(p)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func compressor(w io.Writer, c Compression) (io.WriteCloser, error) {
	switch c {
	case CompressionAuto, CompressionNone:
		return nopCloser{w}, nil
	case CompressionZstd:
		return zstd.NewWriter(w)
	case CompressionGzip:
		return gzip.NewWriter(w), nil
	}
	return nil, fmt.Errorf("unknown compression %q", string(c))
}

// ExportFile writes the checkpoint directory dir as the archive file, atomically: a temporary
// file beside it, synced, then renamed over it. The archive is readable by its owner only.
// With CompressionAuto the compression follows file's extension (see CompressionForName).
func ExportFile(dir, file string, opts ExportOptions) (err error) {
	if opts.Compression == CompressionAuto {
		opts.Compression = CompressionForName(file)
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return fmt.Errorf("export %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("export %s: %w", dir, err)
	}
	if err := Export(dir, tmp, opts); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("export %s: sync %s: %w", dir, file, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("export %s: close %s: %w", dir, file, err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("export %s: %w", dir, err)
	}
	return nil
}
