package ops

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crwrap/crwrap/internal/checkpoint"
	"github.com/crwrap/crwrap/test/harness"
)

type archiveFile struct {
	name, link string
	typ        byte
	mode       int64
	body       string
}

func tarOf(t *testing.T, files []archiveFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Linkname: f.link, Typeflag: f.typ, Mode: f.mode, ModTime: time.Unix(1700000000, 0)}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if f.typ == tar.TypeReg {
			h.Size = int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(f.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// checkpointArchive is a small checkpoint archive with a sealed crwrap.json listing its
// files; extra files are added (and listed), then edit may change the manifest's bytes after
// it was sealed.
func checkpointArchive(t *testing.T, extra []archiveFile, edit func(manifest []byte) []byte) []byte {
	t.Helper()
	files := append([]archiveFile{
		{name: "checkpoint/", typ: tar.TypeDir, mode: 0o700},
		{name: "checkpoint/inventory.img", typ: tar.TypeReg, body: "inventory"},
		{name: "spec.dump", typ: tar.TypeReg, body: "{}"},
		{name: "config.dump", typ: tar.TypeReg, body: "{}"},
	}, extra...)
	m := checkpoint.Manifest{FormatVersion: checkpoint.FormatVersion, Name: "app"}
	for _, f := range files {
		if f.typ == tar.TypeReg {
			sum := sha256.Sum256([]byte(f.body))
			m.Files = append(m.Files, checkpoint.File{Path: f.name, Size: int64(len(f.body)), SHA256: hex.EncodeToString(sum[:])})
		}
	}
	mb, _ := json.Marshal(&m)
	sum := sha256.Sum256(mb)
	if edit != nil {
		mb = edit(mb)
	}
	files = append(files,
		archiveFile{name: checkpoint.ManifestFile, typ: tar.TypeReg, body: string(mb)},
		archiveFile{name: checkpoint.ManifestDigestFile, typ: tar.TypeReg, body: hex.EncodeToString(sum[:]) + "  " + checkpoint.ManifestFile + "\n"})
	return tarOf(t, files)
}

func diffFile(t *testing.T, entries []archiveFile) archiveFile {
	return archiveFile{name: checkpoint.RootfsDiffFile, typ: tar.TypeReg, body: string(tarOf(t, entries))}
}

// `crwrap import` checks what a restore would refuse, inside the archive too, and bounds what
// it reads: each crafted archive is refused with one line, exit 1, and nothing left behind.
// (The entry count bound is tested in internal/archive with a lowered limit: 100,000 entries
// take a minute to unpack on a busy machine.)
func TestImportRefusesHostileCheckpoints(t *testing.T) {
	harness.RequireBuild(t)
	for _, c := range []struct {
		name string
		data func(t *testing.T) []byte
		want string
	}{
		{"inner diff: symlink then a file through it", func(t *testing.T) []byte {
			return checkpointArchive(t, []archiveFile{diffFile(t, []archiveFile{{name: "etc", typ: tar.TypeSymlink, link: "/etc"}, {name: "etc/cron.d/evil", typ: tar.TypeReg, body: "x"}})}, nil)
		}, "below the symlink"},
		{"inner diff: dot-dot", func(t *testing.T) []byte {
			return checkpointArchive(t, []archiveFile{diffFile(t, []archiveFile{{name: "../../../etc/evil", typ: tar.TypeReg, body: "x"}})}, nil)
		}, "leaves the root filesystem"},
		{"inner diff: device node", func(t *testing.T) []byte {
			return checkpointArchive(t, []archiveFile{diffFile(t, []archiveFile{{name: "dev/mem", typ: tar.TypeChar}})}, nil)
		}, "device node"},
		{"inner diff: setuid file", func(t *testing.T) []byte {
			return checkpointArchive(t, []archiveFile{diffFile(t, []archiveFile{{name: "bin/su", typ: tar.TypeReg, mode: 0o4755, body: "x"}})}, nil)
		}, "setuid"},
		{"deleted.files: dot-dot", func(t *testing.T) []byte {
			return checkpointArchive(t, []archiveFile{{name: checkpoint.DeletedFilesFile, typ: tar.TypeReg, body: `["/../../etc/passwd"]`}}, nil)
		}, "deleted.files: path"},
		{"manifest tampered", func(t *testing.T) []byte {
			return checkpointArchive(t, nil, func(b []byte) []byte { return bytes.Replace(b, []byte(`"name":"app"`), []byte(`"name":"evil"`), 1) })
		}, "does not match"},
		{"manifest lists a path out", func(t *testing.T) []byte {
			var files []archiveFile
			m := checkpoint.Manifest{FormatVersion: checkpoint.FormatVersion, Files: []checkpoint.File{{Path: "../../etc/passwd", Size: 1, SHA256: strings.Repeat("0", 64)}}}
			mb, _ := json.Marshal(&m)
			sum := sha256.Sum256(mb)
			files = append(files, archiveFile{name: "checkpoint/", typ: tar.TypeDir}, archiveFile{name: checkpoint.ManifestFile, typ: tar.TypeReg, body: string(mb)},
				archiveFile{name: checkpoint.ManifestDigestFile, typ: tar.TypeReg, body: hex.EncodeToString(sum[:]) + "  crwrap.json\n"})
			return tarOf(t, files)
		}, "outside the checkpoint"},
		{"zstd window of 256 MiB", func(t *testing.T) []byte {
			return []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 18 << 3, 0x01, 0x00, 0x00}
		}, "window size exceeded"},
	} {
		t.Run(c.name, func(t *testing.T) {
			work := t.TempDir()
			file := filepath.Join(work, "hostile.tar")
			if err := os.WriteFile(file, c.data(t), 0o600); err != nil {
				t.Fatal(err)
			}
			parent := filepath.Join(work, "cr", "apps")
			dest := filepath.Join(parent, "app")
			p, code := harness.Run(t, harness.Options{}, 2*time.Minute, "import", file, dest)
			if code != 1 {
				t.Errorf("import exited %d, want 1\nstderr:\n%s", code, p.Stderr)
			}
			// The test's directory names say what is wrong too: only the rest counts.
			lines := strings.Split(strings.TrimSpace(strings.ReplaceAll(p.Stderr.String(), work, "")), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], c.want) {
				t.Errorf("import's error is not one line saying %q:\n%s", c.want, p.Stderr)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Errorf("import left %v behind in %s", ents, parent)
			}
		})
	}
}

