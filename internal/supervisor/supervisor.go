package supervisor

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/crwrap/crwrap/internal/config"
	"github.com/crwrap/crwrap/internal/container"
	"github.com/crwrap/crwrap/internal/metrics"
	"github.com/crwrap/crwrap/internal/readiness"
	"github.com/crwrap/crwrap/internal/reaper"
	"github.com/crwrap/crwrap/internal/rootfs"
	"github.com/crwrap/crwrap/internal/spec"
)

// ErrNotReady is returned when the app did not become ready in time or exited first.
var ErrNotReady = errors.New("app not ready")

// Template is the config.json template in use.
type Template struct {
	Name, Source string
}

// Digest identifies the template's content.
func (t Template) Digest() string {
	sum := sha256.Sum256([]byte(t.Source))
	return hex.EncodeToString(sum[:])
}

// Supervisor runs the app in one mode. Fill every field before calling Run.
type Supervisor struct {
	Settings *config.Settings
	Template Template
	Log      *logrus.Entry
	Runtime  *container.Runtime
	Reaper   *reaper.Reaper
	// WorkRoot holds per-container scratch space (root filesystem layers, CRIU work dirs).
	WorkRoot string
	// Env is the environment the app gets (crwrap's own, as it was started).
	Env []string
	// Stdout and Stderr receive the app's output.
	Stdout, Stderr io.Writer
	// Signals are forwarded to the app while it runs.
	Signals <-chan os.Signal
	// CRIUVersion is the version of the CRIU in use, recorded in and checked against checkpoints.
	CRIUVersion string
	// Version is crwrap's version.
	Version string
	// StopWhenReady makes restore stop the app with SIGTERM once it is ready and return 0
	// (crwrap verify); a restore that cannot be done is then always an error.
	StopWhenReady bool
	// OnPublished, when set, is called after a new checkpoint was published.
	OnPublished func()
	// Metrics records what happens (nil: nothing is recorded).
	Metrics *metrics.Metrics

	timeline timeline
	began    time.Time
	// fetch is the lazy fetch of the checkpoint being restored (lazyfetch.go), or nil.
	fetch *lazyFetch
	// signals are the Signals that reach the app (or idle), routed by routeSignals.
	signals chan os.Signal
}

// Interrupted is the cause of Run's context once crwrap got a terminating signal (SIGTERM,
// SIGINT, SIGQUIT). Before the app is served (checkpoint: until the checkpoint is published;
// restore: until the restored app is ready) that ends the mode: nothing is published, nothing
// is started cold, and crwrap exits with 128+N as the app would have, had the signal killed
// it. Once the app is served, the signal is forwarded to it as always.
type Interrupted struct{ Signal syscall.Signal }

func (e *Interrupted) Error() string { return "terminated by " + unix.SignalName(e.Signal) }

// interrupted returns the exit code for a mode ended by a terminating signal.
func (s *Supervisor) interrupted(ctx context.Context, during string) (int, bool) {
	var in *Interrupted
	if !errors.As(context.Cause(ctx), &in) {
		return 0, false
	}
	code := 128 + int(in.Signal)
	fields := logrus.Fields{"phase": "terminated", "signal": unix.SignalName(in.Signal), "status": code}
	s.timeline.mu.Lock()
	if n := len(s.timeline.phases); n > 0 {
		fields["after_phase"] = s.timeline.phases[n-1]
	}
	s.timeline.mu.Unlock()
	s.Log.WithFields(fields).Warnf("%s while %s: stopped, nothing left behind", in.Error(), during)
	return code, true
}

// routeSignals passes Signals on to s.signals until done is closed; the first terminating
// one also cancels ctx with an *Interrupted cause, so that whatever crwrap waits for
// (the writer lock, readiness, warm-up, cr.restore.wait) ends at once.
func (s *Supervisor) routeSignals(cancel context.CancelCauseFunc, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case sig := <-s.Signals:
			if n, ok := sig.(syscall.Signal); ok && isTerminating(sig) {
				cancel(&Interrupted{Signal: n})
			}
			select {
			case s.signals <- sig:
			default:
				s.Log.WithField("signal", sig.String()).Warn("too many signals queued: dropping one")
			}
		}
	}
}

// app is one prepared or running app container.
type app struct {
	id   string
	dir  string
	fs   *rootfs.Rootfs
	spec *specs.Spec
	c    *container.Container
	// lazy is the lazy-pages daemon of a lazy restore (nil when none).
	lazy *lazyPages
	// started is when the app was started.
	started time.Time
	// exited is closed when the app has exited and status is set.
	exited chan struct{}
	status int
	err    error
}

