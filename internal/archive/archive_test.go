package archive

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/crwrap/crwrap/internal/checkpoint"
	"github.com/crwrap/crwrap/internal/rootfs"
)

// makeCheckpoint writes a small checkpoint directory with a crwrap.json listing its files.
func makeCheckpoint(t *testing.T, dir string) {
	t.Helper()
	files := map[string]string{
		"checkpoint/pstree.img":    "pstree",
		"checkpoint/pages-1.img":   strings.Repeat("p", 8192),
		"checkpoint/inventory.img": "inv",
		"stats-dump":               "stats",
		"spec.dump":                `{"ociVersion":"1.0.2","annotations":{"io.container.manager":"crwrap"}}`,
	}
	m := checkpoint.Manifest{FormatVersion: checkpoint.FormatVersion, Name: "app", Created: time.Unix(1700000000, 0).UTC()}
	if err := os.MkdirAll(filepath.Join(dir, "checkpoint"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := (checkpoint.Draft{Dir: dir}).WriteConfigDump(checkpoint.ConfigDump(&m, "example.com/app:1", time.Time{})); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "config.dump"))
	files["config.dump"] = string(b)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(files[n]), 0o600); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(files[n]))
		m.Files = append(m.Files, checkpoint.File{Path: n, Size: int64(len(files[n])), SHA256: hex.EncodeToString(sum[:])})
	}
	mb, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, checkpoint.ManifestFile), mb, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := checkpoint.SealManifest(dir); err != nil {
		t.Fatal(err)
	}
}

// tree lists a directory as relative path → mode and content, for comparisons.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		v := fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(b)
		}
		out[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestExportImportRoundTrip(t *testing.T) {
	for _, c := range []Compression{CompressionNone, CompressionZstd, CompressionGzip} {
		t.Run(string(c), func(t *testing.T) {
			base := t.TempDir()
			// The published name is a symlink to a versioned directory.
			src := filepath.Join(base, "v1")
			makeCheckpoint(t, src)
			if err := os.Symlink("v1", filepath.Join(base, "app")); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := Export(filepath.Join(base, "app"), &buf, ExportOptions{Compression: c}); err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(base, "imported", "app")
			if err := Import(&buf, dst, ImportOptions{}); err != nil {
				t.Fatal(err)
			}
			want, got := tree(t, src), tree(t, dst)
			if len(want) != len(got) {
				t.Fatalf("imported %d entries, want %d:\n%v", len(got), len(want), got)
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s: got %.40q, want %.40q", k, got[k], v)
				}
			}
			leftovers, _ := filepath.Glob(filepath.Join(base, "imported", ".*"))
			if len(leftovers) != 0 {
				t.Errorf("left behind: %v", leftovers)
			}
		})
	}
}

func TestExportEntryNames(t *testing.T) {
	dir := t.TempDir()
	makeCheckpoint(t, dir)
	var buf bytes.Buffer
	if err := Export(dir, &buf, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: owner %d:%d", h.Name, h.Uid, h.Gid)
		}
		names = append(names, h.Name)
	}
	want := "checkpoint/ checkpoint/inventory.img checkpoint/pages-1.img checkpoint/pstree.img config.dump crwrap.json crwrap.json.sha256 spec.dump stats-dump"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("entries:\n got %s\nwant %s", got, want)
	}
}

func TestExportRefusesNonCheckpoint(t *testing.T) {
	dir := t.TempDir()
	makeCheckpoint(t, dir)
	if err := os.Remove(filepath.Join(dir, "config.dump")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "x.tar")
	err := ExportFile(dir, out, ExportOptions{})
	if !errors.Is(err, ErrNotCheckpoint) {
		t.Fatalf("got %v, want ErrNotCheckpoint", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
}

func TestExportRefusesEscapingSymlink(t *testing.T) {
	dir := t.TempDir()
	makeCheckpoint(t, dir)
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "checkpoint", "x")); err != nil {
		t.Fatal(err)
	}
	if err := Export(dir, io.Discard, ExportOptions{}); err == nil || !strings.Contains(err.Error(), "leaves the checkpoint") {
		t.Fatalf("got %v", err)
	}
}

