package runmode

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// The app's stdout and stderr reach crwrap's, every line, whole and in order.
func TestOutputLines(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	app := harness.TestApp(t)
	const n = 5000
	p, code := harness.Run(t, e.opts(), 60*time.Second, "run", "--", app, "lines", strconv.Itoa(n))
	if code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	stdout := p.Stdout.String()
	if !strings.HasSuffix(stdout, "\n") {
		t.Errorf("stdout does not end with a newline: %q", tail(stdout))
	}
	out := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(out) != n {
		t.Errorf("stdout has %d lines, want %d", len(out), n)
	}
	for i, l := range out {
		if want := fmt.Sprintf("out %d %s", i, strings.Repeat("x", i%100)); l != want {
			t.Errorf("stdout line %d = %q, want %q", i+1, l, want)
			break
		}
	}
	var errLines []string
	for _, l := range strings.Split(strings.TrimSuffix(p.Stderr.String(), "\n"), "\n") {
		switch {
		case strings.HasPrefix(l, "err "):
			errLines = append(errLines, l)
		case strings.HasPrefix(l, "time="):
			// crwrap's own log
		default:
			t.Errorf("stderr has a line that is neither the app's nor crwrap's log (a torn line?): %q", l)
		}
	}
	if len(errLines) != n {
		t.Errorf("stderr has %d app lines, want %d", len(errLines), n)
	}
	for i, l := range errLines {
		if want := fmt.Sprintf("err %d", i); l != want {
			t.Errorf("app's stderr line %d = %q, want %q", i+1, l, want)
			break
		}
	}
}

// crwrap exits with the app's status.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		app    []string
		want   int
		stdout string
	}{
		{"exit 7", []string{"sh", "-c", "echo hi; exit 7"}, 7, "hi\n"},
		{"exit 0", []string{"sh", "-c", "exit 0"}, 0, ""},
		{"exit 255", []string{"sh", "-c", "exit 255"}, 255, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			p, code := harness.Run(t, e.opts(), 20*time.Second, append([]string{"run", "--"}, tc.app...)...)
			if code != tc.want {
				t.Errorf("exit code %d, want %d\nstderr:\n%s", code, tc.want, p.Stderr)
			}
			if got := p.Stdout.String(); got != tc.stdout {
				t.Errorf("stdout %q, want %q", got, tc.stdout)
			}
		})
	}
}

// An app killed by a signal makes crwrap exit 128+N. The app is PID 1 of its PID namespace,
// where the kernel drops a SIGKILL it sends itself (sh -c 'kill -KILL $$' exits 0, as in any
// container), so the test kills it from outside, as the OOM killer or a node would.
func TestExitCodeKilledBySignal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.start(e.opts(), nil, "sh", "-c", "echo up; sleep 1000; exit 3")
	harness.WaitOutput(t, p, p.Stdout, "up", 10*time.Second)
	var shell int
	if !harness.WaitFor(5*time.Second, func() bool {
		for _, pid := range e.appPids(p) {
			if st, err := harness.ReadStat(pid); err == nil && st.Comm == "sh" {
				shell = pid
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no app shell (marker %s) found in /proc", e.marker)
	}
	if err := syscall.Kill(shell, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := p.Wait(t, 10*time.Second); code != 137 {
		t.Errorf("exit code %d after SIGKILL of the app, want 137", code)
	}
}

// A missing executable is exit 127 and one line on stderr that names it.
func TestMissingExecutable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p, code := harness.Run(t, e.opts(), 20*time.Second, "run", "--", "/nope")
	if code != 127 {
		t.Errorf("exit code %d, want 127", code)
	}
	lines := nonLogLines(p.Stderr.String())
	if len(lines) != 1 || !strings.Contains(lines[0], "/nope") {
		t.Errorf("stderr (besides log lines) = %q, want one line naming /nope", lines)
	}
	if p.Stdout.String() != "" {
		t.Errorf("stdout = %q, want nothing", p.Stdout)
	}
}

var signals = []struct {
	sig  syscall.Signal
	name string
}{
	{syscall.SIGTERM, "SIGTERM"},
	{syscall.SIGINT, "SIGINT"},
	{syscall.SIGHUP, "SIGHUP"},
	{syscall.SIGQUIT, "SIGQUIT"},
	{syscall.SIGUSR1, "SIGUSR1"},
	{syscall.SIGUSR2, "SIGUSR2"},
}

// Each forwarded signal sent to crwrap reaches the app; SIGTERM stops it, and crwrap exits
// with the app's status (testapp exits 10+15 on SIGTERM).
func TestSignalsForwarded(t *testing.T) {
	t.Parallel()
	for _, s := range signals {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			p := e.start(e.opts(), nil, harness.TestApp(t), "signals")
			harness.WaitOutput(t, p, p.Stdout, "ready\n", 10*time.Second)
			p.Signal(t, s.sig)
			harness.WaitOutput(t, p, p.Stdout, "got "+s.name+"\n", 5*time.Second)
			if s.sig != syscall.SIGTERM {
				select {
				case <-p.Done():
					t.Fatalf("crwrap exited after %s", s.name)
				case <-time.After(100 * time.Millisecond):
				}
				p.Signal(t, syscall.SIGTERM)
			}
			if code := p.Wait(t, 10*time.Second); code != 10+int(syscall.SIGTERM) {
				t.Errorf("exit code %d, want %d (the app's)", code, 10+int(syscall.SIGTERM))
			}
			if pids := e.appPids(nil); len(pids) > 0 {
				t.Errorf("app processes left after exit: %v", pids)
			}
		})
	}
}

