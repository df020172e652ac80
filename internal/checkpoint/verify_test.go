package checkpoint

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// editManifest rewrites dir's crwrap.json with edit applied and, when reseal, a matching
// crwrap.json.sha256 (as a forger would).
func editManifest(t *testing.T, dir string, reseal bool, edit func(m map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if reseal {
		if err := SealManifest(dir); err != nil {
			t.Fatal(err)
		}
	}
}

func addFile(m map[string]any, path string) {
	m["files"] = append(m["files"].([]any), map[string]any{"path": path, "size": 1, "sha256": strings.Repeat("0", 64)})
}

func TestVerify(t *testing.T) {
	pages := func(d string) string { return filepath.Join(d, "checkpoint", "pages-1.img") }
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, dir string)
		digests bool
		want    error // nil, ErrDamaged, ErrUnsafe (also ErrDamaged) or ErrIncompatible
	}{
		{"intact", func(*testing.T, string) {}, true, nil},
		{"missing", func(t *testing.T, d string) { os.Remove(pages(d)) }, false, ErrDamaged},
		{"truncated", func(t *testing.T, d string) { os.Truncate(pages(d), 3) }, false, ErrDamaged},
		{"same size, other bytes, sizes only", func(t *testing.T, d string) { os.WriteFile(pages(d), []byte("PAGES-xx"), 0o600) }, false, nil},
		{"same size, other bytes, digests", func(t *testing.T, d string) { os.WriteFile(pages(d), []byte("PAGES-xx"), 0o600) }, true, ErrDamaged},
		{"manifest tampered", func(t *testing.T, d string) {
			editManifest(t, d, false, func(m map[string]any) { m["host"].(map[string]any)["kernel"] = "other" })
		}, false, ErrDamaged},
		{"manifest digest missing", func(t *testing.T, d string) { os.Remove(filepath.Join(d, ManifestDigestFile)) }, false, ErrDamaged},
		{"manifest digest garbage", func(t *testing.T, d string) {
			os.WriteFile(filepath.Join(d, ManifestDigestFile), []byte("xyz  crwrap.json\n"), 0o600)
		}, false, ErrDamaged},
		{"manifest too large", func(t *testing.T, d string) {
			editManifest(t, d, true, func(m map[string]any) { m["pad"] = strings.Repeat("x", MaxManifestBytes) })
		}, false, ErrUnsafe},
		{"manifest path with ..", func(t *testing.T, d string) {
			editManifest(t, d, true, func(m map[string]any) { addFile(m, "../../etc/passwd") })
		}, false, ErrUnsafe},
		{"manifest absolute path", func(t *testing.T, d string) {
			editManifest(t, d, true, func(m map[string]any) { addFile(m, "/etc/passwd") })
		}, false, ErrUnsafe},
		{"manifest path too long", func(t *testing.T, d string) {
			editManifest(t, d, true, func(m map[string]any) { addFile(m, strings.Repeat("a/", MaxPathBytes)) })
		}, false, ErrUnsafe},
		{"manifest app file relative", func(t *testing.T, d string) {
			editManifest(t, d, true, func(m map[string]any) {
				m["app"].(map[string]any)["files"] = []any{map[string]any{"path": "../bin/sh", "size": 1, "sha256": "00"}}
			})
		}, false, ErrUnsafe},
		{"format version", func(t *testing.T, d string) {
			editManifest(t, d, true, func(m map[string]any) { m["formatVersion"] = 99 })
		}, false, ErrIncompatible},
		{"listed file is a symlink", func(t *testing.T, d string) {
			os.Remove(pages(d))
			os.Symlink("/etc/hostname", pages(d))
		}, false, ErrUnsafe},
		{"images directory is a symlink", func(t *testing.T, d string) {
			os.Rename(filepath.Join(d, "checkpoint"), filepath.Join(d, "elsewhere"))
			os.Symlink("elsewhere", filepath.Join(d, "checkpoint"))
		}, false, ErrUnsafe},
		{"fifo", func(t *testing.T, d string) {
			if err := unix.Mkfifo(filepath.Join(d, "checkpoint", "fifo"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, false, ErrUnsafe},
		{"fifo as a listed file", func(t *testing.T, d string) {
			os.Remove(pages(d))
			if err := unix.Mkfifo(pages(d), 0o600); err != nil {
				t.Fatal(err)
			}
		}, true, ErrUnsafe},
		{"socket", func(t *testing.T, d string) {
			l, err := net.Listen("unix", filepath.Join(d, "s"))
			if err != nil {
				t.Fatal(err)
			}
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			l.Close()
		}, false, ErrUnsafe},
		{"unlisted file", func(t *testing.T, d string) {
			os.WriteFile(filepath.Join(d, "checkpoint", "extra.img"), []byte("x"), 0o600)
		}, false, ErrUnsafe},
		{"too deep", func(t *testing.T, d string) { os.MkdirAll(filepath.Join(d, strings.Repeat("d/", maxDepth+2)), 0o700) }, false, ErrUnsafe},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, "checkpoint"), 0o700)
			os.WriteFile(pages(dir), []byte("PAGES-01"), 0o600)
			os.WriteFile(filepath.Join(dir, "spec.dump"), []byte("{}"), 0o600)
			if err := WriteManifest(dir, &Manifest{Name: "x"}); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, dir)
			r, err := Hold(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			m, err := r.Verify(tc.digests)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if len(m.Files) != 2 || r.ManifestDigest == "" {
					t.Fatalf("manifest lists %d files (want 2: crwrap.json and its digest excluded), digest %q", len(m.Files), r.ManifestDigest)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify: %v, want %v", err, tc.want)
			}
			// Check (inspect's) finds the same first problem.
			if _, problems := r.Check(tc.digests); len(problems) == 0 || !errors.Is(problems[0], tc.want) {
				t.Fatalf("Check: %v, want first %v", problems, tc.want)
			}
		})
	}
}