func TestExportFile(t *testing.T) {
	dir := t.TempDir()
	makeCheckpoint(t, dir)
	outDir := t.TempDir()
	out := filepath.Join(outDir, "cp.tar.zst")
	if err := ExportFile(dir, out, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode())
	}
	head := make([]byte, 4)
	f, _ := os.Open(out)
	_, _ = io.ReadFull(f, head)
	f.Close()
	if !bytes.Equal(head, magicZstd) {
		t.Errorf("%s is not zstd: % x", out, head)
	}
	if ents, _ := os.ReadDir(outDir); len(ents) != 1 {
		t.Errorf("want only the archive, got %v", ents)
	}
	if err := ImportFile(out, filepath.Join(outDir, "back"), ImportOptions{}); err != nil {
		t.Fatal(err)
	}
}

// entry is one tar entry of a hand-made archive.
type entry struct {
	name, link string
	typ        byte
	mode       int64
	body       string
}

func makeTar(t *testing.T, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0)}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var okEntries = []entry{
	{name: "checkpoint/", typ: tar.TypeDir, mode: 0o755},
	{name: "checkpoint/pstree.img", typ: tar.TypeReg, body: "x"},
	{name: "config.dump", typ: tar.TypeReg, body: "{}"},
}

func TestImportRefusesHostileArchives(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []entry
		want    string
	}{
		{"absolute path", []entry{{name: "/etc/cron.d/x", typ: tar.TypeReg, body: "x"}}, "absolute path"},
		{"dot-dot", []entry{{name: "../x", typ: tar.TypeReg, body: "x"}}, "path with .."},
		{"inner dot-dot", []entry{{name: "checkpoint/../../x", typ: tar.TypeReg, body: "x"}}, "path with .."},
		{"symlink to /etc", []entry{{name: "checkpoint/etc", link: "/etc", typ: tar.TypeSymlink}}, "leaves the checkpoint"},
		{"symlink up", []entry{{name: "checkpoint/up", link: "../../..", typ: tar.TypeSymlink}}, "leaves the checkpoint"},
		{"symlink escaping through a symlink", []entry{
			{name: "checkpoint/b", link: ".", typ: tar.TypeSymlink},
			{name: "checkpoint/a", link: "b/../../x", typ: tar.TypeSymlink},
		}, "resolves outside"},
		{"write through a symlink", []entry{
			{name: "checkpoint/d", link: ".", typ: tar.TypeSymlink},
			{name: "checkpoint/d/pstree.img", typ: tar.TypeReg, body: "y"},
		}, "below the symlink"},
		{"hardlink out", []entry{{name: "checkpoint/passwd", link: "/etc/passwd", typ: tar.TypeLink}}, "hardlink"},
		{"hardlink up", []entry{{name: "checkpoint/passwd", link: "../../etc/passwd", typ: tar.TypeLink}}, "hardlink"},
		{"hardlink to a name not in the archive", []entry{{name: "checkpoint/l", link: "checkpoint/later", typ: tar.TypeLink}}, "not a regular file earlier"},
		{"hardlink to a directory", []entry{{name: "checkpoint/l", link: "checkpoint", typ: tar.TypeLink}}, "not a regular file earlier"},
		{"char device", []entry{{name: "checkpoint/null", typ: tar.TypeChar}}, "device node"},
		{"block device", []entry{{name: "checkpoint/sda", typ: tar.TypeBlock}}, "device node"},
		{"fifo", []entry{{name: "checkpoint/fifo", typ: tar.TypeFifo}}, "fifo"},
		{"duplicate", []entry{{name: "checkpoint/pstree.img", typ: tar.TypeReg, body: "evil"}}, "duplicate entry"},
		{"duplicate after cleaning", []entry{{name: "./checkpoint//pstree.img", typ: tar.TypeReg, body: "evil"}}, "duplicate entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "cp")
			data := makeTar(t, append(append([]entry{}, okEntries...), tc.entries...))
			err := Import(bytes.NewReader(data), dst, ImportOptions{})
			if !errors.Is(err, ErrUnsafeEntry) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrUnsafeEntry mentioning %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Errorf("left behind: %v", ents)
			}
		})
	}
}

