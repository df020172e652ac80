package ops

import (
	"archive/tar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// `crwrap import` refuses an archive with an entry that would write outside the checkpoint
// directory, exits 1 naming the entry, and leaves nothing behind: neither the directory nor
// the file the entry aimed at.
func TestImportRefusesHostileArchives(t *testing.T) {
	harness.RequireBuild(t)
	for _, c := range []struct {
		name    string
		entries func(outside string) []*tar.Header
	}{
		{"dotdot", func(outside string) []*tar.Header {
			return []*tar.Header{{Name: "spec.dump"}, {Name: "../" + filepath.Base(outside) + "/evil"}}
		}},
		{"absolute", func(outside string) []*tar.Header {
			return []*tar.Header{{Name: "spec.dump"}, {Name: outside + "/evil"}}
		}},
		{"symlink-out", func(outside string) []*tar.Header {
			return []*tar.Header{{Name: "checkpoint", Typeflag: tar.TypeSymlink, Linkname: outside}, {Name: "checkpoint/evil"}}
		}},
		{"hardlink-out", func(outside string) []*tar.Header {
			return []*tar.Header{{Name: "evil", Typeflag: tar.TypeLink, Linkname: outside + "/target"}}
		}},
		{"device", func(string) []*tar.Header {
			return []*tar.Header{{Name: "evil", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			work := t.TempDir()
			outside := filepath.Join(work, "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(outside, "target"), []byte("keep"), 0o644); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(work, "hostile.tar")
			f, err := os.Create(file)
			if err != nil {
				t.Fatal(err)
			}
			tw := tar.NewWriter(f)
			body := "payload"
			for _, h := range c.entries(outside) {
				if h.Typeflag == 0 {
					h.Typeflag = tar.TypeReg
					h.Size = int64(len(body))
				}
				h.Mode, h.ModTime = 0o644, time.Now()
				if err := tw.WriteHeader(h); err != nil {
					t.Fatal(err)
				}
				if h.Typeflag == tar.TypeReg {
					if _, err := tw.Write([]byte(body)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := tw.Close(); err != nil {
				t.Fatal(err)
			}
			f.Close()

			dest := filepath.Join(work, "cr", "apps", "app")
			p, code := harness.Run(t, harness.Options{}, time.Minute, "import", file, dest)
			if code != 1 {
				t.Errorf("import of a hostile archive exited %d, want 1\nstderr:\n%s", code, p.Stderr)
			}
			if lines := strings.Split(strings.TrimSpace(p.Stderr.String()), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "evil") && !strings.Contains(lines[0], "checkpoint") {
				t.Errorf("import's error is not one line naming the entry:\n%s", p.Stderr)
			}
			if _, err := os.Lstat(dest); err == nil {
				t.Errorf("import left %s behind", dest)
			}
			if _, err := os.Lstat(filepath.Join(outside, "evil")); err == nil {
				t.Errorf("import wrote %s/evil outside the checkpoint directory", outside)
			}
			if b, _ := os.ReadFile(filepath.Join(outside, "target")); string(b) != "keep" {
				t.Errorf("import changed %s/target: %q", outside, b)
			}
		})
	}
}