// Check goes on past a damaged file and reports each problem, with the manifest.
func TestCheckReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"checkpoint/pages-1.img": "PAGES-01", "checkpoint/core-1.img": "core", "spec.dump": "{}"} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o700)
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600)
	}
	if err := WriteManifest(dir, &Manifest{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	os.Truncate(filepath.Join(dir, "checkpoint/pages-1.img"), 3)
	os.WriteFile(filepath.Join(dir, "spec.dump"), []byte("[]"), 0o600)
	os.Remove(filepath.Join(dir, "checkpoint/core-1.img"))
	os.WriteFile(filepath.Join(dir, "extra"), nil, 0o600)
	r, err := Hold(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m, problems := r.Check(true)
	if m == nil || m.Name != "x" {
		t.Fatalf("manifest %+v, want the one written", m)
	}
	all := ""
	for _, p := range problems {
		if !errors.Is(p, ErrDamaged) {
			t.Errorf("%v is not ErrDamaged", p)
		}
		all += p.Error() + "\n"
	}
	for _, want := range []string{"checkpoint/pages-1.img: 3 bytes, crwrap.json says 8", "spec.dump: sha256", "extra is not listed", "checkpoint/core-1.img: missing"} {
		if !strings.Contains(all, want) {
			t.Errorf("no problem mentions %q:\n%s", want, all)
		}
	}
	if len(problems) != 4 || r.Manifest != nil {
		t.Errorf("%d problems, Manifest set %v; want 4, not set", len(problems), r.Manifest != nil)
	}
}

// OpenListed gives a listed file's bytes and, with check, fails at the end on other content;
// CheckDigests compares digests taken elsewhere.
func TestOpenListedAndCheckDigests(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "spec.dump"), []byte("{}"), 0o600)
	if err := WriteManifest(dir, &Manifest{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	files, err := r.Files()
	if err != nil || len(files) != 3 || files[0].Path != ManifestFile || files[1].Path != ManifestDigestFile || files[2].Path != "spec.dump" {
		t.Fatalf("Files: %v %v", files, err)
	}
	read := func(f File, check bool) (string, error) {
		rc, err := r.OpenListed(f, check)
		if err != nil {
			return "", err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		return string(b), err
	}
	for _, f := range files {
		if _, err := read(f, true); err != nil {
			t.Errorf("%s: %v", f.Path, err)
		}
	}
	spec := files[2]
	os.WriteFile(filepath.Join(dir, "spec.dump"), []byte("[]"), 0o600)
	if _, err := read(spec, false); err != nil {
		t.Errorf("same size, unchecked: %v", err)
	}
	if _, err := read(spec, true); !errors.Is(err, ErrDamaged) {
		t.Errorf("other content, checked: %v, want ErrDamaged", err)
	}
	os.WriteFile(filepath.Join(dir, "spec.dump"), []byte("{"), 0o600)
	if _, err := read(spec, false); !errors.Is(err, ErrDamaged) {
		t.Errorf("shorter: %v, want ErrDamaged", err)
	}
	if err := r.CheckDigests(map[string]string{"spec.dump": spec.SHA256}); err != nil {
		t.Errorf("CheckDigests intact: %v", err)
	}
	if err := r.CheckDigests(map[string]string{"spec.dump": strings.Repeat("0", 64)}); !errors.Is(err, ErrDamaged) {
		t.Errorf("CheckDigests other: %v, want ErrDamaged", err)
	}
}

// Path leads to the directory that was verified even when the name is swapped afterwards.
func TestPathIsHeld(t *testing.T) {
	dir := t.TempDir()
	v := filepath.Join(dir, "v1")
	os.MkdirAll(filepath.Join(v, "checkpoint"), 0o700)
	os.WriteFile(filepath.Join(v, "checkpoint", "inventory.img"), []byte("one"), 0o600)
	if err := WriteManifest(v, &Manifest{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(v, true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p, err := r.Path("checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	// Swap: the verified directory moves away, another takes its name.
	os.Rename(v, filepath.Join(dir, "old"))
	os.MkdirAll(filepath.Join(v, "checkpoint"), 0o700)
	os.WriteFile(filepath.Join(v, "checkpoint", "inventory.img"), []byte("two"), 0o600)
	b, err := os.ReadFile(filepath.Join(p, "inventory.img"))
	if err != nil || string(b) != "one" {
		t.Fatalf("read through Path: %q, %v; want the verified \"one\"", b, err)
	}
	if _, err := r.Path("../x"); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("Path(../x): %v, want ErrUnsafe", err)
	}
}

func TestCheckHost(t *testing.T) {
	h := Host{Kernel: "6.18.1", Arch: "amd64", CPUFlagsDigest: "abc"}
	m := &Manifest{Host: h, CRIUVersion: "4.2.1"}
	if err := m.CheckHost(h, "4.2.1"); err != nil {
		t.Fatalf("same host: %v", err)
	}
	for name, other := range map[string]Host{
		"kernel": {Kernel: "6.18.2", Arch: "amd64", CPUFlagsDigest: "abc"},
		"arch":   {Kernel: "6.18.1", Arch: "arm64", CPUFlagsDigest: "abc"},
		"cpu":    {Kernel: "6.18.1", Arch: "amd64", CPUFlagsDigest: "abd"},
	} {
		if err := m.CheckHost(other, "4.2.1"); !errors.Is(err, ErrIncompatible) {
			t.Errorf("%s differs: %v, want ErrIncompatible", name, err)
		}
	}
	if err := m.CheckHost(h, "4.2.0"); !errors.Is(err, ErrIncompatible) {
		t.Errorf("CRIU differs: %v, want ErrIncompatible", err)
	}
}

func TestCheckApp(t *testing.T) {
	root := t.TempDir()
	bin := filepath.Join(root, "app")
	os.WriteFile(bin, []byte("binary-v1"), 0o755)
	d, err := DigestFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	d.Path = "/app"
	app := App{Args: []string{"/app", "-x"}, TemplateDigest: "t1", Mounts: []string{"/data"}}
	m := &Manifest{App: app}
	m.App.Files = []File{d}
	if err := m.CheckApp(app, root, false); err != nil {
		t.Fatalf("same app: %v", err)
	}
	for name, other := range map[string]App{
		"args":     {Args: []string{"/app"}, TemplateDigest: "t1", Mounts: []string{"/data"}},
		"template": {Args: app.Args, TemplateDigest: "t2", Mounts: []string{"/data"}},
		"mounts":   {Args: app.Args, TemplateDigest: "t1"},
	} {
		if err := m.CheckApp(other, root, false); !errors.Is(err, ErrForeign) {
			t.Errorf("%s differs: %v, want ErrForeign", name, err)
		}
	}
	os.WriteFile(bin, []byte("binary-v2"), 0o755) // same size, other content
	if err := m.CheckApp(app, root, false); !errors.Is(err, ErrForeign) {
		t.Errorf("changed binary of the same size: %v, want ErrForeign", err)
	}
	os.Remove(bin)
	if err := m.CheckApp(app, root, false); !errors.Is(err, ErrForeign) {
		t.Errorf("missing binary: %v, want ErrForeign", err)
	}
}

func TestCPUInfo(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cpuinfo")
	os.WriteFile(p, []byte("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: sse2 avx fpu\n\nprocessor\t: 1\nmodel name\t: Test CPU\nflags\t\t: sse2 avx fpu\n"), 0o600)
	model, flags, err := cpuInfo(p)
	if err != nil || model != "Test CPU" || len(flags) != 3 || flags[0] != "avx" {
		t.Fatalf("cpuInfo = %q %q %v", model, flags, err)
	}
}

func TestCheckAppStatShortcut(t *testing.T) {
	root := t.TempDir()
	bin := filepath.Join(root, "app")
	if err := os.WriteFile(bin, []byte("binary-v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	files, err := AppFiles(root, nil)
	if err != nil || len(files) != 0 {
		t.Fatalf("AppFiles without pids: %v %v", files, err)
	}
	d, err := DigestFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	_, st, err := statID(bin)
	if err != nil {
		t.Fatal(err)
	}
	app := App{Args: []string{"/app"}}
	// A recorded digest that does not match: only hashing can notice.
	m := &Manifest{App: app}
	m.App.Files = []File{{Path: "/app", Size: d.Size, SHA256: "0000", Stat: st}}
	if err := m.CheckApp(app, root, false); err != nil {
		t.Fatalf("unchanged file (same size and stat) was hashed: %v", err)
	}
	if err := m.CheckApp(app, root, true); !errors.Is(err, ErrForeign) {
		t.Fatalf("with digests the recorded digest must decide: %v", err)
	}
	// Rewriting the file, even at the same size, moves its ctime: it is hashed again.
	m.App.Files[0].SHA256 = d.SHA256
	if err := os.WriteFile(bin, []byte("binary-v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.CheckApp(app, root, false); !errors.Is(err, ErrForeign) {
		t.Fatalf("a same-size rewrite after the checkpoint: %v, want ErrForeign", err)
	}
}

// A tree with more entries than the limit is refused (the limit is lowered here).
func TestVerifyEntryLimit(t *testing.T) {
	defer func(n int) { fileLimit = n }(fileLimit)
	fileLimit = 5
	dir := t.TempDir()
	for i := 0; i < 6; i++ {
		os.MkdirAll(filepath.Join(dir, "checkpoint", strings.Repeat("d", i+1)), 0o700)
	}
	if err := WriteManifest(dir, &Manifest{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, false); !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "more than 5 entries") {
		t.Fatalf("Open: %v, want ErrUnsafe for too many entries", err)
	}
}

// An app file that is a FIFO (or a device) now is foreign, found without opening it: a
// crafted manifest naming one must not hang the restore.
func TestCheckAppSpecialFile(t *testing.T) {
	root := t.TempDir()
	if err := unix.Mkfifo(filepath.Join(root, "app"), 0o600); err != nil {
		t.Fatal(err)
	}
	app := App{Args: []string{"/app"}}
	m := &Manifest{App: app}
	m.App.Files = []File{{Path: "/app", Size: 0, SHA256: strings.Repeat("0", 64)}}
	if err := m.CheckApp(app, root, true); !errors.Is(err, ErrForeign) {
		t.Fatalf("CheckApp: %v, want ErrForeign", err)
	}
}
