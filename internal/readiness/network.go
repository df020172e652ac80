package readiness

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// httpProbe GETs a URL over a fresh connection each attempt.
type httpProbe struct {
	spec   string
	url    string
	client *http.Client
}

func newHTTPClient(connectTimeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: connectTimeout}
	return &http.Client{Transport: &http.Transport{
		// No proxy: the target is the app in this pod, whatever HTTP_PROXY says.
		Proxy:       nil,
		DialContext: dialer.DialContext,
		// Like kubelet's HTTPS probes: the app's certificate is not checked.
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
		TLSHandshakeTimeout: 0,                                     // bounded by the attempt's context
		// A fresh connection per attempt: nothing is left open between attempts (and none in
		// the app when it is checkpointed).
		DisableKeepAlives:  true,
		DisableCompression: true,
		ForceAttemptHTTP2:  false,
	}}
}

func (p *httpProbe) String() string { return p.spec }

func (p *httpProbe) Check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return fmt.Errorf("build request for %s: %w", p.url, err)
	}
	req.Close = true
	req.Header.Set("User-Agent", "crwrap-readiness")
	resp, err := p.client.Do(req)
	if err != nil {
		return err // *url.Error: `Get "URL": cause`
	}
	// Drain a little so the server sees its response read; the connection is closed anyway.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: status %s", p.url, resp.Status)
	}
	return nil
}

// tcpProbe is ready when a TCP connect succeeds.
type tcpProbe struct {
	spec           string
	addr           string
	connectTimeout time.Duration
}

func (p *tcpProbe) String() string { return p.spec }

func (p *tcpProbe) Check(ctx context.Context) error {
	d := net.Dialer{Timeout: p.connectTimeout}
	conn, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return err // *net.OpError: "dial tcp ADDR: cause"
	}
	return conn.Close()
}
