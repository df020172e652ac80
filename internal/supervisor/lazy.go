package supervisor

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// lazyPages is CRIU's lazy-pages daemon for one restore: the restored app resumes before its
// memory is loaded, its page faults are served from the checkpoint's images (userfaultfd),
// and the daemon copies the remaining pages in the background, then exits. Time-to-ready
// then no longer grows with the app's memory.
type lazyPages struct {
	cmd   *exec.Cmd
	work  string
	start time.Time
	done  chan struct{}
	err   error

	mu sync.Mutex
	// held are crwrap's own copies of the daemon's userfaultfds (holdFaults), by the
	// daemon's descriptor number; released says releaseFaults ran (no more copies).
	held     map[int]int
	released bool
}

// holdFaults takes copies of the daemon's userfaultfds (pidfd_getfd) that the restore has
// handed over so far, and returns how many it holds; crwrap calls it while CRIU restores,
// so that it holds them before the app resumes. Should the daemon die before it delivered every
// page, the kernel would otherwise drop the app's registrations with the last descriptor,
// and the app would read zeros where its memory was, and answer from them; while crwrap holds
// one, such a fault waits (for the SIGKILL crwrap then sends). releaseFaults lets go.
func (lz *lazyPages) holdFaults() (int, error) {
	pid := lz.cmd.Process.Pid
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return 0, fmt.Errorf("open pidfd of CRIU lazy-pages: %w", err)
	}
	defer unix.Close(pidfd)
	fdDir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return 0, fmt.Errorf("list the descriptors of CRIU lazy-pages: %w", err)
	}
	lz.mu.Lock()
	defer lz.mu.Unlock()
	if lz.released {
		return 0, nil
	}
	if lz.held == nil {
		lz.held = map[int]int{}
	}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ok := lz.held[n]; ok {
			continue
		}
		if t, err := os.Readlink(filepath.Join(fdDir, e.Name())); err != nil || t != "anon_inode:[userfaultfd]" {
			continue
		}
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		if err != nil {
			return len(lz.held), fmt.Errorf("copy userfaultfd %d of CRIU lazy-pages: %w", n, err)
		}
		lz.held[n] = fd
	}
	return len(lz.held), nil
}

// releaseFaults closes the copies holdFaults took (nil-safe, idempotent).
func (lz *lazyPages) releaseFaults() {
	if lz == nil {
		return
	}
	lz.mu.Lock()
	defer lz.mu.Unlock()
	for _, fd := range lz.held {
		_ = unix.Close(fd)
	}
	lz.held = nil
	lz.released = true
}

