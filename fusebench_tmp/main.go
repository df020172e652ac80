package main

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

var data = make([]byte, 256<<20)

type file struct{ fs.Inode }

func (f *file) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}
func (f *file) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = 0o400
	out.Size = uint64(len(data))
	return 0
}
func (f *file) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	end := min(off+int64(len(dest)), int64(len(data)))
	if off >= end {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(data[off:end]), 0
}

type root struct{ fs.Inode }

func (r *root) OnAdd(ctx context.Context) {
	r.AddChild("pages-1.img", r.NewPersistentInode(ctx, &file{}, fs.StableAttr{Mode: syscall.S_IFREG}), false)
}

func main() {
	dir, _ := os.MkdirTemp("", "fb")
	srv, err := fs.Mount(dir, &root{}, &fs.Options{MountOptions: fuse.MountOptions{DirectMount: true, MaxWrite: 1 << 20, FsName: "crwrap"}})
	if err != nil {
		panic(err)
	}
	defer srv.Unmount()
	f, err := os.Open(dir + "/pages-1.img")
	if err != nil {
		panic(err)
	}
	buf := make([]byte, 4096)
	n := 2000
	t := time.Now()
	for i := 0; i < n; i++ {
		off := int64(rand.Intn(len(data)/4096)) * 4096
		if _, err := f.ReadAt(buf, off); err != nil {
			panic(err)
		}
	}
	fmt.Printf("random 4 KiB pread: %.1f us each\n", float64(time.Since(t).Microseconds())/float64(n))
	for _, bs := range []int{4096, 64 << 10, 512 << 10} {
		f2, _ := os.OpenFile(dir+"/pages-1.img", os.O_RDONLY|syscall.O_DIRECT, 0)
		_ = f2
		g, _ := os.Open(dir + "/pages-1.img")
		b := make([]byte, bs)
		t = time.Now()
		var tot int
		for {
			k, err := g.Read(b)
			tot += k
			if err != nil || k == 0 {
				break
			}
		}
		el := time.Since(t)
		fmt.Printf("sequential bs=%d: %d MiB in %v = %.0f MB/s\n", bs, tot>>20, el, float64(tot)/el.Seconds()/1e6)
		g.Close()
		// drop cache for next pass
		_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0)
	}
}
