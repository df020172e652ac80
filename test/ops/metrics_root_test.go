package ops

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/crwrap/crwrap/test/harness"
)

// families is a parsed /metrics scrape.
type families map[string]*dto.MetricFamily

// scrape GETs http://addr/metrics and parses it as Prometheus text.
func scrape(t *testing.T, addr string) families {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}).Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("/metrics Content-Type %q, want text/plain (Prometheus text)", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// sample is one metric of a family whose labels include want.
func (f families) sample(t *testing.T, name string, want map[string]string) *dto.Metric {
	t.Helper()
	fam, ok := f[name]
	if !ok {
		t.Errorf("no metric family %s in /metrics (have %s)", name, strings.Join(f.names(), ", "))
		return nil
	}
next:
	for _, m := range fam.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		return m
	}
	t.Errorf("%s has no series with labels %v", name, want)
	return nil
}

func (f families) names() []string {
	var out []string
	for n := range f {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// value is a counter's, gauge's or untyped metric's value (NaN-free: -1 when absent).
func (f families) value(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	m := f.sample(t, name, labels)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	t.Errorf("%s is not a counter, gauge or untyped metric", name)
	return -1
}

// count is a histogram's (or summary's) sample count (-1 when absent).
func (f families) count(t *testing.T, name string, labels map[string]string) int64 {
	t.Helper()
	m := f.sample(t, name, labels)
	switch {
	case m == nil:
		return -1
	case m.Histogram != nil:
		return int64(m.GetHistogram().GetSampleCount())
	case m.Summary != nil:
		return int64(m.GetSummary().GetSampleCount())
	}
	t.Errorf("%s is not a histogram", name)
	return -1
}

// kind checks the family's type.
func (f families) kind(t *testing.T, name string, want dto.MetricType) {
	t.Helper()
	if fam, ok := f[name]; ok && fam.GetType() != want {
		t.Errorf("%s is a %v, want a %v", name, fam.GetType(), want)
	}
}

// assertInfo checks crwrap_info{version,criu_version} = 1.
func assertInfo(t *testing.T, f families) {
	t.Helper()
	m := f.sample(t, "crwrap_info", map[string]string{"criu_version": criuVersion(t)})
	if m == nil {
		return
	}
	if v := m.GetGauge().GetValue(); v != 1 {
		t.Errorf("crwrap_info = %v, want 1", v)
	}
	for _, l := range m.GetLabel() {
		if l.GetName() == "version" && l.GetValue() == "" {
			t.Errorf("crwrap_info has an empty version label")
		}
	}
}

// fallbacks sums crwrap_restore_fallbacks_total over every reason but except.
func (f families) fallbacksExcept(except string) (float64, []string) {
	var sum float64
	var seen []string
	for _, m := range f["crwrap_restore_fallbacks_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "reason" && l.GetValue() != except {
				sum += m.GetCounter().GetValue()
				seen = append(seen, fmt.Sprintf("%s=%v", l.GetValue(), m.GetCounter().GetValue()))
			}
		}
	}
	return sum, seen
}

