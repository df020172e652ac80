package cr

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

var (
	featureOnce sync.Once
	featurePath string
	featureErr  error
)

// featureApp builds test/featureapp (static) once per test binary and returns a test app that
// holds one kernel object (featureapp -feature NAME -path P).
func newFeatureApp(t *testing.T, feature, path string) *testApp {
	t.Helper()
	a := newTestApp(t)
	featureOnce.Do(func() {
		dir, err := os.MkdirTemp("", "crwrap-featureapp-")
		if err != nil {
			featureErr = err
			return
		}
		featurePath = filepath.Join(dir, "featureapp")
		cmd := exec.Command("go", "build", "-o", featurePath, "./test/featureapp")
		cmd.Dir = harness.RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			featureErr = fmt.Errorf("build featureapp: %v: %s", err, out)
		}
	})
	if featureErr != nil {
		t.Fatal(featureErr)
	}
	a.bin = featurePath
	a.flags = []string{"-feature", feature}
	if path != "" {
		a.flags = append(a.flags, "-path", path)
	}
	return a
}

// check asks the app whether its kernel object still works ("" when it does).
func (a *testApp) check() string {
	a.t.Helper()
	body, err := harness.Get(a.url("/check"))
	if err != nil {
		return fmt.Sprintf("%v: %s", err, body)
	}
	return ""
}

// fileIdentity is featureapp's /identity: st_dev/st_ino of its file at start, now through the
// path, now through the open descriptor.
type fileIdentity struct {
	Start, Path, FD struct{ Dev, Ino uint64 }
}

func (a *testApp) identity() fileIdentity {
	a.t.Helper()
	var id fileIdentity
	if err := json.Unmarshal([]byte(a.get("/identity")), &id); err != nil {
		a.t.Fatalf("/identity: %v", err)
	}
	return id
}

// A file in the app's root filesystem path for a test: in a directory of the pod's root (the
// overlay's lower layer), removed when the test ends. The app's writes there stay in its
// overlay.
func rootfsPath(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "crwrap-fidelity-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, name)
}

