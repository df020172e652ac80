package cr

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/crwrap/crwrap/internal/checkpoint"
	"github.com/crwrap/crwrap/test/harness"
)

// hostileEntry is one entry of a crafted rootfs-diff.tar.
type hostileEntry struct {
	name, link string
	typ        byte
	mode       int64
	body       string
}

func hostileTar(t *testing.T, entries []hostileEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Devmajor: 1, Devminor: 1}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// reseal lists dir's files in its crwrap.json again and seals it, as a forger who can write
// the checkpoint directory would: only the rules, not the digests, can stop what follows.
func reseal(t *testing.T, dir string, edit func(m *checkpoint.Manifest)) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, checkpoint.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	var m checkpoint.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if err := checkpoint.WriteManifest(dir, &m); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&m)
		b, _ = json.Marshal(&m)
		if err := os.WriteFile(filepath.Join(dir, checkpoint.ManifestFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := checkpoint.SealManifest(dir); err != nil {
			t.Fatal(err)
		}
	}
}

// A checkpoint directory is untrusted input. Each case crafts one from a real checkpoint and
// restores it: crwrap falls back to a cold start with reason damaged, and writes nothing
// outside the app's upper layer (the directory the crafted entries aim at stays as it was).
func TestHostileCheckpointFallsBack(t *testing.T) {
	marker := "/var/tmp/" + randomName(t, "crwrap-hostile-")
	t.Cleanup(func() { _ = os.Remove(marker) })
	a := newTestApp(t, "-warmup", "300ms", "-heap", "4", "-write", marker+"=app")
	want := a.mustCheckpoint()
	orig := a.versionDir()

	for _, tc := range []struct {
		name string
		// craft changes the copy dir of the checkpoint; outside is the directory the hostile
		// entries aim at (it holds the file "target").
		craft func(t *testing.T, dir, outside string)
	}{
		{"diff: symlink then a file through it", func(t *testing.T, dir, outside string) {
			writeDiff(t, dir, []hostileEntry{{name: "var/tmp/evil", typ: tar.TypeSymlink, link: outside}, {name: "var/tmp/evil/pwned", typ: tar.TypeReg, body: "x"}})
		}},
		{"diff: dot-dot", func(t *testing.T, dir, outside string) {
			writeDiff(t, dir, []hostileEntry{{name: strings.Repeat("../", 20) + strings.TrimPrefix(outside, "/") + "/pwned", typ: tar.TypeReg, body: "x"}})
		}},
		{"diff: absolute path", func(t *testing.T, dir, outside string) {
			writeDiff(t, dir, []hostileEntry{{name: outside + "/pwned", typ: tar.TypeReg, body: "x"}})
		}},
		{"diff: hardlink out", func(t *testing.T, dir, outside string) {
			writeDiff(t, dir, []hostileEntry{{name: "var/tmp/h", typ: tar.TypeLink, link: outside + "/target"}})
		}},
		{"diff: device node", func(t *testing.T, dir, outside string) {
			writeDiff(t, dir, []hostileEntry{{name: "var/tmp/mem", typ: tar.TypeChar, mode: 0o666}})
		}},
		{"diff: setuid file", func(t *testing.T, dir, outside string) {
			writeDiff(t, dir, []hostileEntry{{name: "var/tmp/su", typ: tar.TypeReg, mode: 0o4755, body: "#!/bin/sh\n"}})
		}},
		{"deleted.files: dot-dot", func(t *testing.T, dir, outside string) {
			write(t, filepath.Join(dir, checkpoint.DeletedFilesFile), `["/`+strings.Repeat("../", 20)+strings.TrimPrefix(outside, "/")+`/wh"]`)
			reseal(t, dir, nil)
		}},
		{"directory: FIFO", func(t *testing.T, dir, outside string) {
			if err := unix.Mkfifo(filepath.Join(dir, checkpoint.ImagesDir, "evil.img"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"directory: image replaced by a symlink", func(t *testing.T, dir, outside string) {
			img := filepath.Join(dir, checkpoint.ImagesDir, "inventory.img")
			copyTo(t, img, filepath.Join(outside, "inventory.img"))
			os.Remove(img)
			if err := os.Symlink(filepath.Join(outside, "inventory.img"), img); err != nil {
				t.Fatal(err)
			}
		}},
		{"directory: images directory replaced by a symlink", func(t *testing.T, dir, outside string) {
			images := filepath.Join(dir, checkpoint.ImagesDir)
			if out, err := exec.Command("cp", "-a", images, filepath.Join(outside, "images")).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v: %s", err, out)
			}
			os.RemoveAll(images)
			if err := os.Symlink(filepath.Join(outside, "images"), images); err != nil {
				t.Fatal(err)
			}
		}},
		{"directory: unlisted image", func(t *testing.T, dir, outside string) {
			write(t, filepath.Join(dir, checkpoint.ImagesDir, "ghost-file-9999.img"), "extra")
		}},
		{"manifest: tampered", func(t *testing.T, dir, outside string) {
			p := filepath.Join(dir, checkpoint.ManifestFile)
			b, _ := os.ReadFile(p)
			write(t, p, strings.Replace(string(b), `"cpuModel": "`, `"cpuModel": "x`, 1))
		}},
		{"manifest: path out of the directory", func(t *testing.T, dir, outside string) {
			reseal(t, dir, func(m *checkpoint.Manifest) {
				d, err := checkpoint.DigestFile(filepath.Join(outside, "target"))
				if err != nil {
					t.Fatal(err)
				}
				rel, _ := filepath.Rel(dir, filepath.Join(outside, "target"))
				d.Path = rel
				m.Files = append(m.Files, d)
			})
		}},
		{"manifest: oversized", func(t *testing.T, dir, outside string) {
			reseal(t, dir, func(m *checkpoint.Manifest) {
				m.App.Mounts = []string{strings.Repeat("/x", checkpoint.MaxManifestBytes/2)}
			})
		}},
		{"manifest: oversized path", func(t *testing.T, dir, outside string) {
			long := filepath.Join(dir, strings.Repeat("d/", checkpoint.MaxPathBytes/2))
			os.MkdirAll(long, 0o700)
			write(t, filepath.Join(long, "f"), "x")
			reseal(t, dir, nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := *a
			b.root = t.TempDir()
			dir := b.path()
			os.MkdirAll(filepath.Dir(dir), 0o700)
			if out, err := exec.Command("cp", "-a", orig, dir).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v: %s", err, out)
			}
			outside := t.TempDir()
			write(t, filepath.Join(outside, "target"), "keep")
			tc.craft(t, dir, outside)
			before := snapshot(t, outside)

			p := b.restoreReady()
			e := coldStarted(t, &b, p, "damaged", want)
			if !strings.Contains(e.Str("error"), "untrusted") && !strings.Contains(e.Str("error"), "unsafe") && !strings.Contains(e.Str("error"), "changed") {
				t.Errorf("the fallback error does not say why the checkpoint is not trusted: %s", e.Str("error"))
			}
			harness.Stop(t, p)
			sameSnapshot(t, "the directory the checkpoint aimed at", before, snapshot(t, outside))
			if got, _ := os.ReadFile(marker); len(got) != 0 {
				t.Errorf("the app's root filesystem write reached the host: %s", marker)
			}
		})
	}
}

// writeDiff replaces the checkpoint's rootfs-diff.tar with entries and reseals it.
func writeDiff(t *testing.T, dir string, entries []hostileEntry) {
	t.Helper()
	write(t, filepath.Join(dir, checkpoint.RootfsDiffFile), string(hostileTar(t, entries)))
	reseal(t, dir, nil)
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func copyTo(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	write(t, dst, string(b))
}
