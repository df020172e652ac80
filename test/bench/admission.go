package main

import (
	"fmt"
	"runtime"
	"sync"
	"time"
)

// Bursts with admission (issue 11, item 4): would restores that take turns on a node (at
// most k at once, k = the number of cores, as a hostPath semaphore would let them) reach
// ready sooner than all of them at once? The benchmark plays the semaphore itself: the N
// "pods" arrive together, each waits for a slot, and its time-to-ready counts from the
// burst's start, waiting included.

// admitSlots is the k of the emulated semaphore.
func admitSlots() int { return max(1, runtime.NumCPU()) }

// concurrentAdmitted restores into each of nss, at most k at a time.
func (b *bench) concurrentAdmitted(mib int, nss []string, k int, s Samples) error {
	args, err := b.crwrapArgs("restore", mib)
	if err != nil {
		return err
	}
	n := len(nss)
	type out struct {
		p   *proc
		at  time.Time
		err error
	}
	outs := make([]out, n)
	slots := make(chan struct{}, k)
	first := time.Now()
	var wg sync.WaitGroup
	for i := range nss {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			p, err := startCrwrap(nss[i], args...)
			if err != nil {
				outs[i].err = err
				return
			}
			outs[i].p = p
			outs[i].at, outs[i].err = pollReady(p, nss[i], b.addr(), b.cfg.Poll, b.timeout(mib))
		}(i)
	}
	wg.Wait()
	defer func() {
		var sw sync.WaitGroup
		for _, o := range outs {
			if o.p != nil {
				sw.Add(1)
				go func(p *proc) { defer sw.Done(); p.stop(30 * time.Second) }(o.p)
			}
		}
		sw.Wait()
	}()
	var times []float64
	for i, o := range outs {
		if o.err != nil {
			return fmt.Errorf("admitted restore %d: %w", i, o.err)
		}
		if _, err := o.p.waitPhase("summary", 30*time.Second); err != nil {
			return err
		}
		times = append(times, ms(o.at.Sub(first)))
	}
	s.add("adm_slowest_ms", maxOf(times))
	s.add("adm_median_ms", median(times))
	s.add("adm_p95_ms", percentile(times, 95))
	return nil
}

// BurstResult is N restores whose starts are spread evenly over Within (issue 11, item 4:
// "16 pods started within one second").
type BurstResult struct {
	N       int
	MiB     int
	Within  time.Duration
	Samples Samples
	Med     map[string]float64
}

// burst starts a restore into each of nss, evenly spread over within, and adds the p50, p95
// and slowest of their time-to-ready (each from its own start).
func (b *bench) burst(mib int, nss []string, within time.Duration, s Samples) error {
	args, err := b.crwrapArgs("restore", mib)
	if err != nil {
		return err
	}
	n := len(nss)
	type out struct {
		p   *proc
		d   float64
		err error
	}
	outs := make([]out, n)
	first := time.Now()
	var wg sync.WaitGroup
	for i := range nss {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			time.Sleep(time.Until(first.Add(within * time.Duration(i) / time.Duration(n))))
			p, err := startCrwrap(nss[i], args...)
			if err != nil {
				outs[i].err = err
				return
			}
			outs[i].p = p
			at, err := pollReady(p, nss[i], b.addr(), b.cfg.Poll, b.timeout(mib))
			outs[i].d, outs[i].err = ms(at.Sub(p.started)), err
		}(i)
	}
	wg.Wait()
	defer func() {
		var sw sync.WaitGroup
		for _, o := range outs {
			if o.p != nil {
				sw.Add(1)
				go func(p *proc) { defer sw.Done(); p.stop(30 * time.Second) }(o.p)
			}
		}
		sw.Wait()
	}()
	var times []float64
	for i, o := range outs {
		if o.err != nil {
			return fmt.Errorf("burst restore %d: %w", i, o.err)
		}
		if _, err := o.p.waitPhase("summary", 30*time.Second); err != nil {
			return err
		}
		times = append(times, o.d)
	}
	s.add("p50_ms", percentile(times, 50))
	s.add("p95_ms", percentile(times, 95))
	s.add("slowest_ms", maxOf(times))
	return nil
}