// startLazyPages starts the daemon for images with its socket in work (CRIU's restore finds
// it there) and waits until it listens.
func (s *Supervisor) startLazyPages(images, work string) (*lazyPages, error) {
	if err := os.MkdirAll(work, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", work, err)
	}
	lz := &lazyPages{work: work, start: time.Now(), done: make(chan struct{})}
	lz.cmd = exec.Command("criu", "lazy-pages", "--images-dir", images, "--work-dir", work,
		"--log-file", "lazy-pages.log", "-v4")
	// CRIU prints some refusals (missing capabilities) on its stdout, not in its log.
	out := &tailBuffer{max: 2048}
	lz.cmd.Stdout, lz.cmd.Stderr = out, out
	// A group of its own, killed as a whole: a process the daemon forked outlives a killed
	// daemon (crwrap, the subreaper, inherits it) and holds the output pipe, so Wait would
	// never return; WaitDelay bounds Wait all the same.
	lz.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	lz.cmd.WaitDelay = time.Second
	release := s.Reaper.Hold()
	err := lz.cmd.Start()
	if err == nil {
		s.Reaper.Protect(lz.cmd.Process.Pid)
		// Faults of the app are few and served first; the background copy of all other pages
		// must not take the CPU from the app, or from other restores on the node.
		_ = unix.Setpriority(unix.PRIO_PROCESS, lz.cmd.Process.Pid, 10)
	}
	release()
	if err != nil {
		return nil, fmt.Errorf("start CRIU lazy-pages: %w", err)
	}
	go func() {
		err := lz.cmd.Wait()
		_ = unix.Kill(-lz.cmd.Process.Pid, unix.SIGKILL) // whatever it left in its group
		s.Reaper.Unprotect(lz.cmd.Process.Pid)
		if err != nil {
			keepCRIULog(work, "lazy-pages.log")
			lz.err = fmt.Errorf("CRIU lazy-pages: %w: %s%s", err, strings.TrimSpace(out.String()), criuLogTail(filepath.Join(work, "lazy-pages.log")))
		}
		close(lz.done)
	}()
	sock := filepath.Join(work, "lazy-pages.socket")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return lz, nil
		}
		select {
		case <-lz.done:
			return nil, fmt.Errorf("CRIU lazy-pages exited before it listened: %v", lz.err)
		default:
		}
		if time.Now().After(deadline) {
			lz.stop()
			return nil, errors.New("CRIU lazy-pages did not listen within 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// stop ends the daemon (nil-safe).
func (lz *lazyPages) stop() {
	if lz == nil {
		return
	}
	_ = unix.Kill(-lz.cmd.Process.Pid, unix.SIGKILL)
	<-lz.done
	lz.releaseFaults()
}

// watchLazyPages releases the checkpoint (release) once the daemon has copied every page,
// logs when it has, and kills the app if the daemon failed: memory it did not deliver would
// leave the app hanging on a page fault, and a crash is what a pod's restart policy can deal
// with. The failure is remembered on the node (rememberLazyFailure), so that the next pod
// restores eagerly; before the app is ready tryRestore does so at once. After a failure the
// checkpoint stays held for that retry (tryRestore releases it, or crwrap's exit does).
func (s *Supervisor) watchLazyPages(a *app, lz *lazyPages, release func(), dir string, created time.Time) {
	// The daemon copies the pages the app did not fault in from now on: reading them from the
	// stream (lazyfetch.go) is faster than a range request each.
	s.fetch.stream()
	select {
	case <-lz.done:
	case <-a.exited:
		lz.stop()
		return
	}
	if lz.err == nil {
		// Every page is in: later faults (memory the app gave back and touches again) are
		// the kernel's to serve, not a queue nobody reads.
		lz.releaseFaults()
	}
	keepCRIULog(lz.work, "lazy-pages.log")
	if lz.err != nil && !isDone(a.exited) {
		s.Log.WithError(lz.err).Error("lazy restore: the app's memory could not be delivered; stopping the app")
		_ = a.c.Signal(syscall.SIGKILL)
		s.rememberLazyFailure(dir, created, lz.err)
		select {
		case <-a.exited:
		case <-time.After(10 * time.Second):
			s.Log.WithField("container", a.id).Warn("app did not exit after SIGKILL")
		}
		lz.releaseFaults()
		return
	}
	lz.releaseFaults()
	release()
	s.fetch.unmount(s.Log) // lazyfetch.go: the daemon no longer reads the images
	s.Log.WithFields(logrus.Fields{"phase": "lazy-pages", "duration_ms": time.Since(lz.start).Milliseconds()}).
		Info("lazy restore: all memory loaded")
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// lazyFailureMark is where this node remembers that a lazy restore of one checkpoint version
// failed: <cr.checkpoint.root>/.crwrap/lazy-failed-<digest of the version's directory and
// creation time>. The next pod then restores that version with its memory loaded first,
// instead of failing the same way again (a crash loop when the daemon dies after the app
// resumed). A new checkpoint is another version, and is tried lazily again.
func (s *Supervisor) lazyFailureMark(dir string, created time.Time) string {
	sum := sha256.Sum256([]byte(dir + "\n" + created.UTC().Format(time.RFC3339Nano)))
	return filepath.Join(s.Settings.CheckpointRoot, ".crwrap", lazyFailedPrefix+hex.EncodeToString(sum[:8]))
}

const lazyFailedPrefix = "lazy-failed-"

// lazyFailure is the content of a mark, for whoever looks at the node.
type lazyFailure struct {
	Checkpoint string    `json:"checkpoint"`
	Failed     time.Time `json:"failed"`
	Error      string    `json:"error"`
}

// lazyFailedBefore tells whether a lazy restore of this version failed on this node.
func (s *Supervisor) lazyFailedBefore(dir string, created time.Time) bool {
	_, err := os.Stat(s.lazyFailureMark(dir, created))
	return err == nil
}

// rememberLazyFailure writes the mark for this version (atomically), and removes the marks of
// versions that are gone. A read-only checkpoint root cannot hold one: then every pod tries
// lazily first, and falls back within the pod when the daemon fails before the app resumes.
func (s *Supervisor) rememberLazyFailure(dir string, created time.Time, cause error) {
	if s.fetch != nil && s.fetch.lp.Err() != nil {
		return // the registry failed (lazyfetch.go), not the lazy restore
	}
	mark := s.lazyFailureMark(dir, created)
	b, _ := json.Marshal(lazyFailure{Checkpoint: dir, Failed: time.Now().UTC(), Error: cause.Error()})
	err := os.MkdirAll(filepath.Dir(mark), 0o700)
	if err == nil {
		tmp := mark + ".tmp-" + strconv.Itoa(os.Getpid())
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			if err = os.Rename(tmp, mark); err != nil {
				_ = os.Remove(tmp)
			}
		}
	}
	if err != nil {
		s.Log.WithError(err).Warn("cannot remember the failed lazy restore on this node: the next pod tries lazily again")
		return
	}
	s.Log.WithField("mark", mark).Info("the next restore of this checkpoint on this node loads all memory first")
	marks, _ := filepath.Glob(filepath.Join(filepath.Dir(mark), lazyFailedPrefix+"*"))
	for _, m := range marks {
		var f lazyFailure
		if b, err := os.ReadFile(m); err == nil && json.Unmarshal(b, &f) == nil && f.Checkpoint != "" {
			if _, err := os.Stat(f.Checkpoint); errors.Is(err, os.ErrNotExist) {
				_ = os.Remove(m)
			}
		}
	}
}

// restoreWatch ends a CRIU restore that cannot finish: it kills CRIU (the "criu swrk" child
// of crwrap) when the lazy-pages daemon ends before the restore does (the restored tasks then
// wait for pages that never come, and CRIU waits for them, for ever), or when the restore
// takes longer than timeout. The restore then fails, with the reason, and crwrap goes on as
// after any failed restore (memory loaded first, or a cold start).
type restoreWatch struct {
	restored chan struct{}
	done     chan struct{}
	reason   string
}

func watchRestore(lz *lazyPages, timeout time.Duration) *restoreWatch {
	w := &restoreWatch{restored: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		var poll <-chan time.Time
		var daemonDone <-chan struct{}
		if lz != nil {
			daemonDone = lz.done
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			poll = tick.C
		}
		t := time.NewTimer(timeout)
		defer t.Stop()
		for w.reason == "" {
			select {
			case <-w.restored:
				return
			case <-poll:
				_, _ = lz.holdFaults() // before the app resumes: see holdFaults
			case <-daemonDone:
				if lz.err == nil {
					daemonDone = nil // every page delivered before the restore returned (a small app)
					continue
				}
				w.reason = "CRIU lazy-pages failed during the restore"
			case <-t.C:
				w.reason = fmt.Sprintf("the restore took longer than %s (cr.readiness.timeout)", timeout)
			}
		}
		// Until the restore returns: CRIU may only be starting.
		for {
			for _, pid := range childrenRunning("swrk") {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
			select {
			case <-w.restored:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return w
}

// finish tells the watch that the restore returned, and why crwrap ended it ("" if it did not).
func (w *restoreWatch) finish() string {
	close(w.restored)
	<-w.done
	return w.reason
}

// childrenRunning returns the pids of crwrap's child processes with word among their arguments.
func childrenRunning(word string) []int {
	var out []int
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				continue
			}
			cmd, err := os.ReadFile(filepath.Join("/proc", f, "cmdline"))
			if err == nil && strings.Contains("\x00"+string(cmd), "\x00"+word+"\x00") {
				out = append(out, pid)
			}
		}
	}
	return out
}
