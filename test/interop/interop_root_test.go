package interop

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crwrap/crwrap/internal/archive"
	"github.com/crwrap/crwrap/internal/checkpoint"
	"github.com/crwrap/crwrap/internal/inspect"
	"github.com/crwrap/crwrap/test/harness"
)

const checkpointctlModule = "github.com/checkpoint-restore/checkpointctl@v1.6.0"

// prerequisite stops the test for want of something: a failure in CI or as root, where every
// prerequisite is expected to be in place, else a skip.
func prerequisite(t *testing.T, format string, a ...any) {
	t.Helper()
	msg := "prerequisite missing: " + fmt.Sprintf(format, a...)
	if os.Getenv("CI") != "" || os.Geteuid() == 0 {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// criuCommand returns the argv prefix that runs the bundled CRIU through the bundle's own loader.
func criuCommand(t *testing.T) []string {
	t.Helper()
	if os.Geteuid() != 0 {
		prerequisite(t, "root (CRIU dumps need it)")
	}
	build := os.Getenv("CRWRAP_BUILD")
	if build == "" {
		build = filepath.Join("..", "..", "build", "crwrap")
	}
	root, err := filepath.Abs(filepath.Join(build, "criu", "root"))
	if err != nil {
		t.Fatal(err)
	}
	argv := []string{
		filepath.Join(root, "lib64", "ld-linux-x86-64.so.2"),
		"--library-path", filepath.Join(root, "lib", "x86_64-linux-gnu") + ":" + filepath.Join(root, "usr", "lib", "x86_64-linux-gnu"),
		filepath.Join(root, "usr", "sbin", "criu"),
	}
	out, err := exec.Command(argv[0], append(argv[1:], "--version")...).CombinedOutput()
	if err != nil {
		prerequisite(t, "the CRIU bundle in %s (make bundle): %v: %s", filepath.Dir(root), err, out)
	}
	t.Logf("CRIU: %s", strings.TrimSpace(string(out)))
	return argv
}

// checkpointctl returns the path of checkpointctl v1.6.0: $CHECKPOINTCTL, else one installed
// from the Go module proxy into a temporary GOBIN (the Go build cache makes reinstalls quick).
func checkpointctl(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHECKPOINTCTL"); p != "" {
		return p
	}
	gobin := t.TempDir()
	cmd := exec.Command("go", "install", checkpointctlModule)
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=-mod=mod", "GOWORK=off")
	cmd.Dir = gobin
	if out, err := cmd.CombinedOutput(); err != nil {
		prerequisite(t, "go install %s: %v\n%s", checkpointctlModule, err, out)
	}
	return filepath.Join(gobin, "checkpointctl")
}

// dumpSleep dumps a `setsid sleep` process with CRIU into imgDir and returns its PID.
func dumpSleep(t *testing.T, criu []string, imgDir string) int {
	t.Helper()
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	sleep := exec.Command("sleep", "1000")
	sleep.Stdin, sleep.Stdout, sleep.Stderr = devnull, devnull, devnull
	sleep.Env = []string{"PATH=/usr/bin:/bin"}
	sleep.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sleep.Wait() }()
	t.Cleanup(func() {
		_ = sleep.Process.Kill()
		<-done
	})
	time.Sleep(100 * time.Millisecond) // let it exec

	if err := os.MkdirAll(imgDir, 0o700); err != nil {
		t.Fatal(err)
	}
	args := append(criu[1:], "dump", "-t", fmt.Sprint(sleep.Process.Pid), "-D", imgDir, "--shell-job", "-o", "dump.log", "-v4")
	if out, err := exec.Command(criu[0], args...).CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(imgDir, "dump.log"))
		t.Fatalf("criu dump: %v\n%s\ndump.log tail:\n%s", err, out, tail(string(log), 30))
	}
	select {
	case <-done: // CRIU kills the dumped task
		done <- nil
	case <-time.After(5 * time.Second):
		t.Fatal("the dumped process is still running")
	}
	return sleep.Process.Pid
}

