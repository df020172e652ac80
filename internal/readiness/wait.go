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
	w := newWaiter(ctx, p, interval, o)
	defer w.close()

	// A timer rather than a context deadline, so that a deadline of the caller's ctx is not
	// mistaken for ours.
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}

	select {
	case <-o.abort:
		return w.abortedBeforeStart()
	default:
	}
	w.launch()
	for {
		select {
		case <-w.ticker.C:
			w.tick()
		case out := <-w.done:
			if out.err == nil {
				return w.succeeded()
			}
			w.failed(out)
		case <-expired:
			return w.expired(timeout)
		case <-o.abort:
			return w.aborted()
		case <-ctx.Done():
			return w.cancelled(ctx)
		}
	}
}

// waiter is the state of one Wait: the attempts running, when the next one is due, the result
// so far.
type waiter struct {
	p        Probe
	o        options
	interval time.Duration
	start    time.Time
	res      Result

	runCtx context.Context // parent of every attempt's context; cancelled by stop
	cancel context.CancelFunc
	done   chan outcome // never more sends outstanding than slots
	wg     sync.WaitGroup
	ticker *time.Timer // fires interval after the latest attempt started
	// inFlight counts running attempts; due is set when the ticker fired with no slot free.
	inFlight   int
	due        bool
	lastLogged string
}

func newWaiter(ctx context.Context, p Probe, interval time.Duration, o options) *waiter {
	w := &waiter{p: p, o: o, interval: interval, start: time.Now()}
	w.runCtx, w.cancel = context.WithCancel(ctx)
	w.done = make(chan outcome, o.concurrency)
	w.ticker = time.NewTimer(interval)
	return w
}

// close releases the waiter's context and timer (attempts are ended by stop, not here).
func (w *waiter) close() {
	w.cancel()
	w.ticker.Stop()
}

// launch starts the next attempt and restarts the interval.
func (w *waiter) launch() {
	w.res.Attempts++
	w.inFlight++
	w.ticker.Reset(w.interval)
	n := w.res.Attempts
	w.wg.Go(func() {
		actx, acancel := context.WithTimeout(w.runCtx, w.o.attemptTimeout)
		defer acancel()
		w.done <- outcome{n: n, err: w.p.Check(actx)}
	})
}

// tick handles the interval's end: the next attempt starts now, or once a slot is free.
func (w *waiter) tick() {
	if w.inFlight < w.o.concurrency {
		w.launch()
	} else {
		w.due = true
	}
}

// failed records a failed attempt (logged when its error differs from the last one logged) and
// starts the attempt that was waiting for its slot.
func (w *waiter) failed(out outcome) {
	w.inFlight--
	w.res.LastErr = out.err
	if w.o.log != nil && out.err.Error() != w.lastLogged {
		w.lastLogged = out.err.Error()
		w.o.log.WithField("attempt", out.n).Debugf("not ready: %v", out.err)
	}
	if w.due {
		w.due = false
		w.launch()
	}
}

// stop ends every running attempt and reports whether one of them succeeded meanwhile.
func (w *waiter) stop() (ready bool) {
	w.cancel()
	w.wg.Wait()
	for {
		select {
		case out := <-w.done:
			if out.err == nil {
				ready = true
			} else if w.res.LastErr == nil {
				w.res.LastErr = out.err
			}
		default:
			return ready
		}
	}
}

func (w *waiter) ready(elapsed time.Duration) (Result, error) {
	w.res.LastErr = nil
	w.res.Elapsed = elapsed
	return w.res, nil
}

// succeeded ends the other attempts after one reported ready.
func (w *waiter) succeeded() (Result, error) {
	w.inFlight--
	elapsed := time.Since(w.start)
	w.stop()
	return w.ready(elapsed)
}

// expired ends the attempts when the timeout passed; one that succeeded meanwhile still counts.
func (w *waiter) expired(timeout time.Duration) (Result, error) {
	if w.stop() {
		return w.ready(timeout)
	}
	w.res.Elapsed = time.Since(w.start)
	return w.res, fmt.Errorf("%w: %s not ready after %s (%d attempts): %w",
		ErrTimeout, w.p, w.res.Elapsed.Round(time.Millisecond), w.res.Attempts, lastErrOr(w.res.LastErr))
}

func (w *waiter) abortedBeforeStart() (Result, error) {
	w.res.Elapsed = time.Since(w.start)
	return w.res, fmt.Errorf("%w before the first attempt of %s", ErrAborted, w.p)
}

func (w *waiter) aborted() (Result, error) {
	w.stop()
	w.res.Elapsed = time.Since(w.start)
	return w.res, fmt.Errorf("%w after %s (%d attempts of %s)",
		ErrAborted, w.res.Elapsed.Round(time.Millisecond), w.res.Attempts, w.p)
}

func (w *waiter) cancelled(ctx context.Context) (Result, error) {
	w.stop()
	w.res.Elapsed = time.Since(w.start)
	return w.res, fmt.Errorf("wait for readiness of %s: %w", w.p, context.Cause(ctx))
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
