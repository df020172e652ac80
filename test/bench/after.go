package main

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"
)

// After ready (issue 11, item 5): how the app answers in the first second after it became
// ready, lazily restored (its pages still arriving), eagerly restored, and warm (the cold
// started app, whose heap it has just written), and when a lazy restore has all of its memory.

// afterWindow is how long requests are timed after ready.
const afterWindow = time.Second

// touchPath is the request: it reads 64 random pages of the app's heap (test/testapp /touch).
const touchPath = "/touch?pages=64"

// latencies sends requests one after another on one keep-alive connection for d and returns
// each one's time (ms); a failed request ends the run with an error.
func latencies(addr string, d time.Duration) ([]float64, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
	defer c.CloseIdleConnections()
	url := "http://" + addr + touchPath
	var out []float64
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		t0 := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			return out, fmt.Errorf("GET %s: %w", url, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return out, fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		out = append(out, ms(time.Since(t0)))
	}
	return out, nil
}

// percentile p (0..100) of xs, nearest rank; -1 for none.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return -1
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// afterReady times requests for afterWindow and adds prefix_p50_ms, _p99_ms, _max_ms and
// _reqs to s.
func (b *bench) afterReady(prefix string, s Samples) error {
	l, err := latencies(b.addr(), afterWindow)
	if err != nil {
		return err
	}
	s.add(prefix+"_p50_ms", percentile(l, 50))
	s.add(prefix+"_p99_ms", percentile(l, 99))
	s.add(prefix+"_max_ms", percentile(l, 100))
	s.add(prefix+"_reqs", float64(len(l)))
	return nil
}

// lazyLoaded waits (up to a minute) for crwrap's phase=lazy-pages line, logged when CRIU's
// daemon has copied every page, and adds when that was: from the daemon's start
// (lazy_loaded_ms) and after the app was ready (lazy_loaded_after_ready_ms).
func (b *bench) lazyLoaded(p *proc, readyAt time.Time, s Samples) {
	if rst, _ := p.phase("restore"); rst.Fields["lazy"] != true {
		return // the lazy restore failed and crwrap restored eagerly
	}
	e, err := p.waitPhase("lazy-pages", time.Minute)
	if err != nil {
		b.logf("no phase=lazy-pages line: %v", firstLines(err.Error(), 1, 300))
		return
	}
	if v, ok := e.num("duration_ms"); ok {
		s.add("lazy_loaded_ms", v)
	}
	s.add("lazy_loaded_after_ready_ms", ms(e.At.Sub(readyAt)))
}

// idlePause is how long the machine is left alone before the idle restore.
const idlePause = 2 * time.Second

// idleRestore is a lazy restore after idlePause without container activity, beside the one
// that follows the checkpoint at once (issue 11, item 3: restores that follow other container
// work were measured ~2x slower).
func (b *bench) idleRestore(mib int, s Samples) error {
	args, err := b.crwrapArgs("restore", mib)
	if err != nil {
		return err
	}
	time.Sleep(idlePause)
	p, _, outside, err := b.startReady(mib, "summary", args)
	if err != nil {
		return err
	}
	defer p.stop(30 * time.Second)
	s.add("idle_restore_ms", outside)
	s.add("idle_restore_phase_ms", p.phaseMS("restore"))
	if rst, ok := p.phase("restore"); ok {
		if v, ok := rst.num("criu_restore_ms"); ok {
			s.add("idle_criu_restore_ms", v)
		}
	}
	return nil
}
