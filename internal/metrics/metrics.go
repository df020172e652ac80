package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "crwrap"

// Modes for ObserveTimeToReady: the value of the mode label.
const (
	ModeRun        = "run"
	ModeCheckpoint = "checkpoint"
	ModeRestore    = "restore"
)

// Reasons for IncRestoreFallback: the value of the reason label. Keep to these (or a few more
// constants): every distinct value is a time series.
const (
	// FallbackMissing: no checkpoint was there (after cr.restore.wait).
	FallbackMissing = "missing"
	// FallbackDamaged: the checkpoint failed verification (sizes, digests, manifest).
	FallbackDamaged = "damaged"
	// FallbackForeign: the checkpoint is of another app (command, template, volumes, executable).
	FallbackForeign = "foreign"
	// FallbackIncompatible: the checkpoint was made on an incompatible host (kernel, CPU, CRIU).
	FallbackIncompatible = "incompatible"
	// FallbackRestoreFailed: CRIU's restore failed.
	FallbackRestoreFailed = "restore_failed"
	// FallbackNotReady: the restored app did not become ready in time.
	FallbackNotReady = "not_ready"
	// FallbackPullFailed: the checkpoint could not be pulled from cr.checkpoint.image (registry
	// unreachable, slow past cr.checkpoint.pull-timeout, failing, disk full).
	FallbackPullFailed = "pull_failed"
	// FallbackUntrusted: the registry's checkpoint is not signed by cr.checkpoint.verify-key, or
	// cannot be decrypted.
	FallbackUntrusted = "untrusted"
)

// Phases for ObservePhase: the value of the phase label, as in the phase log lines.
const (
	PhaseRender   = "render"
	PhaseStart    = "start"
	PhaseReady    = "ready"
	PhaseWarmup   = "warmup"
	PhaseDump     = "dump"
	PhasePublish  = "publish"
	PhaseVerify   = "verify"
	PhaseRestore  = "restore"
	PhaseFallback = "fallback"
	PhaseExit     = "exit"
)

var (
	modes   = []string{ModeRun, ModeCheckpoint, ModeRestore}
	reasons = []string{FallbackMissing, FallbackDamaged, FallbackForeign, FallbackIncompatible, FallbackRestoreFailed, FallbackNotReady,
		FallbackPullFailed, FallbackUntrusted}
	phases = []string{PhaseRender, PhaseStart, PhaseReady, PhaseWarmup, PhaseDump, PhasePublish,
		PhaseVerify, PhaseRestore, PhaseFallback, PhaseExit}
)

// DumpStats are CRIU's dump statistics (stats-dump), converted by the caller.
type DumpStats struct {
	// FreezingTime is how long freezing the process tree took.
	FreezingTime time.Duration
	// FrozenTime is how long the app stood frozen.
	FrozenTime time.Duration
	// MemdumpTime is how long collecting memory pages took.
	MemdumpTime time.Duration
	// MemwriteTime is how long writing them out took.
	MemwriteTime time.Duration
	// PagesScanned is the number of pages CRIU looked at.
	PagesScanned uint64
	// PagesSkippedParent is the number of pages found unchanged in a parent image.
	PagesSkippedParent uint64
	// PagesWritten is the number of pages written to the images.
	PagesWritten uint64
}

// RestoreStats are CRIU's restore statistics (stats-restore), converted by the caller.
type RestoreStats struct {
	// ForkingTime is how long recreating the process tree took.
	ForkingTime time.Duration
	// RestoreTime is how long the whole restore took, as CRIU counts it.
	RestoreTime time.Duration
	// PagesCompared is the number of pages compared with a parent (pre-dump) image.
	PagesCompared uint64
	// PagesSkippedCOW is the number of pages shared copy-on-write rather than restored.
	PagesSkippedCOW uint64
	// PagesRestored is the number of pages restored.
	PagesRestored uint64
}