func newID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "crwrap-" + hex.EncodeToString(b)
}

// Run runs the configured mode and returns the exit code crwrap should exit with.
func (s *Supervisor) Run(ctx context.Context) (int, error) {
	s.began = time.Now()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s.signals = make(chan os.Signal, 16)
	done := make(chan struct{})
	defer close(done)
	go s.routeSignals(cancel, done)

	if removed, err := s.Runtime.CleanupStale(); err != nil {
		s.Log.WithError(err).Warn("could not remove everything an earlier crwrap left behind")
	} else if len(removed) > 0 {
		s.Log.WithField("containers", removed).Info("removed containers an earlier crwrap left behind")
	}
	switch s.Settings.Mode {
	case config.ModeCheckpoint:
		if err := s.canDumpUser(); err != nil {
			return 1, err
		}
		return s.checkpoint(ctx)
	case config.ModeRestore:
		return s.restore(ctx)
	default:
		return s.run(ctx, "run")
	}
}

// prepare makes the root filesystem and renders the spec for a new container.
func (s *Supervisor) prepare() (*app, error) {
	start := time.Now()
	a := &app{id: newID(), exited: make(chan struct{})}
	a.dir = filepath.Join(s.WorkRoot, a.id)
	fs, err := rootfs.Prepare(filepath.Join(a.dir, "fs"), s.Settings.RootfsSize)
	if err != nil {
		return nil, err
	}
	a.fs = fs
	if !fs.Overlay {
		s.Log.WithField("reason", fs.NoOverlay).Warn("no overlay root for the app: files it writes to its root filesystem are not saved with a checkpoint")
	}
	sp, err := s.render(a.id, fs.Path)
	if err != nil {
		s.release(a)
		return nil, err
	}
	a.spec = sp
	s.phase("render", start, logrus.Fields{"container": a.id})
	return a, nil
}

// Render renders the spec the app would get, with a placeholder root; it changes nothing.
func (s *Supervisor) Render(id, root string) (*specs.Spec, error) { return s.render(id, root) }

func (s *Supervisor) render(id, root string) (*specs.Spec, error) {
	cwd, err := os.Getwd()
	if err != nil {
		cwd = "/"
	}
	host, _ := os.Hostname()
	var etc []string
	for _, f := range []string{"/etc/hosts", "/etc/resolv.conf", "/etc/hostname"} {
		if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() {
			etc = append(etc, f)
		}
	}
	u, err := s.user()
	if err != nil {
		return nil, err
	}
	env := appEnv(s.Env)
	if s.Settings.User != "" {
		env = withHome(env, u.Home)
	}
	in := spec.Input{
		ID:             id,
		Rootfs:         root,
		Args:           s.Settings.Command,
		Env:            env,
		Cwd:            cwd,
		UID:            u.UID,
		GID:            u.GID,
		AdditionalGids: u.AdditionalGids,
		Hostname:       host,
		EtcFiles:       etc,
		Mounts:         s.Settings.Mounts,
		CgroupsPath:    "crwrap/" + id,
	}
	sp, err := spec.Render(s.Template.Name, s.Template.Source, in)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", s.Template.Name, err)
	}
	return sp, nil
}

// user is who the app runs as: cr.container.user looked up in the app's /etc/passwd and
// /etc/group (the pod's: the app's root filesystem is the pod's), else crwrap's own user.
func (s *Supervisor) user() (spec.User, error) {
	if s.Settings.User == "" {
		u := spec.User{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
		if groups, err := os.Getgroups(); err == nil {
			for _, g := range groups {
				if g != os.Getgid() {
					u.AdditionalGids = append(u.AdditionalGids, uint32(g))
				}
			}
		}
		return u, nil
	}
	var passwd, group io.Reader
	if f, err := os.Open("/etc/passwd"); err == nil {
		defer f.Close()
		passwd = f
	}
	if f, err := os.Open("/etc/group"); err == nil {
		defer f.Close()
		group = f
	}
	u, err := spec.ResolveUser(s.Settings.User, passwd, group)
	if err != nil {
		return spec.User{}, &config.Error{File: s.Settings.File, Key: config.KeyContainerUser, Msg: err.Error() + " in the image's /etc/passwd and /etc/group"}
	}
	return u, nil
}

// canDumpUser fails early when the app is to run as another user than crwrap and crwrap
// lacks CAP_SYS_RESOURCE: CRIU reads the app's resource limits (prlimit), which the kernel
// allows across users only with it, so the dump would fail after the app's whole warm-up.
func (s *Supervisor) canDumpUser() error {
	if s.Settings.User == "" {
		return nil
	}
	u, err := s.user()
	if err != nil {
		return err
	}
	if int(u.UID) == os.Geteuid() || hasCapability(unix.CAP_SYS_RESOURCE) {
		return nil
	}
	return fmt.Errorf("checkpoint an app that runs as uid %d (cr.container.user=%s): CRIU needs CAP_SYS_RESOURCE to read its resource limits, and crwrap does not have it: add it to the pod's securityContext.capabilities", u.UID, s.Settings.User)
}

// hasCapability reports whether this process has capability c in its effective set.
func hasCapability(c int) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<uint(c)) != 0
		}
	}
	return false
}

