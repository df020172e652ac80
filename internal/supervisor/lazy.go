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
	_ = lz.cmd.Process.Kill()
	<-lz.done
}

// watchLazyPages releases the checkpoint (release) once the daemon has copied every page,
// logs when it has, and kills the app if the daemon failed: memory it did not deliver would
// leave the app hanging on a page fault, and a crash is what a pod's restart policy can deal
// with. The failure is remembered on the node (rememberLazyFailure), so that the next pod
// restores eagerly; before the app is ready tryRestore does so at once. After a failure the
// checkpoint stays held for that retry (tryRestore releases it, or crwrap's exit does).
func (s *Supervisor) watchLazyPages(a *app, lz *lazyPages, release func(), dir string, created time.Time) {
	select {
	case <-lz.done:
	case <-a.exited:
		lz.stop()
		return
	}
	keepCRIULog(lz.work, "lazy-pages.log")
	if lz.err != nil && !isDone(a.exited) {
		s.Log.WithError(lz.err).Error("lazy restore: the app's memory could not be delivered; stopping the app")
		_ = a.c.Signal(syscall.SIGKILL)
		s.rememberLazyFailure(dir, created, lz.err)
		return
	}
	release()
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