// SIGTERM to crwrap stops an app that installed no handler (the kernel ignores a SIGTERM to
// a PID namespace's init that has none) and crwrap exits 143 within a few seconds, leaving
// no process behind.
func TestSigtermStopsAppWithoutHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.start(e.opts(), nil, "sleep", "1000")
	if !harness.WaitFor(10*time.Second, func() bool { return len(e.appPids(p)) > 0 }) {
		t.Fatalf("the app (marker %s) never showed up in /proc\nstderr:\n%s", e.marker, p.Stderr)
	}
	start := time.Now()
	p.Signal(t, syscall.SIGTERM)
	code := p.Wait(t, 8*time.Second)
	t.Logf("crwrap exited %d in %v after SIGTERM", code, time.Since(start).Round(time.Millisecond))
	if code != 143 {
		t.Errorf("exit code %d, want 143", code)
	}
	if pids := e.appPids(nil); len(pids) > 0 {
		t.Errorf("app processes left after exit: %v", pids)
	}
}

// After crwrap exits: no process of the app, no container state, no cgroup, no mount.
func TestNoLeftovers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// a background child of the app as well: it dies with the app's PID namespace
	p := e.start(e.opts(), nil, "sh", "-c", "sleep 1000 & exec "+harness.TestApp(t)+" signals")
	harness.WaitOutput(t, p, p.Stdout, "ready\n", 10*time.Second)
	id := waitID(t, p)
	crwrapPid := p.Cmd.Process.Pid

	// While it runs, each check finds what it looks for: the checks after exit can fail.
	if pids := e.appPids(p); len(pids) < 2 {
		t.Errorf("while running: %d app processes found by marker, want the app and its child", len(pids))
	}
	if !contains(e.stateEntries(), id) {
		t.Errorf("while running: state dir %s has %v, no %s", e.state, e.stateEntries(), id)
	}
	if len(harness.CgroupDirs(id)) == 0 {
		t.Errorf("while running: no cgroup dir named %s under /sys/fs/cgroup/*/crwrap", id)
	}
	if len(hostMountsMentioning(t, crwrapPid, id)) == 0 {
		t.Errorf("while running: crwrap's mountinfo names no mount of %s", id)
	}
	if m := hostMountsMentioning(t, 0, id); len(m) > 0 {
		t.Errorf("while running: the host's mount namespace has crwrap's mounts (they belong in its private one): %q", m)
	}

	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 10*time.Second); code != 25 {
		t.Errorf("exit code %d, want 25 (the app's)", code)
	}
	t.Cleanup(func() { harness.RemoveCgroupDirs(id) })
	if pids := e.appPids(nil); len(pids) > 0 {
		t.Errorf("app processes left after exit: %v", pids)
	}
	for _, n := range e.stateEntries() {
		if strings.HasPrefix(n, id) {
			t.Errorf("state left after exit: %s", filepath.Join(e.state, n))
		}
	}
	if d := harness.CgroupDirs(id); len(d) > 0 {
		t.Errorf("cgroups left after exit: %v", d)
	}
	if m := hostMountsMentioning(t, 0, id); len(m) > 0 {
		t.Errorf("mounts left after exit: %q", m)
	}
	for _, l := range hostMountsMentioning(t, 0, "crwrap") {
		if f := strings.Fields(l); len(f) > 4 && (f[4] == "/run/crwrap" || strings.HasPrefix(f[4], "/run/crwrap/")) {
			t.Errorf("a crwrap work mount in the host's mount namespace: %q", l)
		}
	}
}

