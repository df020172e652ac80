package lazyfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// File is the content of one file of the view.
type File interface {
	Size() int64
	ReadAt(p []byte, off int64) (int, error)
}

// OSFile adapts an open regular file (its size taken once).
func OSFile(f *os.File) (File, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	return sized{f, fi.Size()}, nil
}

type sized struct {
	io.ReaderAt
	n int64
}

func (s sized) Size() int64 { return s.n }

// Mount is a mounted view.
type Mount struct {
	// Dir is the mount point.
	Dir string
	srv *fuse.Server
}

// timeout is how long the kernel may cache names and attributes: the view never changes.
const timeout = time.Hour

// New mounts the files (names without a slash) read-only on the existing directory dir.
func New(dir string, files map[string]File) (*Mount, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		if n == "" || n == "." || n == ".." || path.Base(n) != n {
			return nil, fmt.Errorf("mount %s: %q is not a file name", dir, n)
		}
		names = append(names, n)
	}
	sort.Strings(names)
	root := &dirNode{files: files, names: names}
	to := timeout
	srv, err := fs.Mount(dir, root, &fs.Options{
		EntryTimeout: &to, AttrTimeout: &to,
		MountOptions: fuse.MountOptions{
			DirectMount:  true, // crwrap runs as root: no fusermount helper needed
			FsName:       "crwrap-lazy",
			Name:         "crwrap",
			MaxWrite:     1 << 20,
			MaxReadAhead: 1 << 20,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("mount %s (FUSE): %w", dir, err)
	}
	return &Mount{Dir: dir, srv: srv}, nil
}

// Unmount removes the view; a view still in use (a killed reader's descriptor) is detached.
func (m *Mount) Unmount() error {
	if m == nil {
		return nil
	}
	if err := m.srv.Unmount(); err != nil {
		if derr := unix.Unmount(m.Dir, unix.MNT_DETACH); derr != nil && !errors.Is(derr, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", m.Dir, err)
		}
	}
	return nil
}

type dirNode struct {
	fs.Inode
	files map[string]File
	names []string
}

var _ = (fs.NodeOnAdder)((*dirNode)(nil))

func (d *dirNode) OnAdd(ctx context.Context) {
	for i, n := range d.names {
		ch := d.NewPersistentInode(ctx, &fileNode{f: d.files[n]}, fs.StableAttr{Mode: syscall.S_IFREG, Ino: uint64(i + 2)})
		d.AddChild(n, ch, false)
	}
}

func (d *dirNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o500
	return 0
}

type fileNode struct {
	fs.Inode
	f File
}

var (
	_ = (fs.NodeOpener)((*fileNode)(nil))
	_ = (fs.NodeReader)((*fileNode)(nil))
	_ = (fs.NodeGetattrer)((*fileNode)(nil))
)

func (n *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC) != 0 {
		return nil, 0, syscall.EROFS
	}
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (n *fileNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0o400
	out.Size = uint64(n.f.Size())
	out.Blocks = (out.Size + 511) / 512
	return 0
}

func (n *fileNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	k, err := n.f.ReadAt(dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		// Nothing unverified is ever returned: the reader gets an error instead of bytes.
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(dest[:k]), 0
}
