package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/crwrap/crwrap/internal/checkpoint"
)

// ErrStalled: a lazy pull made no progress for its stall timeout.
var ErrStalled = errors.New("registry stalled")

// CanPullLazy reports whether the resolved image has page images PullLazy can fetch on
// demand (pushed with chunk tables, not encrypted).
func CanPullLazy(r *Resolved) bool {
	for _, d := range r.Manifest.Layers {
		if lazyLayer(d) {
			return true
		}
	}
	return false
}

func lazyLayer(d v1.Descriptor) bool {
	if d.MediaType != types.OCIUncompressedLayer && d.MediaType != types.DockerUncompressedLayer {
		return false
	}
	_, ok, err := parseChunkTable(d)
	return ok && err == nil && isPages(d.Annotations[AnnotationTitle])
}

// LazyPull is a checkpoint being pulled with its page images on demand. PullLazy has written
// every other file; each page image is a file of its final size whose chunks are fetched by
// range when first read (LazyFile.ReadAt) or by Complete's stream, and written to the file
// only after their digest matched the chunk table.
type LazyPull struct {
	dir    string
	files  []*LazyFile
	blobs  *blobClient
	stall  time.Duration
	start  time.Time
	failed chan struct{}
	once   sync.Once
	err    error

	// fileDigests: also compare each page image's sha256 with crwrap.json (WithFileDigests),
	// as Pull does; the chunk digests are always checked.
	fileDigests bool

	fetched atomic.Int64 // bytes fetched (small layers included)
	demand  atomic.Int64 // chunks fetched because a reader waited for them
}

// LazyFile is one page image of a LazyPull.
type LazyFile struct {
	// Path is the file's path in the checkpoint directory.
	Path string
	p    *LazyPull
	desc v1.Descriptor
	t    *chunkTable
	f    *os.File
	mu   sync.Mutex
	// wait[i] is nil while chunk i is missing, open while it is fetched, closed once it is in.
	wait []chan struct{}
	in   int64 // chunks in
	// sha256 is the file's digest in crwrap.json; whole is what the stream saw (hex).
	sha256, whole string
	// While the stream runs, next is the chunk it reads next; a reader of a chunk less than
	// streamWindow ahead of it waits for the stream (reserved) instead of fetching it again.
	streaming bool
	next      int64
	reserved  []bool
}

// streamWindow is how far ahead of the stream (in chunks) a reader waits for it rather than
// fetching: at the stream's rate, less than a range request's latency under load.
const streamWindow = 16