// The /metrics endpoint of a checkpoint (scraped while it stays up) and of the restore of that
// checkpoint serve the documented families with values from this run.
func TestMetricsCheckpointAndRestore(t *testing.T) {
	a := newApp(t, "-warmup", "300ms", "-heap", "8")

	maddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	cp := harness.Start(t, harness.Options{}, a.args("checkpoint",
		a.props("cr.checkpoint.exit=false", "cr.metrics.address="+maddr), "--log-format", "json")...)
	harness.WaitLog(t, cp, "phase", "summary", 2*time.Minute)
	want := a.checkpointedValue()
	f := scrape(t, maddr)
	if n := f.count(t, "crwrap_checkpoint_duration_seconds", nil); n != 1 {
		t.Errorf("crwrap_checkpoint_duration_seconds count = %d, want 1", n)
	}
	f.kind(t, "crwrap_checkpoint_duration_seconds", dto.MetricType_HISTOGRAM)
	if n := f.count(t, "crwrap_time_to_ready_seconds", map[string]string{"mode": "checkpoint"}); n != 1 {
		t.Errorf(`crwrap_time_to_ready_seconds{mode="checkpoint"} count = %d, want 1`, n)
	}
	if v := f.value(t, "crwrap_checkpoint_size_bytes", nil); v <= 0 {
		t.Errorf("crwrap_checkpoint_size_bytes = %v, want > 0", v)
	}
	if v := f.value(t, "crwrap_criu_memdump_time_seconds", nil); v < 0 {
		t.Errorf("crwrap_criu_memdump_time_seconds = %v, want >= 0", v)
	}
	if v := f.value(t, "crwrap_criu_frozen_time_seconds", nil); v <= 0 {
		t.Errorf("crwrap_criu_frozen_time_seconds = %v, want > 0", v)
	}
	if v := f.value(t, "crwrap_criu_pages_written", nil); v <= 0 {
		t.Errorf("crwrap_criu_pages_written = %v, want > 0", v)
	}
	if n := f.count(t, "crwrap_phase_duration_seconds", map[string]string{"phase": "dump"}); n != 1 {
		t.Errorf(`crwrap_phase_duration_seconds{phase="dump"} count = %d, want 1`, n)
	}
	assertInfo(t, f)
	harness.Stop(t, cp)

	maddr = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	p := a.restore("cr.metrics.address=" + maddr)
	harness.WaitLog(t, p, "phase", "summary", time.Minute)
	harness.AssertRestored(t, p)
	if got := a.get("/value"); got != want {
		t.Errorf("restored /value = %q, want %q", got, want)
	}
	f = scrape(t, maddr)
	if n := f.count(t, "crwrap_restore_duration_seconds", nil); n != 1 {
		t.Errorf("crwrap_restore_duration_seconds count = %d, want 1", n)
	}
	f.kind(t, "crwrap_restore_duration_seconds", dto.MetricType_HISTOGRAM)
	if n := f.count(t, "crwrap_time_to_ready_seconds", map[string]string{"mode": "restore"}); n != 1 {
		t.Errorf(`crwrap_time_to_ready_seconds{mode="restore"} count = %d, want 1`, n)
	}
	if _, ok := f["crwrap_restore_fallbacks_total"]; !ok {
		t.Errorf("no crwrap_restore_fallbacks_total in /metrics")
	}
	f.kind(t, "crwrap_restore_fallbacks_total", dto.MetricType_COUNTER)
	if sum, seen := f.fallbacksExcept(""); sum != 0 {
		t.Errorf("crwrap_restore_fallbacks_total after a restore: %v, want all 0", seen)
	}
	if v := f.value(t, "crwrap_criu_restore_time_seconds", nil); v <= 0 {
		t.Errorf("crwrap_criu_restore_time_seconds = %v, want > 0", v)
	}
	if v := f.value(t, "crwrap_criu_pages_restored", nil); v <= 0 {
		t.Errorf("crwrap_criu_pages_restored = %v, want > 0", v)
	}
	assertInfo(t, f)
	if body, err := harness.Get("http://" + maddr + "/healthz"); err != nil {
		t.Errorf("GET /healthz: %v (%s)", err, body)
	}
	harness.Stop(t, p)
}

// A restore that falls back (no checkpoint) counts it: crwrap_restore_fallbacks_total{reason="missing"} is 1.
func TestMetricsFallbackMissing(t *testing.T) {
	a := newApp(t, "-warmup", "100ms")
	maddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	p := a.restore("cr.metrics.address=" + maddr)
	harness.WaitLog(t, p, "phase", "ready", time.Minute)
	harness.WaitHTTP(t, p, a.url("/ready"), 30*time.Second)
	entries, _ := harness.ParseJSONLog(p.Stderr.String())
	if fb := phases(entries, "fallback"); len(fb) != 1 || fb[0].Str("reason") != "missing" {
		t.Errorf("want one phase=fallback reason=missing, got %v", fb)
	}
	f := scrape(t, maddr)
	if v := f.value(t, "crwrap_restore_fallbacks_total", map[string]string{"reason": "missing"}); v != 1 {
		t.Errorf(`crwrap_restore_fallbacks_total{reason="missing"} = %v, want 1`, v)
	}
	if sum, seen := f.fallbacksExcept("missing"); sum != 0 {
		t.Errorf("other fallback reasons counted: %v", seen)
	}
	if v := f.value(t, "crwrap_criu_pages_restored", nil); v != 0 {
		t.Errorf("crwrap_criu_pages_restored = %v after a cold start, want 0", v)
	}
	assertInfo(t, f)
	harness.Stop(t, p)
}
