package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestVerifyFiles(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  func(dir string) error
		digests bool
		want    error
	}{
		{"intact", func(string) error { return nil }, true, nil},
		{"missing", func(d string) error { return os.Remove(filepath.Join(d, "checkpoint", "pages-1.img")) }, false, ErrDamaged},
		{"truncated", func(d string) error { return os.Truncate(filepath.Join(d, "checkpoint", "pages-1.img"), 3) }, false, ErrDamaged},
		{"same size, other bytes, sizes only", func(d string) error {
			return os.WriteFile(filepath.Join(d, "checkpoint", "pages-1.img"), []byte("PAGES-xx"), 0o600)
		}, false, nil},
		{"same size, other bytes, digests", func(d string) error {
			return os.WriteFile(filepath.Join(d, "checkpoint", "pages-1.img"), []byte("PAGES-xx"), 0o600)
		}, true, ErrDamaged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, "checkpoint"), 0o700)
			os.WriteFile(filepath.Join(dir, "checkpoint", "pages-1.img"), []byte("PAGES-01"), 0o600)
			os.WriteFile(filepath.Join(dir, "spec.dump"), []byte("{}"), 0o600)
			if err := WriteManifest(dir, &Manifest{Name: "x"}); err != nil {
				t.Fatal(err)
			}
			m, err := ReadManifest(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Files) != 2 {
				t.Fatalf("manifest lists %d files, want 2 (crwrap.json itself excluded)", len(m.Files))
			}
			if err := tc.damage(dir); err != nil {
				t.Fatal(err)
			}
			err = m.VerifyFiles(dir, tc.digests)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("VerifyFiles: %v, want %v", err, tc.want)
			}
		})
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