// PullLazy fetches every layer of the resolved image except its page images into dir (an
// empty directory the caller removes should anything fail), as Pull does, and makes each page
// image a file of its final size whose content arrives later (see LazyPull). The caller
// checks dir as a checkpoint (checkpoint.Open: sizes) before using it; Complete checks
// every digest. stall bounds any fetch that makes no progress.
func PullLazy(ctx context.Context, r *Resolved, dir string, stall time.Duration, opts ...Option) (*LazyPull, error) {
	o := makeOptions(ctx, opts)
	fail := func(err error) (*LazyPull, error) { return nil, fmt.Errorf("pull %s: %w", r.Digest, err) }
	if err := checkSpace(dir, r.Bytes()); err != nil {
		return fail(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fail(err)
	}
	defer root.Close()
	blobs, err := newBlobClient(ctx, r.Digest.Context(), o)
	if err != nil {
		return fail(classify("reach "+r.Digest.Context().String(), err))
	}
	lp := &LazyPull{dir: dir, blobs: blobs, stall: stall, start: time.Now(), failed: make(chan struct{}), fileDigests: o.fileDigests}
	var sums *fileSums
	if o.fileDigests {
		sums = &fileSums{m: map[string]string{}}
	}
	var entries atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.jobs)
	for _, desc := range r.Manifest.Layers {
		if lazyLayer(desc) {
			lf, err := lp.create(root, desc)
			if err != nil {
				lp.Close()
				return fail(err)
			}
			entries.Add(1)
			lp.files = append(lp.files, lf)
			continue
		}
		g.Go(func() error {
			n, err := pullLayer(gctx, r.Digest.Context(), desc, root, sums, &entries, o)
			lp.fetched.Add(n)
			if err != nil {
				return classify("pull layer "+desc.Digest.String(), err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		lp.Close()
		return fail(err)
	}
	if entries.Load() > checkpoint.MaxFiles {
		lp.Close()
		return fail(fmt.Errorf("%w: more than %d entries in the layers", ErrFormat, checkpoint.MaxFiles))
	}
	if err := lp.checkSmall(sums); err != nil {
		lp.Close()
		return fail(err)
	}
	return lp, nil
}

// create makes the page image of the layer desc: its directories, and the file at its size.
func (lp *LazyPull) create(root *os.Root, desc v1.Descriptor) (*LazyFile, error) {
	t, _, err := parseChunkTable(desc)
	if err != nil {
		return nil, err
	}
	p := desc.Annotations[AnnotationTitle]
	if len(p) > checkpoint.MaxPathBytes || path.Clean(p) != p || !filepath.IsLocal(p) {
		return nil, fmt.Errorf("%w: layer %s: title %q is not a local path", ErrFormat, desc.Digest, p)
	}
	if d := path.Dir(p); d != "." {
		if err := root.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	f, err := root.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%w: %s is in two layers", ErrFormat, p)
		}
		return nil, fmt.Errorf("create %s: %w", p, err)
	}
	if err := f.Truncate(t.size); err != nil {
		f.Close()
		return nil, fmt.Errorf("create %s: %w", p, err)
	}
	return &LazyFile{Path: p, p: lp, desc: desc, t: t, f: f, wait: make([]chan struct{}, t.chunks()), reserved: make([]bool, t.chunks())}, nil
}

// checkSmall checks the directory as Pull does, except for the page images' content:
// crwrap.json sealed, every file listed with its size (the page images too: their chunk
// tables agree with crwrap.json on the size), with sums the other files' digests.
func (lp *LazyPull) checkSmall(sums *fileSums) error {
	r, err := checkpoint.Open(lp.dir, false)
	if err != nil {
		return err
	}
	defer r.Close()
	lazy := map[string]*LazyFile{}
	for _, f := range lp.files {
		lazy[f.Path] = f
	}
	for _, f := range r.Manifest.Files {
		if lf := lazy[path.Clean(f.Path)]; lf != nil {
			lf.sha256 = strings.ToLower(f.SHA256)
			continue
		}
		if sums != nil && sums.m[path.Clean(f.Path)] != f.SHA256 {
			return fmt.Errorf("%w: %s content differs from %s", checkpoint.ErrDamaged, f.Path, checkpoint.ManifestFile)
		}
	}
	return nil
}

// Files are the page images fetched on demand.
func (lp *LazyPull) Files() []*LazyFile { return lp.files }

// Dir is the checkpoint directory.
func (lp *LazyPull) Dir() string { return lp.dir }

// Fetched is the number of bytes fetched so far.
func (lp *LazyPull) Fetched() int64 { return lp.fetched.Load() }

// DemandChunks is the number of chunks fetched because a reader waited for them.
func (lp *LazyPull) DemandChunks() int64 { return lp.demand.Load() }

// Err is why the pull failed (nil while it has not).
func (lp *LazyPull) Err() error {
	select {
	case <-lp.failed:
		return lp.err
	default:
		return nil
	}
}

// fail ends the pull: every waiting and later read fails with err.
func (lp *LazyPull) fail(err error) {
	lp.once.Do(func() {
		lp.err = err
		close(lp.failed)
	})
}

// Close fails what is still waiting and closes the files (the directory stays).
func (lp *LazyPull) Close() {
	lp.fail(errors.New("lazy pull closed"))
	for _, f := range lp.files {
		f.f.Close()
	}
}

// Complete fetches every chunk not in yet, one streamed range per page image (chunks readers
// are waiting for are fetched meanwhile by their own ranges), syncs the files, checks the
// directory as a checkpoint (sealed manifest, sizes) and, with WithFileDigests, each page
// image's sha256 (taken over the stream, which reads the whole file) against crwrap.json.
// Every chunk matched the chunk table, which the manifest digest covers as it covers the
// blob digests a full Pull checks. On error the pull is failed.
func (lp *LazyPull) Complete(ctx context.Context) error {
	err := lp.complete(ctx)
	if err != nil {
		lp.fail(err)
	}
	return err
}

func (lp *LazyPull) complete(ctx context.Context) error {
	for _, f := range lp.files {
		if err := f.stream(ctx); err != nil {
			return err
		}
		for i := range f.wait {
			if err := f.ensure(int64(i)); err != nil {
				return err
			}
		}
		if err := f.f.Sync(); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
		if lp.fileDigests && f.whole != f.sha256 {
			return fmt.Errorf("%w: %s content differs from %s", checkpoint.ErrDamaged, f.Path, checkpoint.ManifestFile)
		}
	}
	r, err := checkpoint.Open(lp.dir, false)
	if err != nil {
		return err
	}
	return r.Close()
}

// Size is the file's size.
func (f *LazyFile) Size() int64 { return f.t.size }

// ReadAt reads from the file once every chunk p covers is in, fetching those that are not.
func (f *LazyFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= f.t.size {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), f.t.size)
	for i := off / f.t.chunk; i <= (end-1)/f.t.chunk; i++ {
		if err := f.ensure(i); err != nil {
			return 0, err
		}
	}
	n, err := f.f.ReadAt(p[:end-off], off)
	if err == nil && end-off < int64(len(p)) {
		err = io.EOF
	}
	return n, err
}

// ensure returns once chunk i is in, fetching it (and the next missing one, a range costs the
// same) when nobody is.
func (f *LazyFile) ensure(i int64) error {
	for {
		f.mu.Lock()
		c := f.wait[i]
		if c == nil && f.streaming && i >= f.next && i < f.next+streamWindow {
			c = make(chan struct{})
			f.wait[i], f.reserved[i] = c, true
		}
		if c == nil {
			lo, hi := f.claim(i, 2)
			f.mu.Unlock()
			f.p.demand.Add(hi - lo)
			return f.fetch(lo, hi)
		}
		f.mu.Unlock()
		select {
		case <-c:
			return nil
		case <-f.p.failed:
			return f.p.err
		case <-time.After(streamWait):
			// A stream that does not bring a reserved chunk soon (a slow or hanging registry)
			// does not hold the reader up: unless the stream took it meanwhile, it is fetched
			// here, and the waiters on c are woken as usual.
			f.mu.Lock()
			if f.wait[i] == c && f.reserved[i] {
				f.reserved[i] = false
				f.mu.Unlock()
				f.p.demand.Add(1)
				return f.fetch(i, i+1)
			}
			f.mu.Unlock()
		}
	}
}

// streamWait is how long a reader waits for the stream to bring a reserved chunk.
const streamWait = 100 * time.Millisecond

// claim marks up to n missing chunks from i on as being fetched (f.mu held); chunk i must be
// missing.
func (f *LazyFile) claim(i, n int64) (lo, hi int64) {
	hi = i
	for hi < int64(len(f.wait)) && hi < i+n && f.wait[hi] == nil {
		f.wait[hi] = make(chan struct{})
		hi++
	}
	return i, hi
}

// fetch fetches the claimed chunks [lo, hi) by one range request.
func (f *LazyFile) fetch(lo, hi int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), f.p.stall)
	defer cancel()
	from, to := f.t.offset+lo*f.t.chunk, f.t.offset+min(hi*f.t.chunk, f.t.size)
	body, err := f.p.blobs.get(ctx, f.desc.Digest, from, to)
	if err == nil {
		err = f.take(body, lo, hi, nil, nil)
		body.Close()
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: no answer within %s (cr.restore.fetch-timeout): %w", ErrStalled, f.p.stall, err)
		}
		err = fmt.Errorf("fetch %s chunks %d-%d: %w", f.Path, lo, hi-1, err)
		f.p.fail(err)
	}
	return err
}

