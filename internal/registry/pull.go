package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/crwrap/crwrap/internal/checkpoint"
)

// Want is what a restoring node requires of an image before fetching any blob of it: the
// host class and app class it computed from its own facts ("" accepts any).
type Want struct {
	HostClass string
	App       string
}

// Resolved is an image found in the registry and accepted by Resolve.
type Resolved struct {
	// Digest is the image manifest's digest: the cache key, and what a signature covers.
	Digest name.Digest
	// Manifest is the image manifest.
	Manifest *v1.Manifest
}

// Bytes is the sum of the layer sizes.
func (r *Resolved) Bytes() int64 {
	var n int64
	for _, l := range r.Manifest.Layers {
		n += l.Size
	}
	return n
}

// Resolve fetches the manifest ref names and checks, without fetching a blob, that it is a
// crwrap checkpoint of the wanted classes and, with a Verifier, that it is trusted.
func Resolve(ctx context.Context, ref name.Reference, want Want, opts ...Option) (*Resolved, error) {
	o := makeOptions(ctx, opts)
	desc, err := remote.Get(ref, o.remote...)
	if err != nil {
		return nil, classify("get "+ref.String(), err)
	}
	if desc.MediaType != types.OCIManifestSchema1 && desc.MediaType != types.DockerManifestSchema2 {
		return nil, fmt.Errorf("get %s: %w: media type %s", ref, ErrFormat, desc.MediaType)
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w: %v", ref, ErrFormat, err)
	}
	a := m.Annotations
	switch {
	case a[AnnotationEngine] != Engine:
		return nil, fmt.Errorf("get %s: %w: no %s=%s annotation", ref, ErrFormat, AnnotationEngine, Engine)
	case a[AnnotationFormat] != strconv.Itoa(checkpoint.FormatVersion):
		return nil, fmt.Errorf("get %s: %w: format %q, this crwrap reads %d", ref, checkpoint.ErrIncompatible, a[AnnotationFormat], checkpoint.FormatVersion)
	case want.HostClass != "" && a[AnnotationHostClass] != want.HostClass:
		return nil, fmt.Errorf("get %s: %w: host class %s (kernel %s, %s), this node is %s", ref, checkpoint.ErrIncompatible,
			a[AnnotationHostClass], a[AnnotationHostKernel], a[AnnotationHostArch], want.HostClass)
	case want.App != "" && a[AnnotationApp] != want.App:
		return nil, fmt.Errorf("get %s: %w: app %s, this app is %s", ref, checkpoint.ErrForeign, a[AnnotationApp], want.App)
	case len(m.Layers) == 0 || len(m.Layers) > o.maxLayers:
		return nil, fmt.Errorf("get %s: %w: %d layers (1 to %d accepted)", ref, ErrFormat, len(m.Layers), o.maxLayers)
	}
	r := &Resolved{Digest: ref.Context().Digest(desc.Digest.String()), Manifest: m}
	if n := r.Bytes(); n < 0 || n > o.maxBytes {
		return nil, fmt.Errorf("get %s: %w: %d bytes of layers, at most %d accepted", ref, ErrFormat, n, o.maxBytes)
	}
	if o.verifier != nil {
		if err := o.verifier.Verify(ctx, r.Digest, o.remote...); err != nil {
			if errors.Is(err, ErrUntrusted) {
				return nil, fmt.Errorf("verify %s: %w", r.Digest, err)
			}
			return nil, classify("verify "+r.Digest.String(), err) // could not ask: not a trust decision
		}
	}
	return r, nil
}

