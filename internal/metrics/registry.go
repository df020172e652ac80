package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Directions of a registry transfer: the value of the direction label.
const (
	DirectionPush = "push"
	DirectionPull = "pull"
)

// Results of a registry transfer: the value of the result label.
const (
	ResultOK    = "ok"
	ResultError = "error"
)

// Cache results of a restore that used the registry: the value of the result label of
// crwrap_registry_cache_total.
const (
	CacheHit    = "hit"
	CacheMiss   = "miss"
	CacheWaited = "waited"
)

// transfer holds the registry metrics.
type transfer struct {
	duration *prometheus.HistogramVec
	bytes    *prometheus.CounterVec
	total    *prometheus.CounterVec
	cache    *prometheus.CounterVec
}

func newTransfer(f factory) transfer {
	t := transfer{
		duration: f.histogramVec("registry_transfer_duration_seconds",
			"Time to push a checkpoint to the registry or pull one into the node cache, by direction (push, pull).",
			prometheus.ExponentialBuckets(0.01, 2, 16), "direction"), // 10 ms .. 327 s
		bytes: f.counterVec("registry_transfer_bytes_total",
			"Bytes of checkpoint layers moved to or from the registry, by direction (push: layers of pushed images, pull: fetched).",
			"direction"),
		total: f.counterVec("registry_transfers_total",
			"Pushes and pulls of checkpoints, by direction and result (ok, error).", "direction", "result"),
		cache: f.counterVec("registry_cache_total",
			"Restores from the registry by how the node cache served them: hit (there), miss (pulled), waited (another pod pulled it).",
			"result"),
	}
	for _, d := range []string{DirectionPush, DirectionPull} {
		t.duration.WithLabelValues(d)
		t.bytes.WithLabelValues(d)
		for _, r := range []string{ResultOK, ResultError} {
			t.total.WithLabelValues(d, r)
		}
	}
	for _, r := range []string{CacheHit, CacheMiss, CacheWaited} {
		t.cache.WithLabelValues(r)
	}
	return t
}

// ObserveTransfer records one push or pull (direction): how long it took, the bytes it moved
// and whether it worked.
func (m *Metrics) ObserveTransfer(direction string, d time.Duration, bytes int64, err error) {
	if m == nil {
		return
	}
	result := ResultOK
	if err != nil {
		result = ResultError
	}
	m.transfer.duration.WithLabelValues(direction).Observe(d.Seconds())
	if bytes > 0 {
		m.transfer.bytes.WithLabelValues(direction).Add(float64(bytes))
	}
	m.transfer.total.WithLabelValues(direction, result).Inc()
}

// IncCache counts one restore from the registry by its cache result (a Cache constant).
func (m *Metrics) IncCache(result string) {
	if m == nil {
		return
	}
	m.transfer.cache.WithLabelValues(result).Inc()
}
