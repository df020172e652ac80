package harness

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RequireBuild fails (or, off CI and not root, skips) unless the crwrap build exists. It is
// for tests that run the binary without needing root (command-line parsing, render).
func RequireBuild(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(Crwrap()); err != nil {
		if os.Getenv("CI") != "" || os.Geteuid() == 0 {
			t.Fatalf("no crwrap build at %s (run make build): %v", Crwrap(), err)
		}
		t.Skipf("no crwrap build at %s (run make build)", Crwrap())
	}
}

// Marked returns the pids of the processes whose command line or environment contains
// marker, except the ones in except.
func Marked(marker string, except ...int) []int {
	skip := map[int]bool{os.Getpid(): true}
	for _, p := range except {
		skip[p] = true
	}
	var pids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || skip[pid] {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(filepath.Join("/proc", d.Name(), f))
			if err == nil && bytes.Contains(b, []byte(marker)) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// KillMarked SIGKILLs the processes Marked finds when the test ends, so that a crwrap bug
// that leaves the app behind does not leave it running after the test.
func KillMarked(t testing.TB, marker string) {
	t.Cleanup(func() {
		for _, pid := range Marked(marker) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// ProcStat is the part of /proc/PID/stat the tests look at.
type ProcStat struct {
	Pid, PPid int
	Comm      string
	State     string
}

// ReadStat parses /proc/PID/stat.
func ReadStat(pid int) (ProcStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ProcStat{}, err
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return ProcStat{}, syscall.EINVAL
	}
	f := strings.Fields(s[closing+1:])
	if len(f) < 2 {
		return ProcStat{}, syscall.EINVAL
	}
	ppid, _ := strconv.Atoi(f[1])
	return ProcStat{Pid: pid, PPid: ppid, Comm: s[open+1 : closing], State: f[0]}, nil
}

// Children returns the stat of every process whose parent is ppid.
func Children(ppid int) []ProcStat {
	var out []ProcStat
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if st, err := ReadStat(pid); err == nil && st.PPid == ppid {
			out = append(out, st)
		}
	}
	return out
}

// CgroupDirs returns the cgroup directories named id under any /sys/fs/cgroup/*/crwrap/
// (and /sys/fs/cgroup/crwrap/ on a pure cgroup v2 host).
func CgroupDirs(id string) []string {
	var roots []string
	if m, _ := filepath.Glob("/sys/fs/cgroup/*/crwrap"); m != nil {
		roots = append(roots, m...)
	}
	roots = append(roots, "/sys/fs/cgroup/crwrap")
	var out []string
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if d.Name() == id {
				out = append(out, p)
				return filepath.SkipDir
			}
			return nil
		})
	}
	return out
}

// RemoveCgroupDirs removes (rmdir) the cgroup directories of id, deepest first, so that a
// crwrap bug that leaks them does not leave them after the test.
func RemoveCgroupDirs(id string) {
	for _, d := range CgroupDirs(id) {
		var sub []string
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				sub = append(sub, p)
			}
			return nil
		})
		for i := len(sub) - 1; i >= 0; i-- {
			_ = syscall.Rmdir(sub[i])
		}
	}
}

var containerIDRe = regexp.MustCompile(`container=(crwrap-[0-9a-f]+)`)

// ContainerID returns the id of the first container crwrap's log names ("" if none yet).
func ContainerID(stderr string) string {
	if m := containerIDRe.FindStringSubmatch(stderr); m != nil {
		return m[1]
	}
	return ""
}

// WaitFor polls cond every 10 ms until it is true or timeout passes, and reports which.
func WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitOutput waits until buf contains s; it fails the test when p exits first or timeout passes.
func WaitOutput(t testing.TB, p *Proc, buf *Buffer, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(buf.String(), s) {
		select {
		case <-p.Done():
			if strings.Contains(buf.String(), s) {
				return
			}
			t.Fatalf("crwrap exited (%d) before printing %q\nstdout:\n%s\nstderr:\n%s", p.code, s, p.Stdout, p.Stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q after %v\nstdout:\n%s\nstderr:\n%s", s, timeout, p.Stdout, p.Stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
