package registry

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/crwrap/crwrap/internal/checkpoint"
)

type entry struct {
	name string
	typ  byte
	body string
	link string
}

func tarOf(t *testing.T, es ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			_, _ = tw.Write([]byte(e.body))
		}
	}
	_ = tw.Close()
	return b.Bytes()
}

// A layer is untrusted input: only regular files and directories at local paths, each file
// once, are unpacked, and nothing lands outside the directory.
func TestExtractRefuses(t *testing.T) {
	tests := []struct {
		name    string
		layers  [][]entry
		wantErr error
	}{
		{"ok", [][]entry{{{name: "checkpoint/", typ: tar.TypeDir}, {name: "checkpoint/core-1.img", typ: tar.TypeReg, body: "x"}}}, nil},
		{"dot dot", [][]entry{{{name: "../escape", typ: tar.TypeReg, body: "x"}}}, ErrFormat},
		{"absolute", [][]entry{{{name: "/etc/escape", typ: tar.TypeReg, body: "x"}}}, ErrFormat},
		{"symlink", [][]entry{{{name: "checkpoint", typ: tar.TypeSymlink, link: "/etc"}}}, ErrFormat},
		{"hardlink", [][]entry{{{name: "a", typ: tar.TypeLink, link: "/etc/passwd"}}}, ErrFormat},
		{"fifo", [][]entry{{{name: "f", typ: tar.TypeFifo}}}, ErrFormat},
		{"device", [][]entry{{{name: "d", typ: tar.TypeChar}}}, ErrFormat},
		{"file in two layers", [][]entry{{{name: "spec.dump", typ: tar.TypeReg, body: "a"}}, {{name: "spec.dump", typ: tar.TypeReg, body: "b"}}}, ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "entry")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			root, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			var n atomic.Int64
			for _, l := range tt.layers {
				if err = extract(bytes.NewReader(tarOf(t, l...)), root, nil, &n); err != nil {
					break
				}
			}
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("extract: %v, want %v", err, tt.wantErr)
			}
			if _, err := os.Lstat(filepath.Join(parent, "escape")); err == nil {
				t.Error("a file was written outside the directory")
			}
		})
	}
}

func TestExtractBoundsEntries(t *testing.T) {
	root, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var n atomic.Int64
	n.Store(checkpoint.MaxFiles)
	err = extract(bytes.NewReader(tarOf(t, entry{name: "one-too-many", typ: tar.TypeReg, body: "x"})), root, nil, &n)
	if !errors.Is(err, ErrFormat) {
		t.Fatalf("entry %d: %v, want ErrFormat", checkpoint.MaxFiles+1, err)
	}
}