// Metrics is crwrap's set of metrics with its own registry. Its methods are safe for
// concurrent use; a nil *Metrics ignores every observation, so callers need no "metrics on?"
// checks.
type Metrics struct {
	reg *prometheus.Registry

	checkpointDuration prometheus.Histogram
	restoreDuration    prometheus.Histogram
	timeToReady        *prometheus.HistogramVec
	phaseDuration      *prometheus.HistogramVec
	checkpointSize     prometheus.Gauge
	restoreFallbacks   *prometheus.CounterVec
	info               *prometheus.GaugeVec

	criuFreezingTime       prometheus.Gauge
	criuFrozenTime         prometheus.Gauge
	criuMemdumpTime        prometheus.Gauge
	criuMemwriteTime       prometheus.Gauge
	criuPagesScanned       prometheus.Gauge
	criuPagesSkippedParent prometheus.Gauge
	criuPagesWritten       prometheus.Gauge
	criuForkingTime        prometheus.Gauge
	criuRestoreTime        prometheus.Gauge
	criuPagesCompared      prometheus.Gauge
	criuPagesSkippedCOW    prometheus.Gauge
	criuPagesRestored      prometheus.Gauge

	transfer transfer
}

// New returns a Metrics with every family registered in a registry of its own, along with the
// standard Go runtime and process collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	f := factory{reg: reg}
	m := &Metrics{
		reg: reg,
		checkpointDuration: f.histogram("checkpoint_duration_seconds",
			"Time to checkpoint the app: from the dump's start to the checkpoint published.",
			prometheus.ExponentialBuckets(0.05, 2, 13)), // 50 ms .. 205 s
		restoreDuration: f.histogram("restore_duration_seconds",
			"Time to restore the app from its checkpoint, until its processes run again.",
			prometheus.ExponentialBuckets(0.01, 2, 13)), // 10 ms .. 41 s
		timeToReady: f.histogramVec("time_to_ready_seconds",
			"Time from starting (or restoring) the app until its readiness probe passed, by mode (run, checkpoint, restore).",
			prometheus.ExponentialBuckets(0.01, 2, 17), "mode"), // 10 ms .. 655 s
		phaseDuration: f.histogramVec("phase_duration_seconds",
			"Duration of each phase crwrap goes through (render, start, ready, warmup, dump, publish, verify, restore, fallback, exit).",
			prometheus.ExponentialBuckets(0.001, 2, 20), "phase"), // 1 ms .. 524 s
		checkpointSize: f.gauge("checkpoint_size_bytes",
			"Size of the latest checkpoint written or restored, all files included."),
		restoreFallbacks: f.counterVec("restore_fallbacks_total",
			"Restores that fell back to a cold start, by reason (missing, damaged, foreign, restore_failed, not_ready).",
			"reason"),
		info: f.gaugeVec("info",
			"Always 1: the versions of crwrap and of the CRIU it uses.", "version", "criu_version"),

		criuFreezingTime: f.gauge("criu_freezing_time_seconds", "CRIU: time spent freezing the app in the latest dump."),
		criuFrozenTime:   f.gauge("criu_frozen_time_seconds", "CRIU: time the app stood frozen in the latest dump."),
		criuMemdumpTime:  f.gauge("criu_memdump_time_seconds", "CRIU: time spent collecting memory in the latest dump."),
		criuMemwriteTime: f.gauge("criu_memwrite_time_seconds", "CRIU: time spent writing memory in the latest dump."),
		criuPagesScanned: f.gauge("criu_pages_scanned", "CRIU: memory pages scanned in the latest dump."),
		criuPagesSkippedParent: f.gauge("criu_pages_skipped_parent",
			"CRIU: memory pages of the latest dump found unchanged in a parent image."),
		criuPagesWritten:    f.gauge("criu_pages_written", "CRIU: memory pages written in the latest dump."),
		criuForkingTime:     f.gauge("criu_forking_time_seconds", "CRIU: time spent recreating processes in the latest restore."),
		criuRestoreTime:     f.gauge("criu_restore_time_seconds", "CRIU: duration of the latest restore as CRIU counts it."),
		criuPagesCompared:   f.gauge("criu_pages_compared", "CRIU: memory pages compared with a parent image in the latest restore."),
		criuPagesSkippedCOW: f.gauge("criu_pages_skipped_cow", "CRIU: memory pages shared copy-on-write in the latest restore."),
		criuPagesRestored:   f.gauge("criu_pages_restored", "CRIU: memory pages restored in the latest restore."),
	}
	m.transfer = newTransfer(f)
	for _, v := range modes {
		m.timeToReady.WithLabelValues(v)
	}
	for _, v := range phases {
		m.phaseDuration.WithLabelValues(v)
	}
	for _, v := range reasons {
		m.restoreFallbacks.WithLabelValues(v)
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry returns the registry holding every metric of m, for tests and for adding more.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SetInfo sets crwrap_info{version,criu_version} to 1, replacing earlier versions.
func (m *Metrics) SetInfo(version, criuVersion string) {
	if m == nil {
		return
	}
	m.info.Reset()
	m.info.WithLabelValues(version, criuVersion).Set(1)
}

// ObserveCheckpoint records the duration of a checkpoint and the size in bytes of what it
// published.
func (m *Metrics) ObserveCheckpoint(d time.Duration, sizeBytes int64) {
	if m == nil {
		return
	}
	m.checkpointDuration.Observe(d.Seconds())
	m.checkpointSize.Set(float64(sizeBytes))
}

// ObserveRestore records the duration of a restore and the size in bytes of the checkpoint
// it restored (sizeBytes < 0 leaves the size alone).
func (m *Metrics) ObserveRestore(d time.Duration, sizeBytes int64) {
	if m == nil {
		return
	}
	m.restoreDuration.Observe(d.Seconds())
	if sizeBytes >= 0 {
		m.checkpointSize.Set(float64(sizeBytes))
	}
}

// ObserveTimeToReady records the time from start (or restore) to ready in mode (ModeRun,
// ModeCheckpoint or ModeRestore; a cold start after a fallback counts as ModeRun).
func (m *Metrics) ObserveTimeToReady(mode string, d time.Duration) {
	if m == nil {
		return
	}
	m.timeToReady.WithLabelValues(mode).Observe(d.Seconds())
}

// ObservePhase records how long phase (one of the Phase constants) took.
func (m *Metrics) ObservePhase(phase string, d time.Duration) {
	if m == nil {
		return
	}
	m.phaseDuration.WithLabelValues(phase).Observe(d.Seconds())
}

// IncRestoreFallback counts one fall-back to a cold start for reason (a Fallback constant).
func (m *Metrics) IncRestoreFallback(reason string) {
	if m == nil {
		return
	}
	m.restoreFallbacks.WithLabelValues(reason).Inc()
}

// ObserveDumpStats sets the CRIU dump statistics gauges.
func (m *Metrics) ObserveDumpStats(s DumpStats) {
	if m == nil {
		return
	}
	m.criuFreezingTime.Set(s.FreezingTime.Seconds())
	m.criuFrozenTime.Set(s.FrozenTime.Seconds())
	m.criuMemdumpTime.Set(s.MemdumpTime.Seconds())
	m.criuMemwriteTime.Set(s.MemwriteTime.Seconds())
	m.criuPagesScanned.Set(float64(s.PagesScanned))
	m.criuPagesSkippedParent.Set(float64(s.PagesSkippedParent))
	m.criuPagesWritten.Set(float64(s.PagesWritten))
}

// ObserveRestoreStats sets the CRIU restore statistics gauges.
func (m *Metrics) ObserveRestoreStats(s RestoreStats) {
	if m == nil {
		return
	}
	m.criuForkingTime.Set(s.ForkingTime.Seconds())
	m.criuRestoreTime.Set(s.RestoreTime.Seconds())
	m.criuPagesCompared.Set(float64(s.PagesCompared))
	m.criuPagesSkippedCOW.Set(float64(s.PagesSkippedCOW))
	m.criuPagesRestored.Set(float64(s.PagesRestored))
}

// factory builds metrics in the crwrap namespace and registers them.
type factory struct{ reg *prometheus.Registry }

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}
