package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crwrap/crwrap/test/harness"
)

// event is one JSON log line of crwrap, with the time this program read it.
type event struct {
	Fields map[string]any
	At     time.Time
}

func (e event) str(k string) string {
	s, _ := e.Fields[k].(string)
	return s
}

func (e event) num(k string) (float64, bool) {
	v, ok := e.Fields[k].(float64)
	return v, ok
}

// proc is one crwrap child whose stderr (JSON lines) is parsed as it arrives.
type proc struct {
	cmd     *exec.Cmd
	started time.Time
	stdout  harness.Buffer
	raw     harness.Buffer

	mu     sync.Mutex
	events []event
	notify chan struct{} // closed and replaced on every new event
	done   chan struct{}
	code   int
	exited time.Time
}

// startCrwrap starts crwrap ARGS, in network namespace netns when not empty.
func startCrwrap(netns string, args ...string) (*proc, error) {
	name := crwrapBin
	args = append([]string{args[0], "--log-format", "json"}, args[1:]...)
	if netns != "" {
		// Not `ip netns exec`: it mounts a fresh /sys for the namespace, which hides
		// /sys/fs/cgroup from crwrap ("no cgroup mount found in mountinfo"). nsenter only
		// enters the network namespace, as a pod's network namespace would be.
		args = append([]string{"--net=/var/run/netns/" + netns, "--", name}, args...)
		name = "nsenter"
	}
	p := &proc{notify: make(chan struct{}), done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Stdout = &p.stdout
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	scanDone := make(chan struct{})
	go func() {
		defer close(scanDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			at := time.Now()
			line := sc.Text()
			p.raw.Write([]byte(line + "\n"))
			var f map[string]any
			if json.Unmarshal([]byte(line), &f) != nil {
				continue
			}
			p.mu.Lock()
			p.events = append(p.events, event{Fields: f, At: at})
			close(p.notify)
			p.notify = make(chan struct{})
			p.mu.Unlock()
		}
	}()
	go func() {
		<-scanDone
		_ = p.cmd.Wait()
		p.exited = time.Now()
		p.code = p.cmd.ProcessState.ExitCode()
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.code = 128 + int(ws.Signal())
		}
		close(p.done)
	}()
	return p, nil
}

// phase returns the first event of the given phase.
func (p *proc) phase(name string) (event, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.events {
		if e.str("phase") == name {
			return e, true
		}
	}
	return event{}, false
}

// waitPhase waits until crwrap logs the phase; a fallback, an exit or the timeout is an error.
func (p *proc) waitPhase(name string, timeout time.Duration) (event, error) {
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		ch := p.notify
		p.mu.Unlock()
		if e, ok := p.phase(name); ok {
			return e, nil
		}
		if e, ok := p.phase("fallback"); ok {
			return event{}, fmt.Errorf("crwrap fell back: %v\n%s", e.Fields, p.tail())
		}
		select {
		case <-ch:
		case <-p.done:
			if e, ok := p.phase(name); ok {
				return e, nil
			}
			return event{}, fmt.Errorf("crwrap exited (%d) before phase %s\n%s", p.code, name, p.tail())
		case <-deadline:
			return event{}, fmt.Errorf("no phase %s after %v\n%s", name, timeout, p.tail())
		}
	}
}

// phaseMS is the duration_ms of a logged phase, or -1.
func (p *proc) phaseMS(name string) float64 {
	e, ok := p.phase(name)
	if !ok {
		return -1
	}
	v, ok := e.num("duration_ms")
	if !ok {
		return -1
	}
	return v
}

// summaryMS is the given field of the summary line, or -1.
func (p *proc) summaryMS(field string) float64 {
	e, ok := p.phase("summary")
	if !ok {
		return -1
	}
	v, ok := e.num(field)
	if !ok {
		return -1
	}
	return v
}

// stop sends SIGTERM and waits for the exit (SIGKILL after timeout).
func (p *proc) stop(timeout time.Duration) int {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return p.code
}

// wait waits for the exit.
func (p *proc) wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
		return p.code, nil
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return -1, fmt.Errorf("crwrap still running after %v\n%s", timeout, p.tail())
	}
}

func (p *proc) tail() string {
	s := p.raw.String()
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return "crwrap " + strings.Join(p.cmd.Args, " ") + "\nstderr:\n" + s
}

// pollReady polls http://ADDR/ready every interval, from inside network namespace netns
// when not empty, until it answers 2xx, and returns when it did; the process' exit or the
// timeout end it with an error. It speaks HTTP/1.0 over its own connection so that the socket
// is made on the locked thread that entered the namespace.
func pollReady(p *proc, netns, addr string, interval, timeout time.Duration) (time.Time, error) {
	type res struct {
		at  time.Time
		err error
	}
	ch := make(chan res, 1)
	go func() {
		if netns != "" {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			f, err := os.Open("/var/run/netns/" + netns)
			if err != nil {
				ch <- res{err: err}
				return
			}
			err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
			f.Close()
			if err != nil {
				ch <- res{err: fmt.Errorf("setns %s: %w", netns, err)}
				return
			}
		}
		deadline := time.Now().Add(timeout)
		for {
			if probe(addr) {
				ch <- res{at: time.Now()}
				return
			}
			select {
			case <-p.done:
				ch <- res{err: fmt.Errorf("crwrap exited (%d) before %s answered\n%s", p.code, addr, p.tail())}
				return
			default:
			}
			if time.Now().After(deadline) {
				ch <- res{err: fmt.Errorf("%s not ready after %v\n%s", addr, timeout, p.tail())}
				return
			}
			time.Sleep(interval)
		}
	}()
	r := <-ch
	return r.at, r.err
}

// probe is one GET /ready with a short timeout; true on a 2xx answer.
func probe(addr string) bool {
	d := net.Dialer{Timeout: 500 * time.Millisecond}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "GET /ready HTTP/1.0\r\nHost: bench\r\n\r\n"); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return false
	}
	f := strings.Fields(line)
	return len(f) >= 2 && len(f[1]) == 3 && f[1][0] == '2'
}

// netns creates a named network namespace with loopback up.
func netnsAdd(name string) error {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %v: %s", name, err, out)
	}
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		_ = netnsDel(name)
		return fmt.Errorf("ip link set lo up: %v: %s", err, out)
	}
	return nil
}

func netnsDel(name string) error { return exec.Command("ip", "netns", "del", name).Run() }

// buildTestApp builds test/testapp statically into dir.
func buildTestApp(dir string) (string, error) {
	out := dir + "/testapp"
	cmd := exec.Command("go", "build", "-o", out, "./test/testapp")
	cmd.Dir = harness.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build testapp: %v: %s", err, b)
	}
	return out, nil
}

var errNoStats = errors.New("no CRIU restore statistics")

// crwrapBin is the crwrap under test: a private copy of the build (see snapshotBuild).
var crwrapBin = harness.Crwrap()

// snapshotBuild copies the build (crwrap and its CRIU bundle, symlinks kept) into dir and
// points crwrapBin at the copy, so that a rebuild in the shared tree during a run cannot
// change the binary halfway through.
func snapshotBuild(dir string) error {
	if out, err := exec.Command("cp", "-a", harness.BuildDir(), dir).CombinedOutput(); err != nil {
		return fmt.Errorf("copy the build: %v: %s", err, out)
	}
	crwrapBin = dir + "/bin/crwrap"
	return nil
}