// A real checkpoint, exported and imported into another checkpoint root, restores from there:
// the sealed manifest travels with it and the import's checks accept what crwrap writes
// (including a rootfs-diff.tar with a FIFO and a file).
func TestExportImportRestore(t *testing.T) {
	fifo := "/var/tmp/" + fmt.Sprintf("crwrap-ei-%d", time.Now().UnixNano())
	file0 := fifo + ".txt"
	t.Cleanup(func() { os.Remove(fifo); os.Remove(file0) })
	a := newApp(t, "-warmup", "300ms", "-heap", "8", "-fifo", fifo, "-write", file0+"=x")
	a.checkpoint()
	want := a.checkpointedValue()
	file := filepath.Join(t.TempDir(), "cp.tar.zst")
	if p, code := harness.Run(t, harness.Options{}, time.Minute, "export", a.path(), "-o", file); code != 0 {
		t.Fatalf("export exited %d\nstderr:\n%s", code, p.Stderr)
	}
	b := *a
	b.root = t.TempDir()
	if p, code := harness.Run(t, harness.Options{}, time.Minute, "import", file, b.path()); code != 0 {
		t.Fatalf("import exited %d\nstderr:\n%s", code, p.Stderr)
	}
	if _, err := os.Stat(filepath.Join(b.path(), checkpoint.ManifestDigestFile)); err != nil {
		t.Errorf("the imported checkpoint has no %s: %v", checkpoint.ManifestDigestFile, err)
	}
	p := b.restore()
	harness.WaitHTTP(t, p, b.url("/ready"), time.Minute)
	harness.WaitLog(t, p, "phase", "ready", time.Minute)
	harness.AssertRestored(t, p)
	if got := b.get("/value"); got != want {
		t.Errorf("/value = %q, want the checkpointed %q", got, want)
	}
	if got := b.get("/fifo?msg=ok"); got != "ok" {
		t.Errorf("/fifo = %q", got)
	}
	harness.Stop(t, p)
}
