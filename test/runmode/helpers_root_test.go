package runmode

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// env is one test's isolated crwrap: its own state directory and an empty properties file
// (so that a host's /etc/cr.properties plays no part), plus a marker that every process of
// the app carries in its environment (MARK is not a CRWRAP_* variable, so crwrap passes it on).
type env struct {
	t      *testing.T
	state  string
	props  string
	marker string
}

func newEnv(t *testing.T, propLines ...string) *env {
	t.Helper()
	harness.Require(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	e := &env{
		t:      t,
		state:  t.TempDir(),
		props:  harness.WriteProps(t, append([]string{"# runmode test"}, propLines...)...),
		marker: "runmode-mark-" + hex.EncodeToString(b),
	}
	harness.KillMarked(t, e.marker)
	return e
}

// opts are the harness options that give crwrap this env.
func (e *env) opts(extra ...string) harness.Options {
	return harness.Options{Env: append([]string{
		"CRWRAP_STATE_DIR=" + e.state,
		"CR_PROPERTIES=" + e.props,
		"RUNMODE_MARK=" + e.marker,
	}, extra...)}
}

// start runs crwrap run [flags] -- app...
func (e *env) start(o harness.Options, flags []string, app ...string) *harness.Proc {
	e.t.Helper()
	args := append(append([]string{"run"}, flags...), "--")
	return harness.Start(e.t, o, append(args, app...)...)
}

// appPids are the live processes of the app (everything with the marker but crwrap).
func (e *env) appPids(p *harness.Proc) []int {
	except := []int{}
	if p != nil && p.Cmd.Process != nil {
		except = append(except, p.Cmd.Process.Pid)
	}
	return harness.Marked(e.marker, except...)
}

// stateEntries lists what is in the state directory.
func (e *env) stateEntries() []string {
	ents, err := os.ReadDir(e.state)
	if err != nil {
		e.t.Fatalf("read state dir: %v", err)
	}
	var out []string
	for _, d := range ents {
		out = append(out, d.Name())
	}
	return out
}

// waitID waits for crwrap to log its container's id.
func waitID(t *testing.T, p *harness.Proc) string {
	t.Helper()
	var id string
	if !harness.WaitFor(10*time.Second, func() bool { id = harness.ContainerID(p.Stderr.String()); return id != "" }) {
		t.Fatalf("crwrap logged no container id\nstderr:\n%s", p.Stderr)
	}
	return id
}

// hostMountsMentioning returns the lines of mountinfo (of pid, or this process when 0) that
// contain s.
func hostMountsMentioning(t *testing.T, pid int, s string) []string {
	t.Helper()
	path := "/proc/self/mountinfo"
	if pid != 0 {
		path = filepath.Join("/proc", strconv.Itoa(pid), "mountinfo")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// tmpfs mounts a fresh tmpfs on a new directory under the test's temp dir (in the host's
// mount namespace) and unmounts it when the test ends.
func tmpfs(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// nonLogLines are stderr's lines that are not crwrap's logrus lines.
func nonLogLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if l == "" || strings.HasPrefix(l, "time=") || strings.HasPrefix(l, `{"`) {
			continue
		}
		out = append(out, l)
	}
	return out
}
