package supervisor

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/crwrap/crwrap/internal/checkpoint"
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

// watchLazyPages holds the checkpoint until the daemon has copied every page, logs when it
// has, and kills the app if the daemon failed: memory it did not deliver would leave the app
// hanging on a page fault, and a crash is what a pod's restart policy can deal with.
func (s *Supervisor) watchLazyPages(a *app, lz *lazyPages, r *checkpoint.Reader) {
	defer r.Close()
	defer s.fetch.unmount(s.Log) // lazyfetch.go: the daemon no longer reads the images
	// The daemon copies the pages the app did not fault in from now on: reading them from the
	// stream (lazyfetch.go) is faster than a range request each.
	s.fetch.stream()
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
		return
	}
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
