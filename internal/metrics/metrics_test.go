package metrics

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

func observeAll(m *Metrics) {
	m.SetInfo("v1.2.3", "4.2")
	m.ObserveCheckpoint(1500*time.Millisecond, 270<<20)
	m.ObserveRestore(280*time.Millisecond, 270<<20)
	m.ObserveTimeToReady(ModeRestore, 300*time.Millisecond)
	m.ObserveTimeToReady(ModeRun, 5*time.Second)
	m.ObservePhase(PhaseDump, 900*time.Millisecond)
	m.IncRestoreFallback(FallbackDamaged)
	m.ObserveDumpStats(DumpStats{
		FreezingTime: 101 * time.Millisecond, FrozenTime: 350 * time.Millisecond,
		MemdumpTime: 120 * time.Millisecond, MemwriteTime: 200 * time.Millisecond,
		PagesScanned: 70000, PagesSkippedParent: 0, PagesWritten: 66000,
	})
	m.ObserveRestoreStats(RestoreStats{
		ForkingTime: 5 * time.Millisecond, RestoreTime: 240 * time.Millisecond,
		PagesRestored: 66000,
	})
	m.ObserveTransfer(DirectionPull, 2*time.Second, 256<<20, nil)
	m.IncCache(CacheMiss)
}

var wantFamilies = map[string]dto.MetricType{
	"crwrap_checkpoint_duration_seconds": dto.MetricType_HISTOGRAM,
	"crwrap_restore_duration_seconds":    dto.MetricType_HISTOGRAM,
	"crwrap_time_to_ready_seconds":       dto.MetricType_HISTOGRAM,
	"crwrap_phase_duration_seconds":      dto.MetricType_HISTOGRAM,
	"crwrap_checkpoint_size_bytes":       dto.MetricType_GAUGE,
	"crwrap_restore_fallbacks_total":     dto.MetricType_COUNTER,
	"crwrap_info":                        dto.MetricType_GAUGE,
	"crwrap_criu_freezing_time_seconds":  dto.MetricType_GAUGE,
	"crwrap_criu_frozen_time_seconds":    dto.MetricType_GAUGE,
	"crwrap_criu_memdump_time_seconds":   dto.MetricType_GAUGE,
	"crwrap_criu_memwrite_time_seconds":  dto.MetricType_GAUGE,
	"crwrap_criu_pages_scanned":          dto.MetricType_GAUGE,
	"crwrap_criu_pages_skipped_parent":   dto.MetricType_GAUGE,
	"crwrap_criu_pages_written":          dto.MetricType_GAUGE,
	"crwrap_criu_forking_time_seconds":   dto.MetricType_GAUGE,
	"crwrap_criu_restore_time_seconds":   dto.MetricType_GAUGE,
	"crwrap_criu_pages_compared":         dto.MetricType_GAUGE,
	"crwrap_criu_pages_skipped_cow":      dto.MetricType_GAUGE,
	"crwrap_criu_pages_restored":         dto.MetricType_GAUGE,
	"go_goroutines":                      dto.MetricType_GAUGE,

	"crwrap_registry_transfer_duration_seconds": dto.MetricType_HISTOGRAM,
	"crwrap_registry_transfer_bytes_total":      dto.MetricType_COUNTER,
	"crwrap_registry_transfers_total":           dto.MetricType_COUNTER,
	"crwrap_registry_cache_total":               dto.MetricType_COUNTER,
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

func find(t *testing.T, fam *dto.MetricFamily, labels map[string]string) *dto.Metric {
	t.Helper()
next:
	for _, m := range fam.GetMetric() {
		for _, lp := range m.GetLabel() {
			if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
				continue next
			}
		}
		return m
	}
	t.Fatalf("%s has no series %v", fam.GetName(), labels)
	return nil
}