// Pull fetches the layers of the resolved image into dir (an empty directory the caller
// removes should Pull fail), several at once, checking each blob's size and digest while it
// is written, then checks the result as a checkpoint from elsewhere (sealed crwrap.json,
// every file listed there with its size — and with WithFileDigests its digest —, nothing
// else). It returns the bytes fetched.
func Pull(ctx context.Context, r *Resolved, dir string, opts ...Option) (int64, error) {
	o := makeOptions(ctx, opts)
	if err := checkSpace(dir, r.Bytes()); err != nil {
		return 0, fmt.Errorf("pull %s: %w", r.Digest, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, fmt.Errorf("pull %s: %w", r.Digest, err)
	}
	defer root.Close()
	var fetched atomic.Int64
	var sums *fileSums
	if o.fileDigests {
		sums = &fileSums{m: map[string]string{}}
	}
	var entries atomic.Int64 // tar entries of all layers, bounded as a checkpoint's files are
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.jobs)
	for _, desc := range r.Manifest.Layers {
		g.Go(func() error {
			n, err := pullLayer(gctx, r.Digest.Context(), desc, root, sums, &entries, o)
			fetched.Add(n)
			if err != nil {
				return classify("pull layer "+desc.Digest.String(), err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fetched.Load(), fmt.Errorf("pull %s: %w", r.Digest, err)
	}
	if err := checkTree(dir, sums); err != nil {
		return fetched.Load(), fmt.Errorf("pull %s: %w", r.Digest, err)
	}
	return fetched.Load(), nil
}

func pullLayer(ctx context.Context, repo name.Repository, desc v1.Descriptor, root *os.Root, sums *fileSums, entries *atomic.Int64, o *options) (int64, error) {
	l, err := remote.Layer(repo.Digest(desc.Digest.String()), append(o.remote, remote.WithContext(ctx))...)
	if err != nil {
		return 0, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	// go-containerregistry checks the blob's digest while it is read and fails the read that
	// reaches its end on a mismatch; the size is checked here too.
	if desc.Digest.Algorithm != "sha256" {
		return 0, fmt.Errorf("%w: blob %s: not a sha256 digest", ErrFormat, desc.Digest)
	}
	v := &counting{r: io.LimitReader(rc, desc.Size+1)}
	var tr io.Reader = v
	switch desc.MediaType {
	case types.OCIUncompressedLayer, types.DockerUncompressedLayer:
	default:
		if o.decrypter == nil || !o.decrypter.Handles(desc) {
			return 0, fmt.Errorf("%w: layer media type %s (encrypted for another key, or unknown)", ErrUntrusted, desc.MediaType)
		}
		if tr, err = o.decrypter.DecryptLayer(desc, v); err != nil {
			return 0, fmt.Errorf("%w: decrypt layer: %v", ErrUntrusted, err)
		}
	}
	err = extract(tr, root, sums, entries)
	if err == nil && tr != io.Reader(v) {
		// A decrypted stream checks its MAC and plaintext digest only at its end.
		if _, err = io.Copy(io.Discard, tr); err != nil {
			err = fmt.Errorf("%w: decrypt layer: %v", ErrUntrusted, err)
		}
	}
	if err == nil {
		_, err = io.Copy(io.Discard, v) // the tar's padding; the digest covers it
	}
	if err != nil {
		// Every byte arrived, and the last read failed: the transport's digest check.
		if v.n == desc.Size && ctx.Err() == nil {
			return v.n, fmt.Errorf("%w: blob %s: digest mismatch: %v", checkpoint.ErrDamaged, desc.Digest, err)
		}
		return v.n, err
	}
	if v.n != desc.Size {
		return v.n, fmt.Errorf("%w: blob %s has %d bytes, the manifest says %d", checkpoint.ErrDamaged, desc.Digest, v.n, desc.Size)
	}
	return v.n, nil
}

type counting struct {
	r io.Reader
	n int64
}

func (c *counting) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// fileSums are the sha256 digests of the files written by extract, by path.
type fileSums struct {
	mu sync.Mutex
	m  map[string]string
}

func (f *fileSums) set(p, sum string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[p] = sum
}

// extract unpacks a layer into root: regular files (each created, never overwritten, hashed
// and synced as it is written) and directories, at local paths only, root-only modes, at
// most checkpoint.MaxFiles entries in all layers together. Anything else is refused.
func extract(r io.Reader, root *os.Root, sums *fileSums, entries *atomic.Int64) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: read layer: %v", checkpoint.ErrDamaged, err)
		}
		if entries.Add(1) > checkpoint.MaxFiles {
			return fmt.Errorf("%w: more than %d entries in the layers", ErrFormat, checkpoint.MaxFiles)
		}
		if len(h.Name) > checkpoint.MaxPathBytes {
			return fmt.Errorf("%w: a layer entry's name has %d bytes, at most %d", ErrFormat, len(h.Name), checkpoint.MaxPathBytes)
		}
		p := path.Clean(h.Name)
		if !filepath.IsLocal(p) {
			return fmt.Errorf("%w: layer entry %q is not a local path", ErrFormat, h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(p, 0o700); err != nil {
				return fmt.Errorf("create %s: %w", p, err)
			}
		case tar.TypeReg:
			if d := path.Dir(p); d != "." {
				if err := root.MkdirAll(d, 0o700); err != nil {
					return fmt.Errorf("create %s: %w", d, err)
				}
			}
			f, err := root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				if errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("%w: %s is in two layers", ErrFormat, p)
				}
				return fmt.Errorf("create %s: %w", p, err)
			}
			var w io.Writer = f
			sum := sha256.New()
			if sums != nil {
				w = io.MultiWriter(f, sum)
			}
			n, err := io.Copy(w, tr)
			if err == nil {
				err = f.Sync() // here, in parallel with the other layers, not in one pass at the end
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", p, err)
			}
			if n != h.Size {
				return fmt.Errorf("%w: %s: %d of %d bytes", checkpoint.ErrDamaged, p, n, h.Size)
			}
			if sums != nil {
				sums.set(p, hex.EncodeToString(sum.Sum(nil)))
			}
		default:
			return fmt.Errorf("%w: layer entry %q is neither a file nor a directory", ErrFormat, h.Name)
		}
	}
}

// checkTree checks a pulled directory as any checkpoint made elsewhere is checked
// (checkpoint.Open: crwrap.json sealed, only listed files, each with its size) and, with
// sums, every listed file's content against crwrap.json with the digests taken while it was
// written (the same check as checkpoint.Open with digests, without reading everything again).
func checkTree(dir string, sums *fileSums) error {
	r, err := checkpoint.Open(dir, false)
	if err != nil {
		return err
	}
	defer r.Close()
	if sums == nil {
		return nil
	}
	return r.CheckDigests(sums.m)
}

// checkSpace refuses a pull that cannot fit on dir's file system, before fetching a byte.
func checkSpace(dir string, need int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil // unknown: the write fails if it must
	}
	if free := int64(st.Bavail) * int64(st.Bsize); free < need {
		return fmt.Errorf("%w: %d bytes needed, %d free on %s", unix.ENOSPC, need, free, dir)
	}
	return nil
}