// withHome sets HOME to the app user's home directory (when it has one in passwd).
func withHome(env []string, home string) []string {
	if home == "" {
		return env
	}
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "HOME=") {
			out = append(out, kv)
		}
	}
	return append(out, "HOME="+home)
}

// appEnv drops what belongs to crwrap and libcontainer from the app's environment, and turns
// off Go's multipath TCP (on by default for listeners since Go 1.24): CRIU cannot checkpoint
// MPTCP sockets ("Unsupported proto 262"), so a Go server would never checkpoint otherwise.
// An explicit multipathtcp setting in GODEBUG is kept.
func appEnv(env []string) []string {
	out := make([]string, 0, len(env)+1)
	godebug := false
	for _, kv := range env {
		if strings.HasPrefix(kv, "_LIBCONTAINER") || strings.HasPrefix(kv, "CRWRAP_") {
			continue
		}
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			godebug = true
			if !strings.Contains(v, "multipathtcp=") {
				kv = "GODEBUG=" + strings.TrimPrefix(v+",multipathtcp=0", ",")
			}
		}
		out = append(out, kv)
	}
	if !godebug {
		out = append(out, "GODEBUG=multipathtcp=0")
	}
	return out
}

// start starts the prepared app.
func (s *Supervisor) start(a *app) error {
	start := time.Now()
	release := s.Reaper.Hold()
	c, err := s.Runtime.Start(container.Config{ID: a.id, Spec: a.spec, Stdout: s.Stdout, Stderr: s.Stderr})
	if err == nil {
		s.protect(c)
	}
	release()
	if err != nil {
		return err
	}
	a.c = c
	a.started = start
	go s.await(a)
	go s.guard(a)
	s.phase("start", start, logrus.Fields{"container": a.id})
	return nil
}

func (s *Supervisor) protect(c *container.Container) {
	if pid, err := c.Pid(); err == nil {
		s.Reaper.Protect(pid)
	}
}

// guard starts the process that cleans up after crwrap should it be killed.
func (s *Supervisor) guard(a *app) {
	if err := a.c.StartGuard(); err != nil {
		s.Log.WithError(err).Warn("no clean-up guard: if crwrap is killed, the next start removes what it left")
	}
}

func (s *Supervisor) await(a *app) {
	a.status, a.err = a.c.Wait()
	close(a.exited)
}

// release destroys the container (if any) and its root filesystem.
func (s *Supervisor) release(a *app) {
	if a == nil {
		return
	}
	if a.c != nil {
		_ = a.c.Signal(killSignal)
		select {
		case <-a.exited:
		case <-time.After(10 * time.Second):
			s.Log.WithField("container", a.id).Warn("app did not exit after SIGKILL")
		}
		if pid, err := a.c.Pid(); err == nil {
			s.Reaper.Unprotect(pid)
		}
		if err := a.c.Destroy(); err != nil {
			s.Log.WithError(err).Warn("clean up container")
		}
	}
	a.lazy.stop() // not left to watchLazyPages: crwrap may exit first, and the daemon would stay
	if a.fs != nil {
		if err := a.fs.Release(); err != nil {
			s.Log.WithError(err).Warn("clean up root filesystem")
		}
	}
	_ = os.RemoveAll(a.dir)
}

