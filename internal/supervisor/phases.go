package supervisor

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

var killSignal = unix.SIGKILL

// timeline collects phase durations for the summary line.
type timeline struct {
	mu     sync.Mutex
	phases []string
	ms     map[string]int64
}

func (t *timeline) add(name string, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ms == nil {
		t.ms = map[string]int64{}
	}
	if _, ok := t.ms[name]; !ok {
		t.phases = append(t.phases, name)
	}
	t.ms[name] = d.Milliseconds()
}

func (t *timeline) fields() (logrus.Fields, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := logrus.Fields{}
	var parts []string
	for _, p := range t.phases {
		f[p+"_ms"] = t.ms[p]
		parts = append(parts, p+"="+strconv.FormatInt(t.ms[p], 10)+"ms")
	}
	return f, strings.Join(parts, " ")
}

func (t *timeline) durations() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int64, len(t.ms))
	for k, v := range t.ms {
		out[k] = v
	}
	return out
}

// phase logs one finished phase with its duration and records it.
func (s *Supervisor) phase(name string, start time.Time, fields logrus.Fields) time.Duration {
	d := time.Since(start)
	s.timeline.add(name, d)
	f := logrus.Fields{"phase": name, "duration_ms": d.Milliseconds()}
	for k, v := range fields {
		f[k] = v
	}
	s.Log.WithFields(f).Info(name)
	s.Metrics.ObservePhase(name, d)
	return d
}

// summary logs the whole timeline of a checkpoint or restore in one line.
func (s *Supervisor) summary(what string, fields logrus.Fields) {
	f, text := s.timeline.fields()
	for k, v := range fields {
		f[k] = v
	}
	if _, ok := f["total_ms"]; !ok && !s.began.IsZero() {
		f["total_ms"] = time.Since(s.began).Milliseconds()
	}
	f["phase"] = "summary"
	s.Log.WithFields(f).Infof("%s: %s", what, text)
}
