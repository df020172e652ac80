package supervisor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/crwrap/crwrap/internal/checkpoint"
	"github.com/crwrap/crwrap/internal/lazyfs"
	"github.com/crwrap/crwrap/internal/metrics"
	"github.com/crwrap/crwrap/internal/nodecache"
	"github.com/crwrap/crwrap/internal/registry"
)

// lazyFetch is a checkpoint pulled with cr.restore.fetch=lazy: its small files are in a
// pending node-cache entry, its page images arrive by range while it is restored (CRIU
// reads them through a FUSE view whose reads wait for verified chunks), and the rest streams
// in the background; the entry is published once every file's digest matched.
type lazyFetch struct {
	lp      *registry.LazyPull
	workDir string
	start   time.Time

	mu      sync.Mutex
	view    *lazyfs.Mount
	unused  bool // the view was unmounted (or never needed)
	fetched bool // the background fetch ended

	done chan struct{} // the background fetch ended
	err  error

	go_    chan struct{} // closed when the background stream may start
	goOnce sync.Once
	cancel context.CancelFunc
}

// endFetch stops a background fetch still running when crwrap is about to exit and waits
// until it has removed its temporary cache entry (nil-safe).
func (s *Supervisor) endFetch() {
	f := s.fetch
	if f == nil {
		return
	}
	f.cancel()
	f.unmount(s.Log)
	select {
	case <-f.done:
	case <-time.After(10 * time.Second):
		s.Log.Warn("lazy fetch did not stop within 10 s; the next pull removes what it left")
	}
}

// streamDelay is the longest the background stream waits for the app to be ready: until
// then only the chunks CRIU and the app read are fetched, so that the stream's reading and
// hashing do not take the CPU from the restore.
const streamDelay = 2 * time.Second

// fetchReady logs what the lazy fetch had fetched when the restored app became ready, and lets
// the background stream start (nil-safe).
func (s *Supervisor) fetchReady() {
	f := s.fetch
	if f == nil {
		return
	}
	s.Log.WithFields(logrus.Fields{"phase": "fetch-ready", "bytes": f.lp.Fetched(), "demand_chunks": f.lp.DemandChunks(),
		"duration_ms": time.Since(f.start).Milliseconds()}).Info("lazy fetch: what the app needed to become ready")
	f.stream()
}

// stream lets the background stream start (nil-safe): the restored app is ready, or the
// restore is over.
func (f *lazyFetch) stream() {
	if f != nil {
		f.goOnce.Do(func() { close(f.go_) })
	}
}

// fuseAvailable reports whether this pod can mount the FUSE view (/dev/fuse is there).
func fuseAvailable() bool {
	fi, err := os.Stat("/dev/fuse")
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// pullLazy starts a lazy pull of res into the node cache and returns the checkpoint held
// and checked, its page images still arriving. bg is the context of the background fetch.
func (s *Supervisor) pullLazy(ctx, bg context.Context, cache *nodecache.Cache, ref name.Tag, res *registry.Resolved, t time.Time, opts []registry.Option) (*checkpoint.Reader, error) {
	digest := res.Digest.DigestStr()
	r, _, p, err := cache.Begin(ctx, digest)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errPull, err)
	}
	if r != nil { // there, or another pod of the node just filled it
		r.Close()
		return s.fromCache(ctx, cache, ref, digest, res, t, opts)
	}
	lp, err := registry.PullLazy(ctx, res, p.Dir(), s.Settings.FetchTimeout, opts...)
	if err != nil {
		p.Abort()
		s.Metrics.ObserveTransfer(metrics.DirectionPull, time.Since(t), 0, err)
		return nil, fmt.Errorf("%w: %w", errPull, err)
	}
	s.Metrics.IncCache(string(nodecache.Miss))
	r, err = checkpoint.Hold(p.Dir())
	if err == nil {
		if err = s.checkLazy(r); err != nil {
			r.Close()
		}
	}
	if err != nil {
		lp.Close()
		p.Abort()
		return nil, fmt.Errorf("%w: %s: %w", errPull, ref, err)
	}
	s.phase("pull", t, logrus.Fields{"image": ref.String(), "digest": digest, "cache": "miss", "fetch": "lazy", "bytes": lp.Fetched(), "checkpoint": r.Dir})
	s.loadKdat()
	bg, cancel := context.WithCancel(bg)
	f := &lazyFetch{lp: lp, start: t, done: make(chan struct{}), go_: make(chan struct{}), cancel: cancel, workDir: filepath.Join(s.WorkRoot, "lazy-"+randomHex())}
	s.fetch = f
	go func() {
		defer close(f.done)
		select {
		case <-f.go_:
		case <-time.After(streamDelay):
		}
		// At a low priority, as CRIU's lazy-pages daemon: the app's own faults come first.
		runtime.LockOSThread()
		_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 10)
		err := lp.Complete(bg)
		fields := logrus.Fields{"phase": "fetch", "image": ref.String(), "digest": digest, "bytes": lp.Fetched(),
			"demand_chunks": lp.DemandChunks(), "duration_ms": time.Since(t).Milliseconds()}
		s.Metrics.ObserveTransfer(metrics.DirectionPull, time.Since(t), lp.Fetched(), err)
		f.ended(func() { f.fetched = true })
		if err == nil {
			err = p.Publish()
		} else {
			p.Abort()
		}
		f.err = err
		if err != nil {
			s.Log.WithFields(fields).WithError(err).Error("lazy fetch failed; nothing was added to the node cache")
			return
		}
		if err := cache.Remember(ref.String(), digest); err != nil {
			s.Log.WithError(err).Warn("could not record the tag in the cache")
		}
		s.Log.WithFields(fields).Info("lazy fetch complete and verified; the checkpoint is in the node cache")
	}()
	return r, nil
}