// kill -9 of crwrap takes the app with it: its guard process kills the app and removes the
// container's state and cgroups.
func TestKilledCrwrap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.start(e.opts(), nil, "sh", "-c", "sleep 1000 & exec "+harness.TestApp(t)+" signals")
	harness.WaitOutput(t, p, p.Stdout, "ready\n", 10*time.Second)
	id := waitID(t, p)
	t.Cleanup(func() { harness.RemoveCgroupDirs(id) })
	if !harness.WaitFor(3*time.Second, func() bool { return len(guardPids(id)) == 1 }) {
		t.Fatalf("no guard process for %s", id)
	}
	if err := p.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if code := p.Wait(t, 5*time.Second); code != 137 {
		t.Fatalf("crwrap exit %d after SIGKILL, want 137", code)
	}
	if !harness.WaitFor(5*time.Second, func() bool { return len(e.appPids(nil)) == 0 }) {
		t.Errorf("the app outlived kill -9 of crwrap by 5s: %v", e.appPids(nil))
	}
	if !harness.WaitFor(5*time.Second, func() bool {
		return !contains(e.stateEntries(), id) && len(harness.CgroupDirs(id)) == 0 && len(guardPids(id)) == 0
	}) {
		t.Errorf("after kill -9: state %v, cgroups %v, guard %v of %s left", e.stateEntries(), harness.CgroupDirs(id), guardPids(id), id)
	}
}

// When crwrap and its guard are both killed (a node losing power mid-way does that, as
// does a kill of the whole process tree), the next crwrap start kills the app and removes
// the container state and cgroups left behind.
func TestKilledCrwrapAndGuard(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.start(e.opts(), nil, "sh", "-c", "sleep 1000 & exec "+harness.TestApp(t)+" signals")
	harness.WaitOutput(t, p, p.Stdout, "ready\n", 10*time.Second)
	id := waitID(t, p)
	t.Cleanup(func() { harness.RemoveCgroupDirs(id) })
	if !harness.WaitFor(3*time.Second, func() bool { return len(guardPids(id)) == 1 }) {
		t.Fatalf("no guard process for %s", id)
	}
	for _, g := range guardPids(id) {
		_ = syscall.Kill(g, syscall.SIGKILL)
	}
	if err := p.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if code := p.Wait(t, 5*time.Second); code != 137 {
		t.Fatalf("crwrap exit %d after SIGKILL, want 137", code)
	}
	time.Sleep(200 * time.Millisecond)
	if !contains(e.stateEntries(), id) || len(harness.CgroupDirs(id)) == 0 || len(e.appPids(nil)) == 0 {
		t.Fatalf("precondition: with crwrap and its guard killed, state (%v), cgroups (%v) and the app (%v) of %s remain",
			e.stateEntries(), harness.CgroupDirs(id), e.appPids(nil), id)
	}

	next, code := harness.Run(t, e.opts(), 20*time.Second, "run", "--", "true")
	if code != 0 {
		t.Fatalf("next crwrap exit %d, want 0", code)
	}
	if !strings.Contains(next.Stderr.String(), id) {
		t.Errorf("next crwrap did not log the stale container %s it removed", id)
	}
	for _, n := range e.stateEntries() {
		if strings.HasPrefix(n, id) {
			t.Errorf("next start left stale state: %s", filepath.Join(e.state, n))
		}
	}
	if d := harness.CgroupDirs(id); len(d) > 0 {
		t.Errorf("next start left the stale cgroups: %v", d)
	}
	if pids := e.appPids(nil); len(pids) > 0 {
		t.Errorf("next start left the stale app's processes: %v", pids)
	}
}

// guardPids finds the guard processes of container id by their command line.
func guardPids(id string) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 3 && args[0] == "crwrap-guard" && args[3] == id {
			out = append(out, pid)
		}
	}
	return out
}

