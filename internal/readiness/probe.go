package readiness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Probe is one way of asking whether the app is ready.
type Probe interface {
	// Check makes one attempt and returns nil when the app is ready. It gives up when ctx is
	// done; ctx should carry a deadline, Check sets none of its own beyond the connect timeout.
	Check(ctx context.Context) error
	// String returns the spec the probe was parsed from, exactly as written.
	String() string
}

// Defaults used when no Option says otherwise.
const (
	// DefaultAttemptTimeout bounds one attempt of Wait. It is kubelet's default probe
	// timeoutSeconds: long enough for a slow health endpoint or command, and an attempt that
	// takes long does not delay the next one anyway (see DefaultConcurrency).
	DefaultAttemptTimeout = time.Second
	// DefaultConnectTimeout bounds the TCP connect of http, https and tcp probes. A connect in
	// the pod's network namespace is answered at once or its SYN was dropped (CRIU locks the
	// network for ~200 ms during a restore) and the kernel retries only after 1 s: giving up
	// early and trying again is faster.
	DefaultConnectTimeout = 250 * time.Millisecond
	// DefaultConcurrency is how many attempts Wait lets run at once, so one hung attempt does
	// not hold back the next.
	DefaultConcurrency = 3
	// DefaultInterval is used by Wait when it is given an interval <= 0.
	DefaultInterval = 50 * time.Millisecond
	// Shell is the shell that runs command probes.
	Shell = "/bin/sh"
)

// ErrEmpty is returned by Parse for an empty or blank spec.
var ErrEmpty = errors.New("empty readiness probe")

// Option tunes Parse, Wait or RunOnce. Each function uses the options that concern it and
// ignores the others, so one option list can be passed to all of them.
type Option func(*options)

type options struct {
	runner         Runner
	connectTimeout time.Duration
	attemptTimeout time.Duration
	concurrency    int
	abort          <-chan struct{}
	log            *logrus.Entry
}

func newOptions(opts []Option) options {
	o := options{
		runner:         DefaultRunner,
		connectTimeout: DefaultConnectTimeout,
		attemptTimeout: DefaultAttemptTimeout,
		concurrency:    DefaultConcurrency,
	}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o
}

// WithRunner makes command probes start and wait for their shell through r (Parse, RunOnce).
// A nil r means DefaultRunner.
func WithRunner(r Runner) Option {
	return func(o *options) {
		if r == nil {
			r = DefaultRunner
		}
		o.runner = r
	}
}

// WithConnectTimeout sets how long http, https and tcp probes wait for a TCP connect
// (Parse, RunOnce). d <= 0 means no limit beyond the attempt's context.
func WithConnectTimeout(d time.Duration) Option {
	return func(o *options) { o.connectTimeout = d }
}

// WithAttemptTimeout sets the deadline of each attempt of Wait. d <= 0 means
// DefaultAttemptTimeout.
func WithAttemptTimeout(d time.Duration) Option {
	return func(o *options) {
		if d <= 0 {
			d = DefaultAttemptTimeout
		}
		o.attemptTimeout = d
	}
}

// WithConcurrency sets how many attempts Wait may have running at once (at least 1; 1 means
// strictly one after another).
func WithConcurrency(n int) Option {
	return func(o *options) { o.concurrency = max(n, 1) }
}

// WithAbort makes Wait stop with an error wrapping ErrAborted once ch is closed, typically
// because the app exited while crwrap was waiting for it.
func WithAbort(ch <-chan struct{}) Option {
	return func(o *options) { o.abort = ch }
}

// WithLogger makes Wait log at debug level each attempt's error when it differs from the
// previous one (so a long wait does not flood the log).
func WithLogger(log *logrus.Entry) Option {
	return func(o *options) { o.log = log }
}

// Parse turns a readiness spec into a Probe: http:// and https:// URLs become a GET probe
// (2xx is ready, after following up to 10 redirects; no proxy; like kubelet, the server's
// certificate is not verified), tcp://host:port a connect probe, anything else a command run
// as /bin/sh -c SPEC exactly as written (no expansion here: "$HOME" reaches the shell), with
// crwrap's environment and working directory.
func Parse(spec string, opts ...Option) (Probe, error) {
	o := newOptions(opts)
	if strings.TrimSpace(spec) == "" {
		return nil, ErrEmpty
	}
	trimmed := strings.TrimSpace(spec)
	lower := strings.ToLower(trimmed)
	switch {
	case strings.HasPrefix(lower, "http://"), strings.HasPrefix(lower, "https://"):
		return newHTTPProbe(trimmed, o)
	case strings.HasPrefix(lower, "tcp://"):
		return newTCPProbe(trimmed, o)
	default:
		return &commandProbe{spec: spec, runner: o.runner}, nil
	}
}

func newHTTPProbe(spec string, o options) (Probe, error) {
	u, err := url.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("parse readiness URL %q: %w", spec, err)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("parse readiness URL %q: no host", spec)
	}
	return &httpProbe{spec: spec, url: u.String(), client: newHTTPClient(o.connectTimeout)}, nil
}

func newTCPProbe(spec string, o options) (Probe, error) {
	u, err := url.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("parse readiness address %q: %w", spec, err)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.Opaque != "" {
		return nil, fmt.Errorf("parse readiness address %q: want tcp://host:port and nothing else", spec)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return nil, fmt.Errorf("parse readiness address %q: want tcp://host:port: %w", spec, err)
	}
	if port == "" {
		return nil, fmt.Errorf("parse readiness address %q: no port", spec)
	}
	if host == "" {
		return nil, fmt.Errorf("parse readiness address %q: no host", spec)
	}
	return &tcpProbe{spec: spec, addr: net.JoinHostPort(host, port), connectTimeout: o.connectTimeout}, nil
}