// layOut arranges a CRIU image directory into a crwrap checkpoint directory published the way
// crwrap publishes (dir is a symlink to a versioned directory) and returns dir.
func layOut(t *testing.T, imgDir, parent, name string) string {
	t.Helper()
	version := filepath.Join(parent, "."+name+".v1")
	if err := os.MkdirAll(version, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(imgDir, filepath.Join(version, checkpoint.ImagesDir)); err != nil {
		t.Fatal(err)
	}
	// CRIU writes its statistics and log beside the images; archives keep them at the root.
	for _, f := range []string{checkpoint.StatsDumpFile, "dump.log"} {
		if err := os.Rename(filepath.Join(version, checkpoint.ImagesDir, f), filepath.Join(version, f)); err != nil {
			t.Fatal(err)
		}
	}
	spec := map[string]any{
		"ociVersion":  "1.2.0",
		"process":     map[string]any{"args": []string{"sleep", "1000"}, "cwd": "/"},
		"root":        map[string]any{"path": "rootfs"},
		"annotations": checkpoint.SpecAnnotations(name, name+"-0", "default"),
	}
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(version, checkpoint.SpecDumpFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	m := checkpoint.Manifest{
		FormatVersion: checkpoint.FormatVersion,
		Name:          name,
		Created:       time.Now().UTC().Truncate(time.Second),
		CrwrapVersion: "interop-test",
		CRIUVersion:   "bundled",
		App:           checkpoint.App{Args: []string{"sleep", "1000"}},
	}
	if err := (checkpoint.Draft{Dir: version}).WriteConfigDump(checkpoint.ConfigDump(&m, "example.com/sleeper:1", m.Created.Add(-time.Minute))); err != nil {
		t.Fatal(err)
	}
	err := filepath.Walk(version, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(version, p)
		sum, err := fileSHA256(p)
		m.Files = append(m.Files, checkpoint.File{Path: filepath.ToSlash(rel), Size: fi.Size(), SHA256: sum})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(version, checkpoint.ManifestFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := checkpoint.SealManifest(version); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, name)
	if err := os.Symlink(filepath.Base(version), dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCRIUDumpInspectExportCheckpointctl(t *testing.T) {
	criu := criuCommand(t)
	cctl := checkpointctl(t)
	work := t.TempDir()
	pid := dumpSleep(t, criu, filepath.Join(work, "images"))
	dir := layOut(t, filepath.Join(work, "images"), filepath.Join(work, "cr", "apps"), "sleeper")

	t.Run("inspect", func(t *testing.T) {
		r, err := inspect.InspectWith(dir, inspect.Options{Digests: true})
		if err != nil {
			t.Fatal(err)
		}
		if r.Damaged {
			t.Fatalf("a fresh dump is reported damaged: %v", r.Reasons)
		}
		if r.ProcessCount != 1 || r.Processes[0].PID != uint32(pid) || r.Processes[0].Comm != "sleep" {
			t.Errorf("process tree %+v, want pid %d comm sleep", r.Processes, pid)
		}
		if r.Stats == nil || r.Stats.PagesWritten == 0 || r.Memory.Pages != r.Stats.PagesWritten {
			t.Errorf("memory %+v vs statistics %+v", r.Memory, r.Stats)
		}
		var text bytes.Buffer
		_ = r.WriteText(&text)
		t.Logf("crwrap inspect:\n%s", text.String())
	})

	checkArchives(t, cctl, dir, "sleeper", pid)
}

// TestLeadCheckpoint checkpoints the test app with `crwrap checkpoint`, exports the
// checkpoint with `crwrap export` as a plain and a zstd tar named as the kubelet names its
// archives, has checkpointctl show and inspect --stats each, and imports each with
// `crwrap import` into a checkpoint directory that `crwrap restore` restores with the app's
// memory (its /value) intact.
func TestLeadCheckpoint(t *testing.T) {
	cctl := checkpointctl(t)
	harness.Require(t)
	bin := harness.TestApp(t)
	port := harness.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	harness.KillMarked(t, addr)
	command := []string{bin, "serve", addr, "-warmup", "300ms", "-heap", "4"}
	root, out := t.TempDir(), t.TempDir()
	valueFile := filepath.Join(out, "value")
	props := func(root string, extra ...string) string {
		return harness.WriteProps(t, append([]string{
			"cr.checkpoint.root=" + root,
			"cr.checkpoint.directory=apps",
			"cr.checkpoint.name=app",
			"cr.container.readiness=http://" + addr + "/ready",
			"cr.readiness.timeout=30s",
			"cr.log.format=json",
		}, extra...)...)
	}
	crwrapArgs := func(mode, props string) []string {
		return append([]string{mode, "--config", props, "--"}, command...)
	}

	const image = "example.com/crwrap/testapp:interop"
	cp, code := harness.Run(t, harness.Options{Env: []string{"CRWRAP_IMAGE=" + image}}, 2*time.Minute, crwrapArgs("checkpoint", props(root,
		"cr.checkpoint.exit=true",
		// Record the app's /value just before the dump.
		"cr.checkpoint.warmup=curl -sf --max-time 5 -o "+valueFile+" http://"+addr+"/value"))...)
	if code != 0 {
		t.Fatalf("crwrap checkpoint exited %d\nstderr:\n%s", code, cp.Stderr)
	}
	value, err := os.ReadFile(valueFile)
	if err != nil || len(value) == 0 {
		t.Fatalf("the warm-up did not record the app's /value: %v", err)
	}
	var pagesWritten uint64
	for _, line := range strings.Split(cp.Stderr.String(), "\n") {
		var e struct {
			Phase        string `json:"phase"`
			PagesWritten uint64 `json:"pages_written"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Phase == "dump" {
			pagesWritten = e.PagesWritten
		}
	}
	if pagesWritten == 0 {
		t.Fatalf("crwrap checkpoint logged no phase=dump with pages_written\nstderr:\n%s", cp.Stderr)
	}
	dir := filepath.Join(root, "apps", "app")

	r, err := inspect.InspectWith(dir, inspect.Options{Digests: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Damaged {
		t.Fatalf("%s is reported damaged: %v", dir, r.Reasons)
	}
	if r.ProcessCount == 0 || r.Stats == nil {
		t.Fatalf("%s: no processes or no CRIU statistics", dir)
	}
	if r.Stats.PagesWritten != pagesWritten {
		t.Errorf("crwrap inspect reads %d pages written, the dump logged %d", r.Stats.PagesWritten, pagesWritten)
	}
	cfg, err := checkpoint.ReadConfigDump(dir)
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct{ ext, magic string }{{".tar", ""}, {".tar.zst", "\x28\xb5\x2f\xfd"}} {
		t.Run("archive"+c.ext, func(t *testing.T) {
			name := strings.TrimSuffix(archive.ArchiveName("testapp-0", "default", "app", time.Now().UTC()), ".tar") + c.ext
			file := filepath.Join(t.TempDir(), name)
			p, code := harness.Run(t, harness.Options{}, time.Minute, "export", dir, "-o", file)
			if code != 0 {
				t.Fatalf("crwrap export exited %d\nstderr:\n%s", code, p.Stderr)
			}
			head := make([]byte, 512)
			if f, err := os.Open(file); err != nil {
				t.Fatal(err)
			} else {
				_, _ = io.ReadFull(f, head)
				f.Close()
			}
			if c.magic != "" && !bytes.HasPrefix(head, []byte(c.magic)) {
				t.Errorf("%s is not zstd: starts % x", name, head[:4])
			}
			if c.magic == "" && string(head[257:262]) != "ustar" {
				t.Errorf("%s is not a plain tar", name)
			}

			show := run(t, cctl, "show", file)
			for _, w := range []string{cfg.OCIRuntime, image, "app"} {
				if !strings.Contains(show, w) {
					t.Errorf("checkpointctl show lacks %q:\n%s", w, show)
				}
			}
			stats := run(t, cctl, "inspect", "--stats", file)
			t.Logf("checkpointctl show:%s\ncheckpointctl inspect --stats:\n%s", show, stats)
			for _, w := range []string{"CRIU dump statistics", fmt.Sprintf("Pages written: %d", pagesWritten), "Frozen time"} {
				if !strings.Contains(stats, w) {
					t.Errorf("checkpointctl inspect --stats lacks %q:\n%s", w, stats)
				}
			}
			var nodes []struct {
				Runtime    string `json:"runtime"`
				Image      string `json:"image"`
				Statistics *struct {
					PagesWritten uint64 `json:"pages_written"`
					FrozenTime   uint32 `json:"frozen_time"`
				} `json:"statistics"`
				ProcessTree *struct {
					PID     uint32 `json:"pid"`
					Command string `json:"command"`
					Cmdline string `json:"cmdline"`
				} `json:"process_tree"`
			}
			js := run(t, cctl, "inspect", "--stats", "--ps-tree-cmd", "--format", "json", file)
			if err := json.Unmarshal([]byte(js), &nodes); err != nil {
				t.Fatalf("checkpointctl inspect --format json: %v\n%s", err, js)
			}
			if len(nodes) != 1 || nodes[0].Statistics == nil || nodes[0].ProcessTree == nil {
				t.Fatalf("checkpointctl inspect JSON lacks statistics or the process tree:\n%s", js)
			}
			n := nodes[0]
			if n.Statistics.PagesWritten != pagesWritten || n.Statistics.FrozenTime != r.Stats.FrozenTimeUS || n.Statistics.FrozenTime == 0 {
				t.Errorf("checkpointctl statistics %+v; crwrap logged %d pages written, inspect %+v", *n.Statistics, pagesWritten, *r.Stats)
			}
			if n.Runtime != cfg.OCIRuntime || n.Image != image {
				t.Errorf("checkpointctl runtime %q image %q, want %q %q", n.Runtime, n.Image, cfg.OCIRuntime, image)
			}
			if n.ProcessTree.PID != r.Processes[0].PID || n.ProcessTree.Command != "testapp" || !strings.Contains(n.ProcessTree.Cmdline, strings.Join(command[1:], " ")) {
				t.Errorf("checkpointctl process tree %+v, want pid %d testapp %q", *n.ProcessTree, r.Processes[0].PID, strings.Join(command, " "))
			}

			// Import it into a checkpoint directory of its own and restore from there.
			root2 := filepath.Join(t.TempDir(), "cr")
			if p, code := harness.Run(t, harness.Options{}, time.Minute, "import", file, filepath.Join(root2, "apps", "app")); code != 0 {
				t.Fatalf("crwrap import exited %d\nstderr:\n%s", code, p.Stderr)
			}
			rp := harness.Start(t, harness.Options{}, crwrapArgs("restore", props(root2, "cr.restore.verify=digest"))...)
			harness.WaitOutput(t, rp, rp.Stderr, `"phase":"summary"`, time.Minute)
			if strings.Contains(rp.Stderr.String(), `"phase":"fallback"`) || !strings.Contains(rp.Stderr.String(), `"phase":"restore"`) {
				t.Fatalf("crwrap restore of the imported checkpoint did not restore\nstderr:\n%s", rp.Stderr)
			}
			got, err := harness.Get("http://" + addr + "/value")
			if err != nil || got != string(value) {
				t.Errorf("restored /value = %q (%v), want %q", got, err, value)
			}
			rp.Signal(t, syscall.SIGTERM)
			if code := rp.Wait(t, time.Minute); code != 0 {
				t.Errorf("restored crwrap exited %d after SIGTERM, want 0\nstderr:\n%s", code, rp.Stderr)
			}
		})
	}
}

// checkArchives exports dir in every compression, has checkpointctl show and inspect each
// archive, and imports it back.
func checkArchives(t *testing.T, cctl, dir, container string, pid int) {
	want, err := inspect.Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := checkpoint.ReadConfigDump(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []archive.Compression{archive.CompressionNone, archive.CompressionZstd, archive.CompressionGzip} {
		t.Run("archive-"+string(c), func(t *testing.T) {
			out := t.TempDir()
			name := strings.TrimSuffix(archive.ArchiveName("sleeper-0", "default", "sleeper", time.Now().UTC()), ".tar") + c.Extension()
			file := filepath.Join(out, name)
			if err := archive.ExportFile(dir, file, archive.ExportOptions{}); err != nil {
				t.Fatal(err)
			}

			show := run(t, cctl, "show", file)
			for _, w := range []string{cfg.OCIRuntime, cfg.RootfsImageName, container} {
				if !strings.Contains(show, w) {
					t.Errorf("checkpointctl show lacks %q:\n%s", w, show)
				}
			}

			tree := run(t, cctl, "inspect", "--stats", "--ps-tree", file)
			t.Logf("checkpointctl show:%s\ncheckpointctl inspect --stats --ps-tree:\n%s", show, tree)
			for _, w := range []string{"CRIU dump statistics", fmt.Sprintf("Pages written: %d", want.Stats.PagesWritten), fmt.Sprintf("[%d]", pid)} {
				if !strings.Contains(tree, w) {
					t.Errorf("checkpointctl inspect lacks %q:\n%s", w, tree)
				}
			}

			var nodes []struct {
				Runtime    string `json:"runtime"`
				Statistics *struct {
					PagesWritten uint64 `json:"pages_written"`
					FrozenTime   uint32 `json:"frozen_time"`
				} `json:"statistics"`
				ProcessTree *struct {
					PID     uint32 `json:"pid"`
					Command string `json:"command"`
					Cmdline string `json:"cmdline"`
				} `json:"process_tree"`
			}
			js := run(t, cctl, "inspect", "--stats", "--ps-tree-cmd", "--format", "json", file)
			if err := json.Unmarshal([]byte(js), &nodes); err != nil {
				t.Fatalf("checkpointctl inspect --format json: %v\n%s", err, js)
			}
			if len(nodes) != 1 || nodes[0].Statistics == nil || nodes[0].ProcessTree == nil {
				t.Fatalf("checkpointctl inspect JSON lacks statistics or the process tree:\n%s", js)
			}
			n := nodes[0]
			if n.Statistics.PagesWritten != want.Stats.PagesWritten || n.Statistics.FrozenTime != want.Stats.FrozenTimeUS {
				t.Errorf("checkpointctl statistics %+v, crwrap inspect %+v", *n.Statistics, *want.Stats)
			}
			if n.ProcessTree.PID != uint32(pid) || n.ProcessTree.Command != want.Processes[0].Comm {
				t.Errorf("checkpointctl process tree %+v, want pid %d %s", *n.ProcessTree, pid, want.Processes[0].Comm)
			}
			if container != "" && !strings.Contains(n.ProcessTree.Cmdline, "sleep 1000") {
				t.Errorf("checkpointctl read cmdline %q from the pages, want sleep 1000", n.ProcessTree.Cmdline)
			}

			back := filepath.Join(out, "imported", "sleeper")
			if err := archive.ImportFile(file, back, archive.ImportOptions{}); err != nil {
				t.Fatal(err)
			}
			got, err := inspect.InspectWith(back, inspect.Options{Digests: true})
			if err != nil {
				t.Fatal(err)
			}
			if got.Damaged || got.ProcessCount != want.ProcessCount || got.Sizes.TotalBytes != want.Sizes.TotalBytes {
				t.Errorf("imported checkpoint differs: damaged %v %v, %d processes (want %d), %d bytes (want %d)",
					got.Damaged, got.Reasons, got.ProcessCount, want.ProcessCount, got.Sizes.TotalBytes, want.Sizes.TotalBytes)
			}
		})
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(name), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
