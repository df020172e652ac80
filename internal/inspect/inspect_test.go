package inspect

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crwrap/crwrap/internal/checkpoint"
)

// The images in testdata/sleep are CRIU 4.2.1's dump of `env -i sleep 1000` (pid 23025), without
// its pages: 27 pages, regenerated here as zeros.
const (
	sleepPID   = 23025
	sleepPages = 27
)

// makeCheckpoint lays the testdata images out as a crwrap checkpoint in a new directory.
func makeCheckpoint(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, checkpoint.ImagesDir)
	if err := os.Mkdir(img, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("testdata/sleep")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("testdata/sleep", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(img, e.Name())
		if e.Name() == checkpoint.StatsDumpFile {
			dst = filepath.Join(dir, e.Name())
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(img, "pages-1.img"), make([]byte, sleepPages*os.Getpagesize()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, checkpoint.SpecDumpFile), []byte(`{"ociVersion":"1.2.0"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	m := checkpoint.Manifest{
		FormatVersion: checkpoint.FormatVersion,
		Name:          "sleeper",
		Created:       time.Date(2025, 11, 26, 2, 18, 0, 0, time.UTC),
		CrwrapVersion: "v0.0.0-test",
		CRIUVersion:   "4.2.1",
		Host:          checkpoint.Host{Hostname: "node1", Kernel: "6.18.0", Arch: "x86_64"},
		App:           checkpoint.App{Args: []string{"sleep", "1000"}},
		DurationsMS:   map[string]int64{"dump": 70},
	}
	if err := (checkpoint.Draft{Dir: dir}).WriteConfigDump(checkpoint.ConfigDump(&m, "example.com/sleeper:1", time.Time{})); err != nil {
		t.Fatal(err)
	}
	writeManifest(t, dir, m)
	return dir
}

// writeManifest lists every file of dir in m and writes it as crwrap.json, sealed.
func writeManifest(t *testing.T, dir string, m checkpoint.Manifest) {
	t.Helper()
	if err := checkpoint.WriteManifest(dir, &m); err != nil {
		t.Fatal(err)
	}
}

func TestInspectIntact(t *testing.T) {
	dir := makeCheckpoint(t)
	link := filepath.Join(t.TempDir(), "current")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	r, err := InspectWith(link, Options{Digests: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Damaged {
		t.Fatalf("damaged: %v", r.Reasons)
	}
	if r.Resolved != dir {
		t.Errorf("resolved %q, want %q", r.Resolved, dir)
	}
	if r.ProcessCount != 1 || len(r.Processes) != 1 {
		t.Fatalf("%d processes, roots %d", r.ProcessCount, len(r.Processes))
	}
	p := r.Processes[0]
	if p.PID != sleepPID || p.Comm != "sleep" || p.State != "alive" || p.Exe != "/usr/bin/sleep" {
		t.Errorf("process %+v", p)
	}
	if r.Memory.Pages != sleepPages || r.Memory.VMAs == 0 || r.Memory.MappedBytes == 0 {
		t.Errorf("memory %+v", r.Memory)
	}
	if r.Stats == nil || r.Stats.PagesWritten != sleepPages || r.Stats.FrozenTimeUS == 0 {
		t.Errorf("stats %+v", r.Stats)
	}
	if r.Name != "sleeper" || r.CRIUVersion != "4.2.1" || r.Host.Kernel != "6.18.0" || strings.Join(r.Command, " ") != "sleep 1000" {
		t.Errorf("manifest fields: %+v", r)
	}
	if r.Container == nil || r.Container.RootfsImageName != "example.com/sleeper:1" {
		t.Errorf("container %+v", r.Container)
	}
	if r.Sizes.PagesBytes != int64(sleepPages*os.Getpagesize()) || r.Sizes.TotalBytes <= r.Sizes.PagesBytes {
		t.Errorf("sizes %+v", r.Sizes)
	}
	var names []string
	for _, e := range r.Sizes.Entries {
		names = append(names, e.Name)
	}
	if got := strings.Join(names, " "); got != "checkpoint/ config.dump crwrap.json crwrap.json.sha256 spec.dump stats-dump" {
		t.Errorf("size entries %s", got)
	}

	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Status:      intact", "23025 sleep (alive, /usr/bin/sleep", "27 pages dumped", "CRIU 4.2.1", "kernel 6.18.0", "pages scanned"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Processes[0].Comm != "sleep" || back.Stats.PagesWritten != sleepPages {
		t.Errorf("JSON round trip lost data: %s", js.String())
	}
}

func TestInspectDamaged(t *testing.T) {
	img := func(name string) string { return filepath.Join(checkpoint.ImagesDir, name) }
	core := img("core-23025.img")
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		opts   Options
		want   []string // each must appear in some reason
	}{
		{"missing mm", func(t *testing.T, dir string) { remove(t, dir, img("mm-23025.img")) },
			Options{}, []string{"checkpoint/mm-23025.img: missing", "checkpoint/mm-23025.img: open"}},
		{"truncated core", func(t *testing.T, dir string) { truncate(t, dir, core, 100) },
			Options{}, []string{"core-23025.img: 100 bytes, crwrap.json says", "core-23025.img: truncated"}},
		{"short pages", func(t *testing.T, dir string) { truncate(t, dir, img("pages-1.img"), 4096) },
			Options{}, []string{"pages-1.img: 4096 bytes, but pagemap-23025.img lists 27 pages"}},
		{"garbage pstree", func(t *testing.T, dir string) { write(t, dir, img("pstree.img"), "not a CRIU image") },
			Options{}, []string{"pstree.img: unknown magic", "pstree.img: 16 bytes"}},
		{"no manifest", func(t *testing.T, dir string) { remove(t, dir, checkpoint.ManifestFile) },
			Options{}, []string{"no crwrap.json"}},
		{"truncated stats", func(t *testing.T, dir string) { truncate(t, dir, checkpoint.StatsDumpFile, 20) },
			Options{}, []string{"stats-dump: truncated"}},
		{"flipped page byte", func(t *testing.T, dir string) {
			b := make([]byte, sleepPages*os.Getpagesize())
			b[5000] = 1
			write(t, dir, img("pages-1.img"), string(b))
		}, Options{Digests: true}, []string{"pages-1.img: sha256"}},
		{"manifest edited after it was sealed", func(t *testing.T, dir string) {
			b, err := os.ReadFile(filepath.Join(dir, checkpoint.ManifestFile))
			if err != nil {
				t.Fatal(err)
			}
			write(t, dir, checkpoint.ManifestFile, strings.Replace(string(b), `"sleeper"`, `"sleepy"`, 1))
		}, Options{}, []string{"crwrap.json does not match crwrap.json.sha256"}},
		{"no seal", func(t *testing.T, dir string) { remove(t, dir, checkpoint.ManifestDigestFile) },
			Options{}, []string{"crwrap.json.sha256 is missing"}},
		{"no images", func(t *testing.T, dir string) {
			if err := os.RemoveAll(filepath.Join(dir, checkpoint.ImagesDir)); err != nil {
				t.Fatal(err)
			}
		}, Options{}, []string{"no checkpoint/ directory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := makeCheckpoint(t)
			tc.damage(t, dir)
			r, err := InspectWith(dir, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !r.Damaged {
				t.Fatal("not reported damaged")
			}
			all := strings.Join(r.Reasons, "\n")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("no reason mentions %q; reasons:\n%s", w, all)
				}
			}
			var text bytes.Buffer
			if err := r.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(text.String(), "DAMAGED") {
				t.Errorf("text does not say DAMAGED:\n%s", text.String())
			}
			// What is still readable is still reported.
			if tc.name == "missing mm" && (r.ProcessCount != 1 || r.Processes[0].Comm != "sleep") {
				t.Errorf("lost the process tree: %+v", r.Processes)
			}
		})
	}
}

func TestInspectNoDirectory(t *testing.T) {
	if _, err := Inspect(filepath.Join(t.TempDir(), "nothing")); err == nil {
		t.Fatal("no error for a missing directory")
	}
}

func TestFormats(t *testing.T) {
	for in, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 18 << 20: "18.0 MiB"} {
		if got := Bytes(in); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[uint32]string{830: "830 µs", 1200: "1.2 ms", 2_500_000: "2.50 s"} {
		if got := Micros(in); got != want {
			t.Errorf("Micros(%d) = %q, want %q", in, got, want)
		}
	}
}

func remove(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func truncate(t *testing.T, dir, name string, size int64) {
	t.Helper()
	if err := os.Truncate(filepath.Join(dir, name), size); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, dir, name, data string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
