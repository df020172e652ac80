package readiness

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeProbe answers with fn(n) for its n-th attempt (from 1).
type fakeProbe struct {
	calls atomic.Int32
	fn    func(ctx context.Context, n int) error
}

func (f *fakeProbe) Check(ctx context.Context) error { return f.fn(ctx, int(f.calls.Add(1))) }
func (f *fakeProbe) String() string                  { return "fake" }

func TestWaitFirstAttemptIsImmediate(t *testing.T) {
	p := &fakeProbe{fn: func(context.Context, int) error { return nil }}
	// With an hour between attempts, only an immediate first attempt can finish in time.
	res, err := Wait(context.Background(), p, time.Hour, generous)
	if err != nil || res.Attempts != 1 || res.LastErr != nil {
		t.Fatalf("Wait = %+v, %v; want ready on the first attempt", res, err)
	}
	if res.Elapsed > generous {
		t.Errorf("Elapsed = %s", res.Elapsed)
	}
}

func TestWaitHungAttemptDoesNotDelayTheNext(t *testing.T) {
	var cancelled atomic.Bool
	p := &fakeProbe{fn: func(ctx context.Context, n int) error {
		if n == 1 {
			<-ctx.Done() // hangs until Wait ends it
			cancelled.Store(true)
			return ctx.Err()
		}
		return nil
	}}
	res, err := Wait(context.Background(), p, 10*time.Millisecond, generous, WithAttemptTimeout(time.Hour))
	if err != nil || res.Attempts != 2 {
		t.Fatalf("Wait = %+v, %v; want ready at the second attempt", res, err)
	}
	if !cancelled.Load() {
		t.Error("Wait returned before ending the hung attempt")
	}
}

// TestWaitSequentialAttemptTimeout: one attempt at a time, the first hangs past several
// intervals and is cut at its own deadline; the next starts right then (not an interval later,
// and not never).
func TestWaitSequentialAttemptTimeout(t *testing.T) {
	p := &fakeProbe{fn: func(ctx context.Context, n int) error {
		if n == 1 {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}}
	res, err := Wait(context.Background(), p, 10*time.Millisecond, generous,
		WithConcurrency(1), WithAttemptTimeout(50*time.Millisecond))
	if err != nil || res.Attempts != 2 {
		t.Fatalf("Wait = %+v, %v; want the hung attempt cut at its deadline, then ready", res, err)
	}
}

func TestWaitConcurrencyIsBounded(t *testing.T) {
	var running, most atomic.Int32
	p := &fakeProbe{fn: func(ctx context.Context, n int) error {
		r := running.Add(1)
		defer running.Add(-1)
		for {
			m := most.Load()
			if r <= m || most.CompareAndSwap(m, r) {
				break
			}
		}
		<-ctx.Done()
		return ctx.Err()
	}}
	_, err := Wait(context.Background(), p, time.Millisecond, 200*time.Millisecond,
		WithConcurrency(2), WithAttemptTimeout(30*time.Millisecond))
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Wait = %v, want ErrTimeout", err)
	}
	if most.Load() > 2 {
		t.Errorf("%d attempts ran at once, want at most 2", most.Load())
	}
	if running.Load() != 0 {
		t.Errorf("%d attempts still running after Wait returned", running.Load())
	}
}

func TestWaitTimeout(t *testing.T) {
	p := &fakeProbe{fn: func(context.Context, int) error { return errors.New("connection refused") }}
	res, err := Wait(context.Background(), p, 10*time.Millisecond, 100*time.Millisecond)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Wait = %v, want ErrTimeout", err)
	}
	for _, want := range []string{"readiness timed out", "fake not ready after", "attempts", "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if res.Attempts < 1 || res.LastErr == nil || res.LastErr.Error() != "connection refused" {
		t.Errorf("Result = %+v", res)
	}
}

func TestWaitAborted(t *testing.T) {
	abort := make(chan struct{})
	p := &fakeProbe{fn: func(n context.Context, _ int) error { return errors.New("not yet") }}
	go func() {
		time.Sleep(50 * time.Millisecond)
		close(abort)
	}()
	_, err := Wait(context.Background(), p, 10*time.Millisecond, 0, WithAbort(abort))
	if !errors.Is(err, ErrAborted) || errors.Is(err, ErrTimeout) {
		t.Fatalf("Wait = %v, want ErrAborted", err)
	}

	// Already aborted: no attempt at all.
	p = &fakeProbe{fn: func(context.Context, int) error { return nil }}
	res, err := Wait(context.Background(), p, 10*time.Millisecond, 0, WithAbort(abort))
	if !errors.Is(err, ErrAborted) || res.Attempts != 0 {
		t.Fatalf("Wait = %+v, %v; want ErrAborted before any attempt", res, err)
	}
}

func TestWaitContextCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &fakeProbe{fn: func(context.Context, int) error { return errors.New("not yet") }}
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	_, err := Wait(ctx, p, 10*time.Millisecond, 0)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
}