// An inotify watch on a file of the app's root filesystem (an overlay) is checkpointed and
// still reports changes after a restore (issue 8 item 3).
func TestInotifyOnRootfsFile(t *testing.T) {
	for _, c := range []struct {
		name  string
		lower bool // the file exists in the pod's root before the app starts
	}{{"lower", true}, {"upper", false}} {
		t.Run(c.name, func(t *testing.T) {
			p := rootfsPath(t, "watched")
			if c.lower {
				if err := os.WriteFile(p, []byte("before\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			a := newFeatureApp(t, "inotify", p)
			a.mustCheckpoint()
			r := a.restoreReady()
			harness.AssertRestored(t, r)
			if msg := a.check(); msg != "" {
				t.Errorf("the restored app's inotify watch: %s", msg)
			}
			harness.Stop(t, r)
		})
	}
}

// tinyRoot is a checkpoint root on a 32 MiB tmpfs of its own (removed when the test ends).
func tinyRoot(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "crwrap-test", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// assertKeptRunning checks that a checkpoint that failed left the very app it was dumping
// running (same memory: the value and the counter the warm-up left) and published nothing.
func assertKeptRunning(t *testing.T, a *testApp, p *harness.Proc) harness.LogEntry {
	t.Helper()
	e := harness.WaitLog(t, p, "phase", "checkpoint-failed", 3*time.Minute)
	if !strings.Contains(e.Str("error"), "nothing published") {
		t.Errorf("checkpoint-failed error %q does not say that nothing was published", e.Str("error"))
	}
	if got, want := a.get("/value"), a.checkpointedValue(); got != want {
		t.Errorf("after the failed checkpoint /value = %q, want the dumped app's %q (the app was restarted?)", got, want)
	}
	if got := a.get("/counter"); got != "4" {
		t.Errorf("after the failed checkpoint /counter = %s, want 4 (the warm-up left it at 3)", got)
	}
	if a.target() != "" {
		t.Errorf("a checkpoint was published: %s", a.target())
	}
	if l := append(a.leftovers(), a.versions()...); len(l) > 0 {
		t.Errorf("the failed checkpoint left %v", l)
	}
	return e
}

// A failure after CRIU's dump (here: the checkpoint directory is full when the root
// filesystem changes are written) does not cost the checkpoint pod its app: it keeps
// running, unchanged, and crwrap serves it until it is terminated (issue 8 item 2).
func TestFailureAfterDumpKeepsApp(t *testing.T) {
	a := newFeatureApp(t, "bigfile", rootfsPath(t, "big"))
	a.root = tinyRoot(t)
	p := harness.Start(t, harness.Options{}, a.args("checkpoint", a.props("cr.checkpoint.exit=false"))...)
	e := assertKeptRunning(t, a, p)
	if harness.FindLog(p, "phase", "dump") == nil {
		t.Fatalf("the checkpoint failed before the dump ended: the test does not exercise a failure after it: %s", e.Str("error"))
	}
	if !strings.Contains(e.Str("error"), "no space left on device") {
		t.Errorf("checkpoint-failed error %q, want the full checkpoint directory", e.Str("error"))
	}
	if msg := a.check(); msg != "" {
		t.Errorf("/check after the failed checkpoint: %s", msg)
	}
	harness.Stop(t, p)
}

// The same failure with cr.checkpoint.exit (a Job) exits 1 and publishes nothing.
func TestFailureAfterDumpExits(t *testing.T) {
	a := newFeatureApp(t, "bigfile", rootfsPath(t, "big"))
	a.root = tinyRoot(t)
	p, code := a.checkpoint(harness.Options{})
	if code != 1 {
		t.Errorf("checkpoint exited %d, want 1", code)
	}
	if !strings.Contains(p.Stderr.String(), "nothing published") {
		t.Errorf("crwrap does not say that nothing was published\nstderr:\n%s", p.Stderr)
	}
	if a.target() != "" || len(a.leftovers()) > 0 || len(a.versions()) > 0 {
		t.Errorf("published %q, left %v %v", a.target(), a.leftovers(), a.versions())
	}
}

// A dump that never ends (CRIU cannot seize a stopped child while the cgroup-v1 freezer holds
// it) is stopped after cr.checkpoint.timeout: the app keeps running with its child still
// stopped, nothing is published, and neither a temporary version nor CRIU's work directory
// is left (issue 8 item 5).
func TestCheckpointTimeout(t *testing.T) {
	a := newFeatureApp(t, "stopped-child", "")
	work := t.TempDir()
	p := harness.Start(t, harness.Options{Env: []string{"CRWRAP_WORK_DIR=" + work}},
		a.args("checkpoint", a.props("cr.checkpoint.exit=false", "cr.checkpoint.timeout=3s"))...)
	e := assertKeptRunning(t, a, p)
	if !strings.Contains(e.Str("error"), "cr.checkpoint.timeout") {
		t.Errorf("checkpoint-failed error %q does not name cr.checkpoint.timeout", e.Str("error"))
	}
	if msg := a.check(); msg != "" {
		t.Errorf("/check after the timed-out checkpoint: %s", msg)
	}
	if m, _ := filepath.Glob(filepath.Join(work, "*", "criu-dump")); len(m) > 0 {
		t.Errorf("CRIU's work directory is left: %v", m)
	}
	for _, c := range harness.Children(p.Cmd.Process.Pid) {
		if strings.Contains(c.Comm, "criu") || strings.Contains(c.Comm, "ld-linux") {
			t.Errorf("CRIU still runs: pid %d (%s)", c.Pid, c.Comm)
		}
	}
	harness.Stop(t, p)
}

// An app holding a deleted 2 MiB file checkpoints only with cr.criu.ghost-limit above CRIU's
// default of 1 MiB, and the restored app reads the file's content (issue 8 item 6: CRIU
// options reach CRIU, also those libcontainer has no field for).
func TestCRIUGhostLimit(t *testing.T) {
	a := newFeatureApp(t, "ghost-file", rootfsPath(t, "deleted"))
	p, code := a.checkpoint(harness.Options{})
	if code != 1 || !strings.Contains(p.Stderr.String(), "ghost") {
		t.Fatalf("checkpoint with the default ghost limit exited %d, want 1 and CRIU's ghost file error\nstderr:\n%s", code, p.Stderr)
	}
	a.mustCheckpoint("cr.criu.ghost-limit=4M")
	r := a.restoreReady("cr.criu.ghost-limit=4M")
	harness.AssertRestored(t, r)
	if msg := a.check(); msg != "" {
		t.Errorf("the restored app's deleted file: %s", msg)
	}
	harness.Stop(t, r)
}

// cr.criu.options accepts only CRIU options crwrap knows, each mapped onto CRIU.
func TestCRIUOptionsValidated(t *testing.T) {
	a := newTestApp(t)
	p, code := a.checkpoint(harness.Options{}, "cr.criu.options=link-remap,--leave-running")
	if code != 2 {
		t.Errorf("an unknown CRIU option: exit %d, want 2", code)
	}
	if !strings.Contains(p.Stderr.String(), "cr.criu.options") || !strings.Contains(p.Stderr.String(), `"--leave-running"`) {
		t.Errorf("the error does not name the key and the option\nstderr:\n%s", p.Stderr)
	}
	a.mustCheckpoint("cr.criu.options=link-remap,file-locks,tcp-skip-in-flight,ext-unix-sk,force-irmap", "cr.criu.irmap-scan-paths=/var/tmp,/opt")
	r := a.restoreReady("cr.criu.options=link-remap,file-locks,tcp-skip-in-flight,ext-unix-sk,force-irmap,skip-file-rwx-check,tcp-close")
	harness.AssertRestored(t, r)
	harness.Stop(t, r)
}

// A file lock on a root filesystem file is held again after a restore, and the path and the
// open descriptor still name the same file. What changes (issue 8 item 4, README Limits): a
// file of the pod's root the app only read keeps its st_ino, one the app created or wrote
// (its overlay's upper layer, rebuilt from rootfs-diff.tar) gets a new st_ino, and st_dev
// is the device of an overlay mounted for each container, which may differ.
func TestLockedFileIdentity(t *testing.T) {
	for _, c := range []struct {
		name, feature string
		lower         bool // the file is in the pod's root before the app starts
		sameIno       bool // the documented outcome for st_ino
	}{
		{"read-only-lower", "open-file", true, true},
		{"flock-lower", "flock", true, false}, // opened for writing: copied up
		{"flock-upper", "flock", false, false},
		{"ofd-lock-lower", "ofd-lock", true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := rootfsPath(t, "locked")
			if c.lower {
				if err := os.WriteFile(p, []byte("pid\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			a := newFeatureApp(t, c.feature, p)
			a.mustCheckpoint()
			r := a.restoreReady()
			harness.AssertRestored(t, r)
			if msg := a.check(); msg != "" {
				t.Errorf("the restored app's lock: %s", msg)
			}
			id := a.identity()
			t.Logf("identity: %+v", id)
			if id.Path != id.FD {
				t.Errorf("after the restore the path and the descriptor name different files: stat %+v, fstat %+v", id.Path, id.FD)
			}
			if same := id.Path.Ino == id.Start.Ino; same != c.sameIno {
				t.Errorf("st_ino %d at start, %d after the restore: same=%t, README's Limits say %t", id.Start.Ino, id.Path.Ino, same, c.sameIno)
			}
			harness.Stop(t, r)
		})
	}
}

// One small program per kernel feature is checkpointed and restored, and the restored object
// still works; what does not work yet fails the way README's Limits say. When a row starts
// to work (or fails differently), update the row and README together.
func TestKernelFeatures(t *testing.T) {
	for _, c := range []struct {
		feature string
		path    bool     // the object is on a file of the app's root filesystem
		extra   []string // properties for checkpoint and restore
		// What README's Limits say for what does not work yet: the checkpoint fails, or the
		// restore falls back, with this in the error ("": everything works).
		dumpFails, restoreFails string
	}{
		{feature: "inotify", path: true},
		{feature: "fanotify", path: true},
		{feature: "flock", path: true},
		{feature: "ofd-lock", path: true},
		{feature: "posix-timer"},
		{feature: "sysv-shm"},
		{feature: "posix-shm"},
		{feature: "eventfd"},
		{feature: "signalfd"},
		{feature: "timerfd"},
		{feature: "memfd"},
		{feature: "ghost-file", path: true, extra: []string{"cr.criu.ghost-limit=4M"}},
		{feature: "fifo", path: true},
		{feature: "unix-socket", path: true},
	} {
		t.Run(c.feature, func(t *testing.T) {
			p := ""
			if c.path {
				p = rootfsPath(t, "object")
			}
			a := newFeatureApp(t, c.feature, p)
			cp, code := a.checkpoint(harness.Options{}, c.extra...)
			if c.dumpFails != "" {
				if code == 0 || !strings.Contains(cp.Stderr.String(), c.dumpFails) {
					t.Fatalf("checkpoint exited %d; the table says it fails with %q: update the table and README\nstderr:\n%s", code, c.dumpFails, cp.Stderr)
				}
				return
			}
			if code != 0 {
				t.Fatalf("checkpoint exited %d\nstderr:\n%s", code, cp.Stderr)
			}
			r := a.restore(harness.Options{}, c.extra...)
			harness.WaitLog(t, r, "phase", "ready", time.Minute)
			if c.restoreFails != "" {
				if e := harness.FindLog(r, "phase", "fallback"); e == nil || !strings.Contains(e.Str("error"), c.restoreFails) {
					t.Fatalf("the table says the restore falls back with %q: update the table and README\nstderr:\n%s", c.restoreFails, r.Stderr)
				}
				harness.Stop(t, r)
				return
			}
			harness.AssertRestored(t, r)
			if msg := a.check(); msg != "" {
				t.Errorf("after the restore: %s", msg)
			}
			harness.Stop(t, r)
		})
	}
}

// With cr.criu.tcp-established an app holding a connection to a peer outside still
// checkpoints and restores in the same network namespace: CRIU, not crwrap, stops it at the
// end of the dump, with its connections locked for the restore.
func TestTCPEstablishedCheckpoint(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 16)
	t.Cleanup(func() {
		l.Close()
		for {
			select {
			case c := <-conns:
				c.Close()
			default:
				return
			}
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			select {
			case conns <- c:
			default:
				c.Close()
			}
		}
	}()
	a := newTestApp(t, "-connect", l.Addr().String())
	want := a.mustCheckpoint("cr.criu.tcp-established=true")
	r := a.restoreReady("cr.criu.tcp-established=true")
	harness.AssertRestored(t, r)
	if got := a.get("/value"); got != want {
		t.Errorf("/value = %q, want the checkpointed %q", got, want)
	}
	harness.Stop(t, r)
}
