package readiness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// generous is the upper bound for anything that should be quick: the machine is shared.
const generous = 5 * time.Second

func TestParse(t *testing.T) {
	tests := []struct {
		spec    string
		kind    string // "http", "tcp", "command" or "" for an error
		wantErr string
	}{
		{spec: "http://localhost:8080/health", kind: "http"},
		{spec: "https://10.0.0.1/ready?x=1", kind: "http"},
		{spec: "HTTP://localhost/", kind: "http"},
		{spec: "tcp://localhost:8080", kind: "tcp"},
		{spec: "tcp://[::1]:8080", kind: "tcp"},
		{spec: "tcp://127.0.0.1:80/", kind: "tcp"},
		{spec: "test -f $HOME/x", kind: "command"},
		{spec: "curl -fsS http://localhost/", kind: "command"},
		{spec: "exit 0", kind: "command"},
		{spec: "", wantErr: "empty"},
		{spec: "  \t", wantErr: "empty"},
		{spec: "http://", wantErr: "no host"},
		{spec: "http://:80/x", wantErr: "no host"},
		{spec: "tcp://localhost", wantErr: "want tcp://host:port"},
		{spec: "tcp://localhost:", wantErr: "no port"},
		{spec: "tcp://:80", wantErr: "no host"},
		{spec: "tcp://localhost:80/path", wantErr: "nothing else"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			p, err := Parse(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) = %v, %v; want error containing %q", tt.spec, p, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.spec, err)
			}
			var kind string
			switch p.(type) {
			case *httpProbe:
				kind = "http"
			case *tcpProbe:
				kind = "tcp"
			case *commandProbe:
				kind = "command"
			}
			if kind != tt.kind {
				t.Errorf("Parse(%q) is a %s probe, want %s", tt.spec, kind, tt.kind)
			}
			if p.String() != tt.spec {
				t.Errorf("String() = %q, want the spec as written %q", p.String(), tt.spec)
			}
		})
	}
}

// readyAfter serves status until d has passed since it was created, then 200.
func readyAfter(d time.Duration, status int) http.HandlerFunc {
	start := time.Now()
	return func(w http.ResponseWriter, _ *http.Request) {
		if time.Since(start) < d {
			w.WriteHeader(status)
			return
		}
		fmt.Fprintln(w, "ok")
	}
}

func TestHTTPBecomesReady(t *testing.T) {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]http.ConnState{}
	)
	srv := httptest.NewUnstartedServer(readyAfter(200*time.Millisecond, http.StatusServiceUnavailable))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		conns[c] = s
	}
	srv.Start()
	defer srv.Close()

	p, err := Parse(srv.URL + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Wait(context.Background(), p, 10*time.Millisecond, generous)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if res.Attempts < 2 || res.LastErr != nil {
		t.Errorf("Wait = %+v; want several attempts and no error", res)
	}

	// Every attempt used its own connection and none stays open.
	deadline := time.Now().Add(generous)
	for {
		mu.Lock()
		open := 0
		for _, s := range conns {
			if s != http.StateClosed && s != http.StateHijacked {
				open++
			}
		}
		total := len(conns)
		mu.Unlock()
		if open == 0 {
			if total < res.Attempts {
				t.Errorf("%d connections for %d attempts; want one per attempt", total, res.Attempts)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d connections still open", open, total)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHTTPS(t *testing.T) {
	srv := httptest.NewTLSServer(readyAfter(0, 0))
	defer srv.Close()
	if err := RunOnce(context.Background(), srv.URL); err != nil {
		t.Fatalf("self-signed HTTPS endpoint: %v", err)
	}
}

func TestHTTPNotReady(t *testing.T) {
	for _, status := range []int{http.StatusNotFound, http.StatusInternalServerError, http.StatusServiceUnavailable} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(status)
			}))
			defer srv.Close()
			p, err := Parse(srv.URL + "/x")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), generous)
			defer cancel()
			err = p.Check(ctx)
			if err == nil || !strings.Contains(err.Error(), strconv.Itoa(status)) {
				t.Errorf("Check = %v; want an error naming status %d", err, status)
			}
		})
	}
}

func TestHTTPSlowServerDoesNotStall(t *testing.T) {
	// The first request hangs (as a server stuck in start-up would); later ones answer.
	var calls atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
	}))
	defer srv.Close()
	defer close(release)
	p, err := Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	// The attempt timeout is far longer than the test: only a concurrent attempt can succeed.
	res, err := Wait(context.Background(), p, 10*time.Millisecond, generous, WithAttemptTimeout(time.Hour))
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if res.Attempts != 2 {
		t.Errorf("Attempts = %d, want 2 (the hung one and the next)", res.Attempts)
	}
}

func TestTCPAppearsLater(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	p, err := Parse("tcp://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(150 * time.Millisecond)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("listen again on %s: %v", addr, err)
			return
		}
		t.Cleanup(func() { ln.Close() })
	}()
	res, err := Wait(context.Background(), p, 10*time.Millisecond, generous)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if res.Attempts < 2 {
		t.Errorf("Attempts = %d; the first ones should have been refused", res.Attempts)
	}
}

func TestTCPRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Wait(context.Background(), mustParse(t, "tcp://"+addr), 10*time.Millisecond, 100*time.Millisecond)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Wait = %v; want a timeout naming the refused connection", err)
	}
}

func mustParse(t *testing.T, spec string, opts ...Option) Probe {
	t.Helper()
	p, err := Parse(spec, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCommand(t *testing.T) {
	tests := []struct {
		spec    string
		wantErr string // "" means ready
	}{
		{spec: "exit 0"},
		{spec: "true"},
		{spec: "exit 1", wantErr: "exit status 1"},
		{spec: "echo something went wrong >&2; exit 3", wantErr: "exit status 3: something went wrong"},
		{spec: "no-such-command-crwrap", wantErr: "exit status 127"},
		{spec: "head -c 10000 /dev/zero | tr '\\0' x >&2; echo THE-END >&2; exit 1", wantErr: "xxxTHE-END"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), generous)
			defer cancel()
			err := mustParse(t, tt.spec).Check(ctx)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Check = %v; want error containing %q", err, tt.wantErr)
			}
			if len(err.Error()) > 500 {
				t.Errorf("error is %d bytes long; stderr should be cut to its tail", len(err.Error()))
			}
		})
	}
}

func TestCommandSeesEnvironmentAsWritten(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("D", dir)
	p := mustParse(t, `test -f "$D/x"`)
	if p.String() != `test -f "$D/x"` {
		t.Fatalf("spec changed: %q", p)
	}
	go func() {
		time.Sleep(150 * time.Millisecond)
		if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o600); err != nil {
			t.Error(err)
		}
	}()
	res, err := Wait(context.Background(), p, 10*time.Millisecond, generous)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if res.Attempts < 2 {
		t.Errorf("Attempts = %d; the file appeared only later", res.Attempts)
	}
}

// gone reports whether pid has exited (a zombie waiting for a reaper counts as gone).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(generous)
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitGone(t *testing.T, what string, pid int) {
	t.Helper()
	deadline := time.Now().Add(generous)
	for !gone(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("%s (pid %d) outlived the probe", what, pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHungCommandIsKilled(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("D", dir)
	// A shell that starts a child and hangs waiting for it.
	spec := `echo $$ > "$D/shell"; sleep 1000 & echo $! > "$D/child"; wait`
	p := mustParse(t, spec)

	res, err := Wait(context.Background(), p, 10*time.Millisecond, 300*time.Millisecond,
		WithAttemptTimeout(100*time.Millisecond), WithConcurrency(1))
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Wait = %v; want ErrTimeout", err)
	}
	if !strings.Contains(err.Error(), "killed") || !strings.Contains(err.Error(), spec) {
		t.Errorf("error %q should say the command was killed", err)
	}
	if res.Attempts < 1 {
		t.Errorf("Attempts = %d", res.Attempts)
	}
	// Wait has returned: the last attempt's processes are already gone or going.
	waitGone(t, "shell", readPID(t, filepath.Join(dir, "shell")))
	waitGone(t, "its child", readPID(t, filepath.Join(dir, "child")))
}

func TestBackgroundedChildDoesNotOutliveSuccess(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("D", dir)
	ctx, cancel := context.WithTimeout(context.Background(), generous)
	defer cancel()
	// The child keeps stderr open; Check must neither wait for it nor leave it running.
	err := mustParse(t, `sleep 1000 & echo $! > "$D/child"; exit 0`).Check(ctx)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Check waited for the backgrounded child")
	}
	waitGone(t, "backgrounded child", readPID(t, filepath.Join(dir, "child")))
}

func TestRunnerIsUsed(t *testing.T) {
	var calls atomic.Int32
	runner := RunnerFunc(func(_ context.Context, cmd *exec.Cmd) error {
		calls.Add(1)
		if cmd.SysProcAttr == nil || !cmd.SysProcAttr.Setpgid {
			t.Error("command is not in a process group of its own")
		}
		if cmd.Path != Shell || len(cmd.Args) != 3 || cmd.Args[1] != "-c" || cmd.Args[2] != "exit 0" {
			t.Errorf("command = %q %q", cmd.Path, cmd.Args)
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		return cmd.Wait()
	})
	if err := RunOnce(context.Background(), "exit 0", WithRunner(runner)); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 {
		t.Errorf("runner called %d times, want 1", calls.Load())
	}
}

func TestRunOnce(t *testing.T) {
	srv := httptest.NewServer(readyAfter(0, 0))
	defer srv.Close()
	ctx := context.Background()
	if err := RunOnce(ctx, "exit 0"); err != nil {
		t.Error(err)
	}
	if err := RunOnce(ctx, srv.URL); err != nil {
		t.Error(err)
	}
	if err := RunOnce(ctx, "exit 2"); err == nil || !strings.Contains(err.Error(), "exit status 2") {
		t.Errorf("RunOnce(exit 2) = %v", err)
	}
	if err := RunOnce(ctx, ""); !errors.Is(err, ErrEmpty) {
		t.Errorf("RunOnce(\"\") = %v, want ErrEmpty", err)
	}
}