// checkLazy is check for a checkpoint whose page images are still arriving: their digests
// are checked chunk by chunk as they arrive (and whole before the cache entry is published),
// the rest as check does.
func (s *Supervisor) checkLazy(r *checkpoint.Reader) error {
	m, err := r.Verify(false)
	if err != nil {
		return err
	}
	host, err := checkpoint.CurrentHost()
	if err != nil {
		return err
	}
	if err := m.CheckHost(host, s.CRIUVersion); err != nil {
		return err
	}
	return m.CheckApp(s.identity(), "/", s.Settings.RestoreVerify == "digest")
}

// imagesDir is the directory CRIU restores r's images from: the held directory itself, or
// for a lazy fetch the FUSE view of it (mounted on first use).
func (s *Supervisor) imagesDir(r *checkpoint.Reader) (string, error) {
	if s.fetch == nil {
		return r.Path(checkpoint.ImagesDir)
	}
	return s.fetch.mount(r)
}

func (f *lazyFetch) mount(r *checkpoint.Reader) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.view != nil {
		return f.view.Dir, nil
	}
	held, err := r.Path(checkpoint.ImagesDir)
	if err != nil {
		return "", err
	}
	entries, err := os.ReadDir(held)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", checkpoint.ImagesDir, err)
	}
	lazy := map[string]*registry.LazyFile{}
	for _, lf := range f.lp.Files() {
		lazy[lf.Path] = lf
	}
	files := map[string]lazyfs.File{}
	for _, e := range entries {
		rel := path.Join(checkpoint.ImagesDir, e.Name())
		if lf := lazy[rel]; lf != nil {
			files[e.Name()] = lf
			continue
		}
		if !e.Type().IsRegular() {
			return "", fmt.Errorf("%w: %s is not a regular file", checkpoint.ErrUnsafe, rel)
		}
		fd, err := r.OpenFile(rel)
		if err != nil {
			return "", err
		}
		lf, err := lazyfs.OSFile(fd) // closed with the process: the view lives as long as the restore
		if err != nil {
			fd.Close()
			return "", err
		}
		files[e.Name()] = lf
	}
	if err := os.MkdirAll(f.workDir, 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", f.workDir, err)
	}
	v, err := lazyfs.New(f.workDir, files)
	if err != nil {
		return "", err
	}
	f.view = v
	return v.Dir, nil
}

// unmount removes the FUSE view once CRIU no longer reads it (nil-safe); the background
// fetch goes on.
func (f *lazyFetch) unmount(log *logrus.Entry) {
	if f == nil {
		return
	}
	f.stream()
	defer f.ended(func() { f.unused = true })
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.view == nil {
		return
	}
	if err := f.view.Unmount(); err != nil {
		log.WithError(err).Warn("lazy fetch: unmount the images view")
	}
	f.view = nil
	_ = os.Remove(f.workDir)
}

// ended records that the view or the background fetch is done with the page images' files
// and closes them when both are.
func (f *lazyFetch) ended(mark func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	mark()
	if f.unused && f.fetched {
		f.lp.Close()
	}
}

// fetchFailure says why a restore failed when the lazy fetch failed first: the registry
// stalled or sent a chunk that did not match its digest.
func (s *Supervisor) fetchFailure(err error) error {
	if s.fetch == nil {
		return err
	}
	ferr := s.fetch.lp.Err()
	if ferr == nil || errors.Is(err, errPull) {
		return err
	}
	return fmt.Errorf("%w: %w (restore: %v)", errPull, ferr, err)
}

func randomHex() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