// take reads chunks [lo, hi) from body, checks each against the chunk table and writes it.
// With progress (the stream, which also feeds whole), chunks that are in or being fetched by
// someone else are read past, and progress is called after each chunk; otherwise every chunk
// is the caller's claim.
func (f *LazyFile) take(body io.Reader, lo, hi int64, progress func(), whole hash.Hash) error {
	buf := make([]byte, f.t.chunk)
	for i := lo; i < hi; i++ {
		n := min(f.t.chunk, f.t.size-i*f.t.chunk)
		if _, err := io.ReadFull(body, buf[:n]); err != nil {
			return fmt.Errorf("read chunk %d: %w", i, ErrUnavailable)
		}
		f.p.fetched.Add(n)
		if whole != nil {
			whole.Write(buf[:n]) // a chunk read past differs only if the registry changed it: then this fails
		}
		if progress != nil {
			progress()
			f.mu.Lock()
			f.next = i + 1
			switch {
			case f.reserved[i]: // a reader waits for the stream to bring it: the stream owns it now
				f.reserved[i] = false
			case f.wait[i] != nil: // in, or a reader's own fetch brings it
				f.mu.Unlock()
				continue
			default:
				f.claim(i, 1)
			}
			f.mu.Unlock()
		}
		sum := sha256.Sum256(buf[:n])
		if !bytes.Equal(sum[:], f.t.sum(i)) {
			return fmt.Errorf("%w: %s chunk %d does not match its digest", checkpoint.ErrDamaged, f.Path, i)
		}
		if _, err := f.f.WriteAt(buf[:n], i*f.t.chunk); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
		f.mu.Lock()
		close(f.wait[i])
		f.in++
		f.mu.Unlock()
	}
	return nil
}

