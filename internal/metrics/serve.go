package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
)

// shutdownGrace is how long in-flight scrapes may finish once the server is told to stop.
const shutdownGrace = 2 * time.Second

// Handler returns the HTTP handler serving /metrics (m's registry only) and /healthz.
func (m *Metrics) Handler(log *logrus.Entry) http.Handler {
	opts := promhttp.HandlerOpts{Registry: m.reg}
	if log != nil {
		opts.ErrorLog = log
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, opts)))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// Serve listens on addr (host:port; port 0 picks one) and serves Handler there until ctx is
// done. It returns once listening, with the bound address; a failure to listen is returned,
// later server errors are logged.
func (m *Metrics) Serve(ctx context.Context, addr string, log *logrus.Entry) (net.Addr, error) {
	if log == nil {
		log = logrus.NewEntry(logrus.StandardLogger())
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics on %s: %w", addr, err)
	}
	log = log.WithField("address", ln.Addr().String())
	srv := &http.Server{
		Handler:           m.Handler(log),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          nil,
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.WithError(err).Error("metrics server stopped")
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
	}()
	log.Debug("serving metrics")
	return ln.Addr(), nil
}