func TestImportModes(t *testing.T) {
	data := makeTar(t, []entry{
		{name: "checkpoint/", typ: tar.TypeDir, mode: 0o1777},
		{name: "checkpoint/suid", typ: tar.TypeReg, mode: 0o4755, body: "x"},
		{name: "checkpoint/pages-1.img", typ: tar.TypeReg, mode: 0o666, body: "x"},
		{name: "checkpoint/link", typ: tar.TypeLink, link: "checkpoint/pages-1.img"},
		{name: "checkpoint/sym", typ: tar.TypeSymlink, link: "pages-1.img"},
		{name: "implicit/dir/file", typ: tar.TypeReg, mode: 0o644, body: "x"},
	})
	dst := filepath.Join(t.TempDir(), "cp")
	if err := Import(bytes.NewReader(data), dst, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]fs.FileMode{
		"checkpoint":             fs.ModeDir | 0o700,
		"checkpoint/suid":        0o600,
		"checkpoint/pages-1.img": 0o600,
		"checkpoint/link":        0o600,
		"implicit":               fs.ModeDir | 0o700,
		"implicit/dir":           fs.ModeDir | 0o700,
		"implicit/dir/file":      0o600,
	} {
		fi, err := os.Lstat(filepath.Join(dst, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
	}
	fi, _ := os.Stat(dst)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("checkpoint directory mode %v, want 0700", fi.Mode())
	}
}

func TestImportErrors(t *testing.T) {
	t.Run("not a checkpoint", func(t *testing.T) {
		parent := t.TempDir()
		data := makeTar(t, []entry{{name: "config.dump", typ: tar.TypeReg, body: "{}"}})
		if err := Import(bytes.NewReader(data), filepath.Join(parent, "cp"), ImportOptions{}); !errors.Is(err, ErrNotCheckpoint) {
			t.Fatalf("got %v", err)
		}
		if ents, _ := os.ReadDir(parent); len(ents) != 0 {
			t.Errorf("left behind: %v", ents)
		}
	})
	t.Run("destination exists", func(t *testing.T) {
		dst := t.TempDir()
		if err := Import(bytes.NewReader(makeTar(t, okEntries)), dst, ImportOptions{}); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		src := t.TempDir()
		makeCheckpoint(t, src)
		var buf bytes.Buffer
		if err := Export(src, &buf, ExportOptions{Compression: CompressionZstd}); err != nil {
			t.Fatal(err)
		}
		parent := t.TempDir()
		if err := Import(bytes.NewReader(buf.Bytes()[:buf.Len()/2]), filepath.Join(parent, "cp"), ImportOptions{}); err == nil {
			t.Fatal("a truncated archive was imported")
		}
		if ents, _ := os.ReadDir(parent); len(ents) != 0 {
			t.Errorf("left behind: %v", ents)
		}
	})
	t.Run("xz", func(t *testing.T) {
		err := Import(bytes.NewReader(append(append([]byte{}, magicXz...), 0, 0)), filepath.Join(t.TempDir(), "cp"), ImportOptions{})
		if err == nil || !strings.Contains(err.Error(), "not supported") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("manifest mismatch", func(t *testing.T) {
		src := t.TempDir()
		makeCheckpoint(t, src)
		if err := os.WriteFile(filepath.Join(src, "checkpoint", "pages-1.img"), []byte(strings.Repeat("q", 8192)), 0o600); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := Export(src, &buf, ExportOptions{}); err != nil {
			t.Fatal(err)
		}
		data := buf.Bytes()
		parent := t.TempDir()
		if err := Import(bytes.NewReader(data), filepath.Join(parent, "cp"), ImportOptions{}); !errors.Is(err, ErrDamaged) {
			t.Fatalf("got %v, want ErrDamaged", err)
		}
		if ents, _ := os.ReadDir(parent); len(ents) != 0 {
			t.Errorf("left behind: %v", ents)
		}
		if err := Import(bytes.NewReader(data), filepath.Join(parent, "cp"), ImportOptions{NoVerify: true}); err != nil {
			t.Fatalf("NoVerify: %v", err)
		}
	})
}

func TestArchiveName(t *testing.T) {
	ts := time.Date(2024, 2, 29, 18, 28, 17, 0, time.UTC)
	got := ArchiveName("counter-7d9f-x2", "default", "counter", ts)
	want := "checkpoint-counter-7d9f-x2_default-counter-2024-02-29T18:28:17Z.tar"
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestCompressionNames(t *testing.T) {
	for name, want := range map[string]Compression{
		"a.tar": CompressionNone, "a.tar.zst": CompressionZstd, "a.tar.gz": CompressionGzip, "a.tgz": CompressionGzip,
	} {
		if got := CompressionForName(name); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	if _, err := ParseCompression("lz4"); err == nil {
		t.Error("lz4 accepted")
	}
}

// An archive is refused when its inner rootfs-diff.tar or deleted.files would be refused by a
// restore: the check happens at import, not on some later node.
func TestImportChecksInnerDiff(t *testing.T) {
	for _, tc := range []struct {
		name  string
		inner []entry
		del   string
	}{
		{"symlink then a file through it", []entry{{name: "etc", link: "/etc", typ: tar.TypeSymlink}, {name: "etc/cron.d/x", typ: tar.TypeReg, body: "x"}}, ""},
		{"dot-dot", []entry{{name: "../../x", typ: tar.TypeReg, body: "x"}}, ""},
		{"device", []entry{{name: "dev/mem", typ: tar.TypeChar}}, ""},
		{"setuid", []entry{{name: "bin/su", typ: tar.TypeReg, mode: 0o4755, body: "x"}}, ""},
		{"hardlink", []entry{{name: "a", typ: tar.TypeReg, body: "x"}, {name: "b", link: "a", typ: tar.TypeLink}}, ""},
		{"deleted dot-dot", nil, `["/../../etc/passwd"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entries := append([]entry{}, okEntries...)
			if tc.inner != nil {
				entries = append(entries, entry{name: "rootfs-diff.tar", typ: tar.TypeReg, body: string(makeTar(t, tc.inner))})
			}
			if tc.del != "" {
				entries = append(entries, entry{name: "deleted.files", typ: tar.TypeReg, body: tc.del})
			}
			parent := t.TempDir()
			for _, opts := range []ImportOptions{{}, {NoVerify: true}} {
				err := Import(bytes.NewReader(makeTar(t, entries)), filepath.Join(parent, "cp"), opts)
				if !errors.Is(err, ErrUnsafeEntry) || !errors.Is(err, rootfs.ErrUnsafeDiff) {
					t.Fatalf("%+v: got %v, want ErrUnsafeEntry and rootfs.ErrUnsafeDiff", opts, err)
				}
				if ents, _ := os.ReadDir(parent); len(ents) != 0 {
					t.Errorf("left behind: %v", ents)
				}
			}
		})
	}
}

// A zstd frame asking for a 256 MiB window (the library would allow 512 MiB) is refused before
// any memory is allocated for it.
func TestImportZstdWindowBounded(t *testing.T) {
	// Magic, frame header descriptor 0 (no single segment), window descriptor exponent 18
	// (2^28), then one empty last raw block.
	frame := append(append([]byte{}, magicZstd...), 0x00, 18<<3, 0x01, 0x00, 0x00)
	parent := t.TempDir()
	err := Import(bytes.NewReader(frame), filepath.Join(parent, "cp"), ImportOptions{})
	if err == nil || !strings.Contains(err.Error(), "window") {
		t.Fatalf("got %v, want a window size error", err)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
}

// crwrap.json changed after it was sealed: ErrDamaged, even with every listed file intact.
func TestImportRefusesTamperedManifest(t *testing.T) {
	src := t.TempDir()
	makeCheckpoint(t, src)
	b, _ := os.ReadFile(filepath.Join(src, checkpoint.ManifestFile))
	b = bytes.Replace(b, []byte(`"name":"app"`), []byte(`"name":"evil"`), 1)
	if err := os.WriteFile(filepath.Join(src, checkpoint.ManifestFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Export(src, &buf, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	if err := Import(bytes.NewReader(buf.Bytes()), filepath.Join(parent, "cp"), ImportOptions{}); !errors.Is(err, ErrDamaged) || !errors.Is(err, checkpoint.ErrDamaged) {
		t.Fatalf("got %v, want ErrDamaged", err)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
}

// More entries than the limit: refused, nothing left (the limit is lowered here).
func TestImportEntryLimit(t *testing.T) {
	defer func(n int) { importEntryLimit = n }(importEntryLimit)
	importEntryLimit = len(okEntries) + 2
	entries := append(append([]entry{}, okEntries...), entry{name: "checkpoint/a", typ: tar.TypeDir}, entry{name: "checkpoint/b", typ: tar.TypeDir})
	parent := t.TempDir()
	if err := Import(bytes.NewReader(makeTar(t, entries)), filepath.Join(parent, "cp"), ImportOptions{}); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	entries = append(entries, entry{name: "checkpoint/c", typ: tar.TypeDir})
	err := Import(bytes.NewReader(makeTar(t, entries)), filepath.Join(parent, "cp2"), ImportOptions{})
	if !errors.Is(err, ErrUnsafeEntry) || !strings.Contains(err.Error(), "entries") {
		t.Fatalf("past the limit: %v", err)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 1 {
		t.Errorf("left behind: %v", ents)
	}
}
