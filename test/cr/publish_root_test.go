package cr

import (
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// Restores that run while new checkpoints of the same app are published each restore a
// complete checkpoint: the previous one or a new one, never a mix (no fallback).
func TestRestoreWhilePublishing(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "64")
	values := map[string]bool{a.mustCheckpoint(): true}
	props := a.props()

	var mu sync.Mutex
	var wg sync.WaitGroup
	stopRestores := make(chan struct{})
	type result struct {
		ns    string
		p     *harness.Proc
		value string
		err   string
	}
	var results []result
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stopRestores:
				return
			default:
			}
			ns := harness.NetNS(t)
			p := harness.StartInNetNS(t, ns, harness.Options{}, a.args("restore", props)...)
			v, errText := netnsGet(ns, p, a.url("/value"), time.Minute)
			// The value answers once the app is restored; wait for crwrap to call it ready too.
			deadline := time.Now().Add(time.Minute)
			for harness.FindLog(p, "phase", "ready") == nil && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			_ = p.Cmd.Process.Signal(sigterm)
			select {
			case <-p.Done():
			case <-time.After(time.Minute):
			}
			mu.Lock()
			results = append(results, result{ns, p, v, errText})
			mu.Unlock()
		}
	}()
	for i := 0; i < 3; i++ {
		v := a.mustCheckpoint("cr.checkpoint.refresh=always")
		mu.Lock()
		values[v] = true
		mu.Unlock()
	}
	close(stopRestores)
	wg.Wait()

	if len(results) < 2 {
		t.Errorf("only %d restores ran during 3 checkpoints", len(results))
	}
	for i, r := range results {
		if r.err != "" {
			t.Errorf("restore %d: %s\nstderr:\n%s", i, r.err, r.p.Stderr)
			continue
		}
		if e := harness.FindLog(r.p, "phase", "fallback"); e != nil {
			t.Errorf("restore %d fell back (reason=%s): %s", i, e.Str("reason"), e.Str("error"))
		}
		if !values[r.value] {
			t.Errorf("restore %d: /value %q is none of the published checkpoints' %v", i, r.value, values)
		}
	}
	t.Logf("%d restores during 3 checkpoints", len(results))
	if l := a.leftovers(); len(l) > 0 {
		t.Errorf("leftovers: %v", l)
	}
}

var sigterm = syscall.SIGTERM