// stream reads the whole file in one range and takes every chunk nobody else is fetching
// (those in are few: the stream starts right after the restore), digesting it all on the way.
// A stall of lp.stall ends it.
func (f *LazyFile) stream(ctx context.Context) error {
	lo := int64(0)
	if len(f.wait) == 0 {
		sum := sha256.Sum256(nil)
		f.whole = hex.EncodeToString(sum[:])
		return nil
	}
	f.mu.Lock()
	f.streaming, f.next = true, 0
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.streaming = false
		f.mu.Unlock()
	}()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stalled := fmt.Errorf("%w: no progress within %s (cr.restore.fetch-timeout)", ErrStalled, f.p.stall)
	timer := time.AfterFunc(f.p.stall, func() { cancel(stalled) })
	defer timer.Stop()
	body, err := f.p.blobs.get(ctx, f.desc.Digest, f.t.offset+lo*f.t.chunk, f.t.offset+f.t.size)
	if err == nil {
		var whole hash.Hash
		if f.p.fileDigests {
			whole = sha256.New()
		}
		err = f.take(body, lo, int64(len(f.wait)), func() { timer.Reset(f.p.stall) }, whole)
		body.Close()
		if whole != nil {
			f.whole = hex.EncodeToString(whole.Sum(nil))
		}
	}
	if err != nil {
		if c := context.Cause(ctx); c != nil {
			err = fmt.Errorf("%w: %w", c, err)
		}
		return fmt.Errorf("fetch %s: %w", f.Path, err)
	}
	return nil
}

// blobClient makes range requests for blobs of one repository.
type blobClient struct {
	client *http.Client
	base   string
}

func newBlobClient(ctx context.Context, repo name.Repository, o *options) (*blobClient, error) {
	auth, err := o.keychain.Resolve(repo)
	if err != nil {
		return nil, err
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, http.DefaultTransport.(*http.Transport).Clone(), []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, err
	}
	return &blobClient{
		client: &http.Client{Transport: rt},
		base:   repo.Registry.Scheme() + "://" + repo.RegistryStr() + "/v2/" + repo.RepositoryStr() + "/blobs/",
	}, nil
}

// get returns the bytes [from, to) of the blob digest.
func (b *blobClient) get(ctx context.Context, digest v1.Hash, from, to int64) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.base+digest.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Range", "bytes="+strconv.FormatInt(from, 10)+"-"+strconv.FormatInt(to-1, 10))
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if resp.StatusCode != http.StatusPartialContent || !strings.HasPrefix(resp.Header.Get("Content-Range"), "bytes "+strconv.FormatInt(from, 10)+"-") {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: range request for blob %s: %s (want 206 from byte %d)", ErrUnavailable, digest, resp.Status, from)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, to-from), resp.Body}, nil
}

// DefaultKeychain is the keychain range requests authenticate with unless WithKeychain says
// otherwise (the one crwrap's remote options use).
var DefaultKeychain = authn.DefaultKeychain
