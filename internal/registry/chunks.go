package registry

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"strconv"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Annotations of a page-image layer's descriptor that let a node fetch the file by range and
// check every chunk before using a byte of it (see PullLazy). They are in the image manifest,
// so its digest — what a signature signs — covers them; a reader that does not know them
// pulls the layer whole, as before.
const (
	// AnnotationFileOffset is where the file's bytes start in the (uncompressed tar) blob.
	AnnotationFileOffset = "org.crwrap.file.offset"
	// AnnotationFileSize is the file's size.
	AnnotationFileSize = "org.crwrap.file.size"
	// AnnotationChunkSize is the size of the chunks the file is digested in (the last may be shorter).
	AnnotationChunkSize = "org.crwrap.file.chunk-size"
	// AnnotationChunks is the standard base64 of the concatenated sha256 digests of the chunks.
	AnnotationChunks = "org.crwrap.file.chunks-sha256"
)

// ChunkSize is the chunk size crwrap pushes: one range request of about this size costs a
// registry little more than one of a page (FACTS: ~3 ms up to 2 MiB).
const ChunkSize = 1 << 20

// Bounds on what PullLazy accepts of the annotations.
const (
	minChunkSize = 4 << 10
	maxChunkSize = 16 << 20
)

// chunkHasher digests what is written to it in chunks of size bytes.
type chunkHasher struct {
	size int64
	h    hash.Hash
	n    int64 // bytes in the current chunk
	sums []byte
}

func newChunkHasher(size int64) *chunkHasher {
	return &chunkHasher{size: size, h: sha256.New()}
}

func (c *chunkHasher) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		k := min(int64(len(p)), c.size-c.n)
		c.h.Write(p[:k])
		c.n += k
		p = p[k:]
		if c.n == c.size {
			c.sums = c.h.Sum(c.sums)
			c.h.Reset()
			c.n = 0
		}
	}
	return total, nil
}

// finish returns the digests, the last (short) chunk included.
func (c *chunkHasher) finish() []byte {
	if c.n > 0 {
		c.sums = c.h.Sum(c.sums)
		c.h.Reset()
		c.n = 0
	}
	return c.sums
}

// chunkTable is a file's place in its layer blob and its chunk digests.
type chunkTable struct {
	offset, size, chunk int64
	sums                []byte // sha256 of each chunk, concatenated
}

func (t *chunkTable) annotations() map[string]string {
	return map[string]string{
		AnnotationFileOffset: strconv.FormatInt(t.offset, 10),
		AnnotationFileSize:   strconv.FormatInt(t.size, 10),
		AnnotationChunkSize:  strconv.FormatInt(t.chunk, 10),
		AnnotationChunks:     base64.StdEncoding.EncodeToString(t.sums),
	}
}

func (t *chunkTable) chunks() int64 { return (t.size + t.chunk - 1) / t.chunk }

// sum is the digest of chunk i.
func (t *chunkTable) sum(i int64) []byte { return t.sums[i*sha256.Size : (i+1)*sha256.Size] }

// parseChunkTable reads and bounds the annotations of desc; ok is false when it has none.
func parseChunkTable(desc v1.Descriptor) (*chunkTable, bool, error) {
	a := desc.Annotations
	if a[AnnotationChunks] == "" {
		return nil, false, nil
	}
	bad := func(what string) (*chunkTable, bool, error) {
		return nil, true, fmt.Errorf("%w: layer %s: %s", ErrFormat, desc.Digest, what)
	}
	t := &chunkTable{}
	var err error
	if t.offset, err = strconv.ParseInt(a[AnnotationFileOffset], 10, 64); err != nil || t.offset < 0 {
		return bad("bad " + AnnotationFileOffset)
	}
	if t.size, err = strconv.ParseInt(a[AnnotationFileSize], 10, 64); err != nil || t.size < 0 || t.offset+t.size > desc.Size || t.offset+t.size < 0 {
		return bad("bad " + AnnotationFileSize + " (beyond the blob)")
	}
	if t.chunk, err = strconv.ParseInt(a[AnnotationChunkSize], 10, 64); err != nil || t.chunk < minChunkSize || t.chunk > maxChunkSize {
		return bad("bad " + AnnotationChunkSize)
	}
	if t.sums, err = base64.StdEncoding.DecodeString(a[AnnotationChunks]); err != nil || int64(len(t.sums)) != t.chunks()*sha256.Size {
		return bad(AnnotationChunks + " does not hold one sha256 per chunk")
	}
	return t, true, nil
}
