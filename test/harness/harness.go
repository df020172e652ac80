// Package harness is what crwrap's root tests share: finding the built crwrap, building the
// test app, running crwrap as a child process and waiting for HTTP readiness.
//
// Root tests need root, the static crwrap and its CRIU bundle (make build). When one of
// them is missing the tests FAIL where they must run (CI=true, or running as root) and skip
// only on a developer's unprivileged run.
package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Require fails (or, off CI and not root, skips) unless the test can run: root and a build.
func Require(t testing.TB) {
	t.Helper()
	must := os.Getenv("CI") != "" || os.Geteuid() == 0
	if os.Geteuid() != 0 {
		if must {
			t.Fatal("root tests need root (CI runs them as root)")
		}
		t.Skip("root tests need root")
	}
	if _, err := os.Stat(Crwrap()); err != nil {
		t.Fatalf("no crwrap build at %s (run make build): %v", Crwrap(), err)
	}
	if _, err := os.Stat(filepath.Join(BuildDir(), "criu", "VERSION")); err != nil {
		t.Fatalf("no CRIU bundle at %s/criu (run make build): %v", BuildDir(), err)
	}
}

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// BuildDir is $CRWRAP_BUILD or <repo>/build/crwrap.
func BuildDir() string {
	if d := os.Getenv("CRWRAP_BUILD"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), "build", "crwrap")
}

// Crwrap is the path of the static crwrap binary under test.
func Crwrap() string { return filepath.Join(BuildDir(), "bin", "crwrap") }

var (
	appOnce sync.Once
	appPath string
	appErr  error
)

// TestApp builds test/testapp (static) once per test binary and returns its path.
func TestApp(t testing.TB) string {
	t.Helper()
	appOnce.Do(func() {
		dir, err := os.MkdirTemp("", "crwrap-testapp-")
		if err != nil {
			appErr = err
			return
		}
		appPath = filepath.Join(dir, "testapp")
		cmd := exec.Command("go", "build", "-o", appPath, "./test/testapp")
		cmd.Dir = RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			appErr = fmt.Errorf("build testapp: %v: %s", err, out)
		}
	})
	if appErr != nil {
		t.Fatal(appErr)
	}
	return appPath
}

// Buffer is a goroutine-safe bytes.Buffer.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Proc is a running crwrap.
type Proc struct {
	Cmd            *exec.Cmd
	Stdout, Stderr *Buffer
	done           chan struct{}
	code           int
}

// Options for Start.
type Options struct {
	// Env is added to the test's environment.
	Env []string
	// Dir is the working directory.
	Dir string
	// NetNS, when set, runs crwrap in that named network namespace (see NetNS).
	NetNS string
}

// Start runs crwrap with args. The process is killed when the test ends.
func Start(t testing.TB, opts Options, args ...string) *Proc {
	t.Helper()
	name := Crwrap()
	if opts.NetNS != "" {
		// nsenter enters only the network namespace; "ip netns exec" would also give crwrap a
		// mount namespace with a fresh /sys and so no cgroup mounts.
		args = append([]string{"--net=/run/netns/" + opts.NetNS, "--", name}, args...)
		name = "nsenter"
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), opts.Env...)
	cmd.Dir = opts.Dir
	p := &Proc{Cmd: cmd, Stdout: &Buffer{}, Stderr: &Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Stdout, p.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start crwrap: %v", err)
	}
	go func() {
		err := cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.code = 128 + int(ws.Signal())
		}
		_ = err
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("crwrap %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), p.Stdout, p.Stderr)
		}
	})
	return p
}

// Run runs crwrap to completion (at most timeout) and returns its exit code.
func Run(t testing.TB, opts Options, timeout time.Duration, args ...string) (*Proc, int) {
	t.Helper()
	p := Start(t, opts, args...)
	return p, p.Wait(t, timeout)
}

// Wait waits for crwrap to exit and returns its exit code (128+N when killed by signal N).
func (p *Proc) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		t.Fatalf("crwrap still running after %v\nstdout:\n%s\nstderr:\n%s", timeout, p.Stdout, p.Stderr)
		return -1
	}
}

// Done is closed when crwrap exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Signal sends sig to crwrap.
func (p *Proc) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal crwrap: %v", err)
	}
}

// WriteProps writes a properties file with the given lines and returns its path.
func WriteProps(t testing.TB, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cr.properties")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// FreePort returns a TCP port free on 127.0.0.1 right now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Get fetches url and returns the body ("" and the error when it fails or is not 2xx).
func Get(url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return string(b), fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), nil
}

// WaitHTTP polls url until it answers 2xx or timeout passes; p's exit ends the wait early.
func WaitHTTP(t testing.TB, p *Proc, url string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		body, err := Get(url)
		if err == nil {
			return body
		}
		select {
		case <-p.Done():
			t.Fatalf("crwrap exited (%d) before %s answered\nstdout:\n%s\nstderr:\n%s", p.code, url, p.Stdout, p.Stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %v: %v\nstderr:\n%s", url, timeout, err, p.Stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// NetNS creates a named network namespace with loopback up, removed when the test ends.
func NetNS(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("crwrap-test-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	return name
}

// InNetNS runs a command inside the named network namespace and returns its output.
func InNetNS(ns string, name string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...).CombinedOutput()
	return string(out), err
}