func TestServe(t *testing.T) {
	m := New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger, _ := logtest.NewNullLogger()
	addr, err := m.Serve(ctx, "127.0.0.1:0", logrus.NewEntry(logger))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr.String()

	// Before any observation every crwrap family is already there (except info, set by SetInfo).
	fams := scrape(t, base+"/metrics")
	for name, typ := range wantFamilies {
		if name == "crwrap_info" {
			continue
		}
		if fam, ok := fams[name]; !ok {
			t.Errorf("fresh scrape: no family %s", name)
		} else if fam.GetType() != typ {
			t.Errorf("fresh scrape: %s is a %s, want %s", name, fam.GetType(), typ)
		}
	}
	if got := len(fams["crwrap_time_to_ready_seconds"].GetMetric()); got != len(modes) {
		t.Errorf("time_to_ready has %d series before any observation, want one per mode", got)
	}

	observeAll(m)
	fams = scrape(t, base+"/metrics")
	for name, typ := range wantFamilies {
		fam, ok := fams[name]
		if !ok {
			t.Errorf("no family %s", name)
			continue
		}
		if fam.GetType() != typ {
			t.Errorf("%s is a %s, want %s", name, fam.GetType(), typ)
		}
		if fam.GetHelp() == "" {
			t.Errorf("%s has no help", name)
		}
	}

	h := find(t, fams["crwrap_time_to_ready_seconds"], map[string]string{"mode": "restore"}).GetHistogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() != 0.3 {
		t.Errorf("time_to_ready{mode=restore} count=%d sum=%g, want 1 and 0.3", h.GetSampleCount(), h.GetSampleSum())
	}
	if c := find(t, fams["crwrap_restore_fallbacks_total"], map[string]string{"reason": "damaged"}).GetCounter().GetValue(); c != 1 {
		t.Errorf("fallbacks{reason=damaged} = %g, want 1", c)
	}
	if c := find(t, fams["crwrap_restore_fallbacks_total"], map[string]string{"reason": "missing"}).GetCounter().GetValue(); c != 0 {
		t.Errorf("fallbacks{reason=missing} = %g, want 0", c)
	}
	if g := fams["crwrap_checkpoint_size_bytes"].GetMetric()[0].GetGauge().GetValue(); g != 270<<20 {
		t.Errorf("checkpoint_size_bytes = %g", g)
	}
	if g := fams["crwrap_criu_frozen_time_seconds"].GetMetric()[0].GetGauge().GetValue(); g != 0.35 {
		t.Errorf("criu_frozen_time_seconds = %g, want 0.35", g)
	}
	if g := fams["crwrap_criu_pages_written"].GetMetric()[0].GetGauge().GetValue(); g != 66000 {
		t.Errorf("criu_pages_written = %g", g)
	}
	info := find(t, fams["crwrap_info"], map[string]string{"version": "v1.2.3", "criu_version": "4.2"})
	if info.GetGauge().GetValue() != 1 {
		t.Errorf("crwrap_info = %g, want 1", info.GetGauge().GetValue())
	}
	m.SetInfo("v1.2.4", "4.2")
	if n := len(scrape(t, base+"/metrics")["crwrap_info"].GetMetric()); n != 1 {
		t.Errorf("crwrap_info has %d series after a second SetInfo, want 1", n)
	}

	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("/healthz = %s %q", resp.Status, body)
	}

	// Cancelling ctx stops the server.
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("server still answering after ctx was cancelled")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServeBadAddress(t *testing.T) {
	if _, err := New().Serve(context.Background(), "127.0.0.1:notaport", nil); err == nil {
		t.Fatal("Serve on a bad address succeeded")
	}
}

func TestLint(t *testing.T) {
	m := New()
	observeAll(m)
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
}

func TestCollectAndLint(t *testing.T) {
	m := New()
	observeAll(m)
	collectors := map[string]prometheus.Collector{
		"checkpoint_duration": m.checkpointDuration,
		"restore_duration":    m.restoreDuration,
		"time_to_ready":       m.timeToReady,
		"phase":               m.phaseDuration,
		"fallbacks":           m.restoreFallbacks,
		"checkpoint_size":     m.checkpointSize,
		"info":                m.info,
		"criu_frozen":         m.criuFrozenTime,
		"criu_pages_written":  m.criuPagesWritten,
		"criu_pages_restored": m.criuPagesRestored,
	}
	for name, c := range collectors {
		t.Run(name, func(t *testing.T) {
			problems, err := testutil.CollectAndLint(c)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				t.Errorf("lint %s: %s", p.Metric, p.Text)
			}
		})
	}
}

func TestNilMetricsIgnoresObservations(t *testing.T) {
	var m *Metrics
	observeAll(m) // must not panic
}

func TestInstancesAreIndependent(t *testing.T) {
	a, b := New(), New()
	a.IncRestoreFallback(FallbackMissing)
	if got := testutil.ToFloat64(b.restoreFallbacks.WithLabelValues(FallbackMissing)); got != 0 {
		t.Errorf("second Metrics sees the first's counter: %g", got)
	}
	if got := testutil.ToFloat64(a.restoreFallbacks.WithLabelValues(FallbackMissing)); got != 1 {
		t.Errorf("fallbacks{missing} = %g, want 1", got)
	}
}