// crwrap reaps orphans re-parented to it: the readiness command leaves one behind. (The
// probe runs in a process group that crwrap kills when the probe's shell exits, so the
// shell waits a moment for setsid to take the orphan out of that group first.)
func TestReapsOrphans(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const mark = "0.517" // the orphan is "sleep 0.517"
	p := e.start(e.opts("CR_CONTAINER_READINESS=setsid sh -c 'sleep "+mark+"' & sleep 0.1; exit 0"), nil, harness.TestApp(t), "signals")
	crwrapPid := p.Cmd.Process.Pid
	adopted := false
	harness.WaitFor(3*time.Second, func() bool {
		for _, c := range harness.Children(crwrapPid) {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", c.Pid))
			if strings.Contains(string(b), mark) {
				adopted = true
			}
		}
		return adopted
	})
	if !adopted {
		t.Errorf("the readiness command's orphan (sleep %s) was never re-parented to crwrap (is it a child subreaper?)", mark)
	}
	harness.WaitOutput(t, p, p.Stderr, "time_to_ready_ms", 10*time.Second)
	time.Sleep(1200 * time.Millisecond)
	for _, c := range harness.Children(crwrapPid) {
		if c.State == "Z" {
			t.Errorf("zombie child of crwrap after 1s: %+v", c)
		}
	}
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 10*time.Second); code != 25 {
		t.Errorf("exit code %d, want 25", code)
	}
}

// An app that makes orphans of its own (it is their reaper, as PID 1 of its namespace) keeps
// working, and its orphans go with it. "testapp orphan" is the brief's app; "shell" makes the
// same kind of orphan with a shell and testapp signals as PID 1.
func TestOrphanInsideApp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		app     func(t *testing.T) []string
		started string
		code    int // exit code after SIGTERM, -1: any
	}{
		{"testapp orphan", func(t *testing.T) []string { return []string{harness.TestApp(t), "orphan"} }, "orphan started\n", -1},
		{"shell", func(t *testing.T) []string {
			return []string{"sh", "-c", "sh -c 'sleep 300 & echo grandchild $!'; echo orphan started; exec " + harness.TestApp(t) + " signals"}
		}, "ready\n", 25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			p := e.start(e.opts(), nil, tc.app(t)...)
			harness.WaitOutput(t, p, p.Stdout, tc.started, 10*time.Second)
			if !regexp.MustCompile(`(?m)^grandchild \d+$`).MatchString(p.Stdout.String()) {
				t.Errorf("no grandchild line: %q", p.Stdout)
			}
			time.Sleep(300 * time.Millisecond)
			select {
			case <-p.Done():
				t.Fatalf("crwrap exited with %d: the app, with an orphan of its own, should keep running", p.Wait(t, time.Second))
			default:
			}
			sleeping := false
			for _, pid := range e.appPids(p) {
				if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); string(b) == "sleep\x00300\x00" {
					if st, err := harness.ReadStat(pid); err == nil && st.State != "Z" {
						sleeping = true
					}
				}
			}
			if !sleeping {
				t.Errorf("the app's orphan (sleep 300) is not running")
			}
			for _, c := range harness.Children(p.Cmd.Process.Pid) {
				if c.State == "Z" {
					t.Errorf("zombie child of crwrap: %+v", c)
				}
			}
			p.Signal(t, syscall.SIGTERM)
			code := p.Wait(t, 10*time.Second)
			if tc.code >= 0 && code != tc.code {
				t.Errorf("exit code %d after SIGTERM, want %d", code, tc.code)
			}
			if pids := e.appPids(nil); len(pids) > 0 {
				t.Errorf("app processes (the orphan?) left after exit: %v", pids)
			}
		})
	}
}

// The app gets crwrap's working directory, environment and user (uid, gid, groups).
func TestWorkdirEnvUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	o := e.opts("FOO=bar baz")
	o.Dir = dir
	p := harness.StartWrapped(t, []string{"setpriv", "--regid", "1234", "--groups", "5678", "--"}, o,
		"run", "--", "sh", "-c", `pwd; echo "$FOO"; id -u; id -g; id -G`)
	if code := p.Wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	want := strings.Join([]string{dir, "bar baz", "0", "1234", "1234 5678"}, "\n") + "\n"
	if got := p.Stdout.String(); got != want {
		t.Errorf("the app saw (pwd, $FOO, uid, gid, groups)\n%q\nwant\n%q", got, want)
	}
}