// waitReady polls readiness until ready, the timeout, or the app's exit.
func (s *Supervisor) waitReady(ctx context.Context, a *app, since time.Time, mode string) (time.Duration, error) {
	if s.Settings.Readiness == "" {
		return time.Since(since), nil
	}
	opts := []readiness.Option{
		readiness.WithRunner(readiness.RunnerFunc(s.holdRunner)),
		readiness.WithAbort(a.exited),
		readiness.WithLogger(s.Log),
	}
	p, err := readiness.Parse(s.Settings.Readiness, opts...)
	if err != nil {
		return 0, fmt.Errorf("readiness probe: %w", err)
	}
	res, err := readiness.Wait(ctx, p, s.Settings.ReadinessInterval, s.Settings.ReadinessTimeout, opts...)
	if err != nil {
		if errors.Is(err, readiness.ErrAborted) {
			return 0, fmt.Errorf("%w: it exited with status %d before it was ready", ErrNotReady, a.status)
		}
		return 0, fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	ttr := time.Since(since)
	s.Log.WithFields(logrus.Fields{"phase": "ready", "mode": mode, "time_to_ready_ms": ms(ttr), "attempts": res.Attempts}).
		Infof("app ready %d ms after %s", ms(ttr), map[string]string{"run": "start", "checkpoint": "start", "restore": "restore began", "cold": "start"}[mode])
	s.timeline.add("ready", ttr)
	if mode == "cold" {
		mode = metrics.ModeRun
	}
	s.Metrics.ObserveTimeToReady(mode, ttr)
	return ttr, nil
}

// serve forwards signals to the running app until it exits and returns its exit code.
//
// The app is the first process of its PID namespace, and the kernel does not apply a
// signal's default action to such a process: a SIGTERM to an app without a handler (a
// shell script, sleep) would do nothing, where the same app outside a container would die.
// So when the app neither catches nor ignores a forwarded signal, crwrap applies the default
// action itself (all forwarded signals terminate by default): it kills the app and exits
// with 128+N, as if the signal had killed it.
func (s *Supervisor) serve(ctx context.Context, a *app) (int, error) {
	killedBy := 0
	for {
		select {
		case sig := <-s.signals:
			s.Log.WithField("signal", sig.String()).Debug("forwarding signal to the app")
			if err := a.c.Signal(sig); err != nil {
				s.Log.WithError(err).Warn("forward signal")
			}
			if pid, err := a.c.Pid(); err == nil && killedBy == 0 {
				if n, ok := sig.(syscall.Signal); ok && !handles(pid, n) {
					s.Log.WithField("signal", sig.String()).Debug("the app does not handle it: applying its default action (terminate)")
					killedBy = int(n)
					_ = a.c.Signal(syscall.SIGKILL)
				}
			}
		case <-a.exited:
			if pid, err := a.c.Pid(); err == nil {
				s.Reaper.Unprotect(pid)
			}
			status := a.status
			if killedBy != 0 && status == 128+int(syscall.SIGKILL) {
				status = 128 + killedBy
			}
			s.Log.WithFields(logrus.Fields{"phase": "exit", "status": status}).Infof("app exited with status %d", status)
			return status, a.err
		}
	}
}

// handles reports whether process pid catches or ignores sig (from /proc/PID/status). When
// that cannot be read it says yes, so that crwrap never kills an app that might handle it.
func handles(pid int, sig syscall.Signal) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return true
	}
	bit := uint64(1) << (uint(sig) - 1)
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "SigCgt" && k != "SigIgn") {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return true
		}
		found++
		if mask&bit != 0 {
			return true
		}
	}
	return found < 2
}

// launch prepares and starts the app; on error it returns crwrap's exit code (127 when the
// app's executable is missing) and leaves nothing behind. The caller releases a.
func (s *Supervisor) launch() (a *app, code int, err error) {
	if a, err = s.prepare(); err != nil {
		return nil, 1, err
	}
	if err := s.start(a); err != nil {
		s.release(a)
		if errors.Is(err, container.ErrNotFound) {
			return nil, 127, err
		}
		return nil, 1, err
	}
	return a, 0, nil
}

// run starts the app cold and serves it.
func (s *Supervisor) run(ctx context.Context, mode string) (int, error) {
	begin := time.Now()
	a, code, err := s.launch()
	if err != nil {
		return code, err
	}
	defer s.release(a)
	go func() {
		_, err := s.waitReady(ctx, a, begin, mode)
		if err != nil && ctx.Err() == nil {
			s.Log.WithError(err).Warn("readiness")
		}
		if err == nil && mode == "cold" {
			s.summary("restore fell back to a cold start", nil)
		}
	}()
	return s.serve(ctx, a)
}

func ms(d time.Duration) int64 { return d.Milliseconds() }
