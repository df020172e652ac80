package readiness

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrTimeout is wrapped by Wait's error when the timeout passed before the app was ready.
var ErrTimeout = errors.New("readiness timed out")

// ErrAborted is wrapped by Wait's error when the abort channel (WithAbort) was closed first.
var ErrAborted = errors.New("readiness wait aborted")

// Result tells how a Wait went.
type Result struct {
	// Attempts is the number of attempts started.
	Attempts int
	// Elapsed is the time from the call to Wait until readiness was seen (or Wait gave up).
	Elapsed time.Duration
	// LastErr is the error of the latest failed attempt; nil when Wait succeeded.
	LastErr error
}

type outcome struct {
	n   int
	err error
}

// Wait polls p until it reports ready, the timeout passes (an error wrapping ErrTimeout and
// the last attempt's error), the abort channel of WithAbort is closed (ErrAborted) or ctx is
// done (ctx's error). The first attempt starts at once; the next one interval after the start
// of the previous one, or as soon as a slot is free when WithConcurrency attempts are already
// running. Each attempt gets its own deadline (WithAttemptTimeout). Wait returns only once
// every attempt it started has ended, so no probe process outlives it.
//
// interval <= 0 means DefaultInterval; timeout <= 0 means no timeout.
func Wait(ctx context.Context, p Probe, interval, timeout time.Duration, opts ...Option) (Result, error) {
	o := newOptions(opts)
	if interval <= 0 {
		interval = DefaultInterval
	}
	start := time.Now()
	var res Result

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	// A timer rather than a context deadline, so that a deadline of the caller's ctx is not
	// mistaken for ours.
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}

	done := make(chan outcome, o.concurrency) // never more sends outstanding than slots
	var wg sync.WaitGroup
	tick := time.NewTimer(interval)
	defer tick.Stop()
	inFlight, due := 0, false

	launch := func() {
		res.Attempts++
		inFlight++
		tick.Reset(interval)
		n := res.Attempts
		wg.Go(func() {
			actx, acancel := context.WithTimeout(runCtx, o.attemptTimeout)
			defer acancel()
			done <- outcome{n: n, err: p.Check(actx)}
		})
	}
	var lastLogged string
	fail := func(out outcome) {
		res.LastErr = out.err
		if o.log != nil && out.err.Error() != lastLogged {
			lastLogged = out.err.Error()
			o.log.WithField("attempt", out.n).Debugf("not ready: %v", out.err)
		}
	}
	// stop ends every running attempt and reports whether one of them succeeded meanwhile.
	stop := func() (ready bool) {
		cancel()
		wg.Wait()
		for {
			select {
			case out := <-done:
				if out.err == nil {
					ready = true
				} else if res.LastErr == nil {
					res.LastErr = out.err
				}
			default:
				return ready
			}
		}
	}
	ready := func(elapsed time.Duration) (Result, error) {
		res.LastErr = nil
		res.Elapsed = elapsed
		return res, nil
	}

	select {
	case <-o.abort:
		res.Elapsed = time.Since(start)
		return res, fmt.Errorf("%w before the first attempt of %s", ErrAborted, p)
	default:
	}
	launch()
	for {
		select {
		case <-tick.C:
			if inFlight < o.concurrency {
				launch()
			} else {
				due = true
			}
		case out := <-done:
			inFlight--
			if out.err == nil {
				elapsed := time.Since(start)
				stop()
				return ready(elapsed)
			}
			fail(out)
			if due {
				due = false
				launch()
			}
		case <-expired:
			if stop() {
				return ready(timeout)
			}
			res.Elapsed = time.Since(start)
			return res, fmt.Errorf("%w: %s not ready after %s (%d attempts): %w",
				ErrTimeout, p, res.Elapsed.Round(time.Millisecond), res.Attempts, lastErrOr(res.LastErr))
		case <-o.abort:
			stop()
			res.Elapsed = time.Since(start)
			return res, fmt.Errorf("%w after %s (%d attempts of %s)",
				ErrAborted, res.Elapsed.Round(time.Millisecond), res.Attempts, p)
		case <-ctx.Done():
			stop()
			res.Elapsed = time.Since(start)
			return res, fmt.Errorf("wait for readiness of %s: %w", p, context.Cause(ctx))
		}
	}
}

func lastErrOr(err error) error {
	if err == nil {
		return errors.New("no attempt finished")
	}
	return err
}

// RunOnce makes a single attempt of spec (parsed as by Parse), for cr.checkpoint.warmup. It
// sets no deadline: give ctx the one you want.
func RunOnce(ctx context.Context, spec string, opts ...Option) error {
	p, err := Parse(spec, opts...)
	if err != nil {
		return err
	}
	if err := p.Check(ctx); err != nil {
		return fmt.Errorf("run %s: %w", p, err)
	}
	return nil
}
