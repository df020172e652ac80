package registry

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/crwrap/crwrap/internal/checkpoint"
)

// fileLayer is an uncompressed tar layer of some files of a checkpoint directory, built on
// demand (so a 1 GiB page image is never held in memory) and the same bytes every time:
// fixed owner, mode and time, directories first. While the tar is produced each file is
// hashed and compared with the digest crwrap.json records, so a checkpoint damaged on the
// node is never pushed.
type fileLayer struct {
	r      *checkpoint.Reader
	files  []checkpoint.File
	digest v1.Hash
	size   int64
	// table is the chunk table of a layer of one page image (nil otherwise): computed with
	// the digest, published as annotations (chunks.go).
	table *chunkTable
}

// epoch is the modification time of every tar entry (the checkpoint's times are in crwrap.json).
var epoch = time.Unix(0, 0).UTC()

func newFileLayer(r *checkpoint.Reader, files []checkpoint.File) (*fileLayer, error) {
	l := &fileLayer{r: r, files: files}
	if len(files) == 1 && isPages(files[0].Path) {
		l.table = &chunkTable{chunk: ChunkSize, size: files[0].Size}
	}
	h := sha256.New()
	n, err := l.writeTo(h, true)
	if err != nil {
		return nil, err
	}
	l.size = n
	l.digest = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	return l, nil
}

// dirs are the parent directories of files, each once, parents first.
func dirs(files []checkpoint.File) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range files {
		for d := path.Dir(f.Path); d != "." && d != "/"; d = path.Dir(d) {
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	sort.Strings(out) // a parent sorts before its children
	return out
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeTo writes the tar to w; with check every file is hashed and compared with crwrap.json
// (done once, when the layer's digest is computed: the digest covers the bytes after that).
func (l *fileLayer) writeTo(w io.Writer, check bool) (int64, error) {
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	for _, d := range dirs(l.files) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o700, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return 0, fmt.Errorf("write layer: %w", err)
		}
	}
	for _, f := range l.files {
		if err := l.writeFile(tw, cw, f, check); err != nil {
			return 0, err
		}
	}
	if err := tw.Close(); err != nil {
		return 0, fmt.Errorf("write layer: %w", err)
	}
	return cw.n, nil
}

func (l *fileLayer) writeFile(tw *tar.Writer, cw *countWriter, f checkpoint.File, check bool) error {
	fd, err := l.r.OpenFile(f.Path) // through the held, verified directory
	if err != nil {
		return fmt.Errorf("%w: %v", checkpoint.ErrDamaged, err)
	}
	defer fd.Close()
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.Path, Mode: 0o600, Size: f.Size, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return fmt.Errorf("write layer: %w", err)
	}
	h := sha256.New()
	var w io.Writer = tw
	var chunks *chunkHasher
	if check {
		w = io.MultiWriter(tw, h)
		if l.table != nil {
			// The header is written through: the file's bytes start here.
			l.table.offset = cw.n
			chunks = newChunkHasher(l.table.chunk)
			w = io.MultiWriter(tw, h, chunks)
		}
	}
	n, err := io.Copy(w, io.LimitReader(fd, f.Size))
	if err != nil {
		return fmt.Errorf("read %s: %w", f.Path, err)
	}
	if n != f.Size {
		return fmt.Errorf("%w: %s has %d bytes, %d were written", checkpoint.ErrDamaged, f.Path, n, f.Size)
	}
	if check && f.SHA256 != "" && hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
		return fmt.Errorf("%w: %s content changed", checkpoint.ErrDamaged, f.Path)
	}
	if chunks != nil {
		l.table.sums = chunks.finish()
	}
	return nil
}

func (l *fileLayer) reader() io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		_, err := l.writeTo(pw, false)
		pw.CloseWithError(err)
	}()
	return pr
}

// Digest and DiffID are the same: the layer is not compressed.
func (l *fileLayer) Digest() (v1.Hash, error) { return l.digest, nil }

// DiffID is the digest of the uncompressed tar.
func (l *fileLayer) DiffID() (v1.Hash, error) { return l.digest, nil }

// Compressed returns the layer's bytes as stored in the registry.
func (l *fileLayer) Compressed() (io.ReadCloser, error) { return l.reader(), nil }

// Uncompressed returns the tar.
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return l.reader(), nil }

// Size is the size of the tar.
func (l *fileLayer) Size() (int64, error) { return l.size, nil }

// MediaType is an uncompressed OCI layer.
func (l *fileLayer) MediaType() (types.MediaType, error) { return types.OCIUncompressedLayer, nil }