// cr.container.mounts bind-mounts a pod path into the app, read-write. The path is a tmpfs
// of its own, which the app's root (a non-recursive bind of "/") would not show otherwise.
func TestContainerMounts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vol := tmpfs(t)
	if err := os.WriteFile(filepath.Join(vol, "in"), []byte(e.marker+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("cat %s/in && echo written-by-app > %s/out", vol, vol)
	p, code := harness.Run(t, e.opts("CR_CONTAINER_MOUNTS="+vol), 20*time.Second, "run", "--", "sh", "-c", script)
	if code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if got := p.Stdout.String(); got != e.marker+"\n" {
		t.Errorf("the app read %q from the mount, want %q", got, e.marker+"\n")
	}
	if b, err := os.ReadFile(filepath.Join(vol, "out")); err != nil || string(b) != "written-by-app\n" {
		t.Errorf("the file the app wrote: %q, %v; want %q", b, err, "written-by-app\n")
	}

	// Without the setting the tmpfs stays invisible: the check above means something.
	_, code = harness.Run(t, e.opts(), 20*time.Second, "run", "--", "sh", "-c", "test -e "+vol+"/in")
	if code == 0 {
		t.Errorf("without cr.container.mounts the app sees %s/in: mounts under / leak into the app", vol)
	}
}

// The app's root is the host's root filesystem, with /etc/hosts, /etc/resolv.conf and
// /etc/hostname passed through; the checkpoint root (a mount) is not visible in it.
func TestFilesystemView(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	crRoot := tmpfs(t)
	if err := os.WriteFile(filepath.Join(crRoot, "secret"), []byte("checkpoint images"), 0o600); err != nil {
		t.Fatal(err)
	}
	onRoot := filepath.Join(t.TempDir(), "on-root")
	if err := os.WriteFile(onRoot, []byte(e.marker), 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`set -e
cat %s; echo
ls -A %s | wc -l
for f in /etc/hosts /etc/resolv.conf /etc/hostname; do echo "== $f"; cat $f; done
echo "== mounts"
awk '{print $5}' /proc/self/mountinfo`, onRoot, crRoot)
	p, code := harness.Run(t, e.opts("CR_CHECKPOINT_ROOT="+crRoot), 20*time.Second, "run", "--", "sh", "-c", script)
	if code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	parts := strings.Split(p.Stdout.String(), "\n== ")
	head := strings.Split(parts[0], "\n")
	if len(head) < 2 || head[0] != e.marker {
		t.Errorf("the app read %q from %s on the host's root, want %q", head, onRoot, e.marker)
	}
	if len(head) >= 2 && strings.TrimSpace(head[1]) != "0" {
		t.Errorf("the app sees %s entries in the checkpoint root %s, want it empty (not mounted in)", head[1], crRoot)
	}
	seen := map[string]string{}
	for _, part := range parts[1:] {
		name, body, _ := strings.Cut(part, "\n")
		seen[name] = body
	}
	mountPoints := strings.Fields(seen["mounts"])
	for _, f := range []string{"/etc/hosts", "/etc/resolv.conf", "/etc/hostname"} {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Logf("host has no %s: %v", f, err)
			continue
		}
		if got, ok := seen[f]; !ok || strings.TrimSuffix(got, "\n") != strings.TrimSuffix(string(want), "\n") {
			t.Errorf("the app's %s = %q, want the host's %q", f, got, want)
		}
		if !contains(mountPoints, f) {
			t.Errorf("%s is not bind-mounted into the app (mount points %v): a pod's own file would be hidden", f, mountPoints)
		}
	}
	if contains(mountPoints, crRoot) {
		t.Errorf("the checkpoint root %s is a mount point in the app", crRoot)
	}
}

// An HTTP readiness probe: crwrap logs the time to ready, at least the app's warm-up.
func TestReadinessHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	port := harness.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := e.start(e.opts(), []string{"--set", "cr.container.readiness=http://" + addr + "/ready"},
		harness.TestApp(t), "serve", addr, "-warmup", "300ms")
	harness.WaitOutput(t, p, p.Stderr, "time_to_ready_ms=", 20*time.Second)
	m := regexp.MustCompile(`time_to_ready_ms=(\d+)`).FindStringSubmatch(p.Stderr.String())
	if m == nil {
		t.Fatalf("no time_to_ready_ms=N in stderr:\n%s", p.Stderr)
	}
	ms, _ := strconv.Atoi(m[1])
	if ms < 300 || ms > 5000 {
		t.Errorf("time_to_ready_ms=%d, want between the 300 ms warm-up and 5 s", ms)
	}
	if _, err := harness.Get("http://" + addr + "/ready"); err != nil {
		t.Errorf("logged ready but /ready fails: %v", err)
	}
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit code %d, want 0 (testapp serve exits 0 on SIGTERM)", code)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func tail(s string) string {
	if len(s) > 200 {
		return s[len(s)-200:]
	}
	return s
}
