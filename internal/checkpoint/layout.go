package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crwrap/crwrap/internal/rootfs"
)

// Layout names inside a checkpoint directory (shared with Podman/CRI-O/checkpointctl archives).
// Code outside this package names them only through Draft (writing) and Reader (reading).
const (
	ImagesDir        = "checkpoint"
	SpecDumpFile     = "spec.dump"
	ConfigDumpFile   = "config.dump"
	StatsDumpFile    = "stats-dump"
	RootfsDiffFile   = rootfs.DiffFile    // the root filesystem diff names its files in its messages
	DeletedFilesFile = rootfs.DeletedFile // (see rootfs.ExportDiff)
	DescriptorsFile  = "descriptors.json"
)

// ArchiveEntries are what checkpointctl show needs of a checkpoint (the checkpoint/ directory,
// config.dump and spec.dump), with whether each is a directory: an export refuses a
// checkpoint without them rather than write an archive no tool accepts.
var ArchiveEntries = []struct {
	Name string
	Dir  bool
}{
	{ImagesDir, true},
	{ConfigDumpFile, false},
	{SpecDumpFile, false},
}

// IsPagesImage reports whether rel (a slash-separated path inside a checkpoint) is one of
// CRIU's page images, checkpoint/pages-<n>.img: the app's memory, most of a checkpoint's bytes.
func IsPagesImage(rel string) bool {
	dir, base := path.Split(rel)
	return dir == ImagesDir+"/" && strings.HasPrefix(base, "pages-") && strings.HasSuffix(base, ".img")
}

// Draft is a new checkpoint version being written (a directory from Writer.NewVersion): the
// one place that knows where each part of a checkpoint goes and how it is written. Seal is
// its last write; Writer.Publish then makes it the current checkpoint.
type Draft struct {
	Dir string
}

// ImagesDir is where CRIU writes its images.
func (d Draft) ImagesDir() string { return filepath.Join(d.Dir, ImagesDir) }

// ClearImages removes what a failed dump left in ImagesDir, before the dump is tried again.
func (d Draft) ClearImages() error { return os.RemoveAll(d.ImagesDir()) }

// WriteRootfsDiff saves the app's root filesystem changes from the overlay upper layer upper
// (rootfs-diff.tar and deleted.files, each only when there is something to put in it).
func (d Draft) WriteRootfsDiff(upper string) error {
	_, _, err := rootfs.ExportDiff(upper, filepath.Join(d.Dir, RootfsDiffFile), filepath.Join(d.Dir, DeletedFilesFile))
	return err
}

// CopyStats copies CRIU's dump statistics (stats-dump) from its work directory work.
func (d Draft) CopyStats(work string) error {
	b, err := os.ReadFile(filepath.Join(work, StatsDumpFile))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d.Dir, StatsDumpFile), b, 0o600)
}

// WriteSpec writes the app's OCI runtime spec as spec.dump, as Podman and CRI-O do.
func (d Draft) WriteSpec(spec any) error {
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", SpecDumpFile, err)
	}
	if err := os.WriteFile(filepath.Join(d.Dir, SpecDumpFile), b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(d.Dir, SpecDumpFile), err)
	}
	return nil
}

// WriteConfigDump writes c as config.dump, readable by its owner only.
func (d Draft) WriteConfigDump(c ContainerConfig) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", ConfigDumpFile, err)
	}
	if err := os.WriteFile(filepath.Join(d.Dir, ConfigDumpFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", ConfigDumpFile, err)
	}
	return nil
}

// Seal makes everything in the draft root-only (CRIU writes its images 0644, and they hold
// the app's memory: a copy or export must not widen access to them), then lists every file
// in m and writes and seals crwrap.json (WriteManifest). Nothing may be written after it.
func (d Draft) Seal(m *Manifest) error {
	if err := restrict(d.Dir); err != nil {
		return err
	}
	return WriteManifest(d.Dir, m)
}

// restrict makes everything under dir root-only.
func restrict(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o600)
		if d.IsDir() {
			mode = 0o700
		} else if !d.Type().IsRegular() {
			return nil
		}
		if err := os.Chmod(p, mode); err != nil {
			return fmt.Errorf("restrict %s: %w", p, err)
		}
		return nil
	})
}

// HasImages reports whether the held directory has the CRIU images directory (a symlink does
// not count): what every checkpoint has, from crwrap or another tool.
func (r *Reader) HasImages() bool {
	var st unix.Stat_t
	return unix.Fstatat(int(r.f.Fd()), ImagesDir, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
}

// HasManifest reports whether the held directory has a crwrap.json: made by crwrap (a
// Podman or CRI-O checkpoint has none, and so nothing to verify).
func (r *Reader) HasManifest() bool { return r.has(ManifestFile) }

// ImagesDirPath and StatsDumpPath are where a description of the checkpoint (crwrap inspect)
// reads CRIU's images and statistics by name, under r.Dir so that messages name the real
// files: the images directory, and stats-dump at the root or, in a bare CRIU image
// directory, beside the images. A restore gives CRIU Path(ImagesDir) instead: the held directory.
func (r *Reader) ImagesDirPath() string { return filepath.Join(r.Dir, ImagesDir) }

// StatsDumpPath: see ImagesDirPath.
func (r *Reader) StatsDumpPath() string {
	if r.has(StatsDumpFile) {
		return filepath.Join(r.Dir, StatsDumpFile)
	}
	return filepath.Join(r.Dir, ImagesDir, StatsDumpFile)
}

// ApplyRootfsDiff puts the checkpoint's root filesystem changes (rootfs-diff.tar and
// deleted.files, when there) into the empty overlay upper layer upper, reading them through
// the held directory (see rootfs.ApplyDiff). A diff that breaks a rule is ErrUnsafe (and
// rootfs.ErrUnsafeDiff), one that cannot be read ErrDamaged.
func (r *Reader) ApplyRootfsDiff(upper string) error {
	return r.withRootfsDiff(func(diff, deleted io.Reader) error { return rootfs.ApplyDiff(upper, diff, deleted) })
}

// CheckRootfsDiff applies ApplyRootfsDiff's rules to the checkpoint's root filesystem changes,
// writing nothing: an accepted checkpoint (crwrap import) then never fails only when it is
// restored. Errors as for ApplyRootfsDiff.
func (r *Reader) CheckRootfsDiff() error {
	return r.withRootfsDiff(func(diff, deleted io.Reader) error {
		if diff != nil {
			if err := rootfs.CheckDiff(diff); err != nil {
				return err
			}
		}
		if deleted != nil {
			return rootfs.CheckDeleted(deleted)
		}
		return nil
	})
}

// withRootfsDiff opens the diff's files (nil for one that is not there) and calls use.
func (r *Reader) withRootfsDiff(use func(diff, deleted io.Reader) error) error {
	var readers [2]io.Reader
	for i, name := range []string{RootfsDiffFile, DeletedFilesFile} {
		f, err := r.OpenFile(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		defer f.Close()
		readers[i] = f
	}
	if err := use(readers[0], readers[1]); err != nil {
		if errors.Is(err, rootfs.ErrUnsafeDiff) {
			return fmt.Errorf("%w: %w", ErrUnsafe, err)
		}
		return fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	return nil
}
