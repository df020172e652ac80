package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// TestQuickBench runs the benchmark's quick mode and checks only that every number it
// reports exists and is positive: timings on a shared machine are no test's business.
func TestQuickBench(t *testing.T) {
	harness.Require(t)
	var log bytes.Buffer
	res, err := Run(Config{Sizes: []int{16}, Warmup: time.Second, Reps: 1, Conc: []int{1, 2}, ConcSize: 16,
		Poll: 5 * time.Millisecond, Peers: PeerNames, Burst: 3, Log: &log})
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, log.String())
	}
	if len(res.Sizes) != 1 || len(res.Conc) != 2 {
		t.Fatalf("want 1 size and 2 concurrency results, got %d and %d", len(res.Sizes), len(res.Conc))
	}
	positive := func(what string, med map[string]float64, keys ...string) {
		t.Helper()
		for _, k := range keys {
			if v, ok := med[k]; !ok || v <= 0 {
				t.Errorf("%s: %s = %v (present %v), want > 0", what, k, v, ok)
			}
		}
	}
	positive("16 MiB", res.Sizes[0].Med,
		"cold_ms", "cold_logged_ms", "ckpt_ms", "ckpt_dump_ms", "ckpt_total_ms", "size_mb",
		"restore_ms", "restore_logged_ms", "r_restore_ms", "criu_restore_ms", "criu_log_total_ms",
		"eager_restore_ms", "eager_criu_restore_ms",
		"push_ms", "registry_restore_ms", "registry_restore_pull_ms", "registry_cached_restore_ms", "crane_pull_ms",
		"registry_lazy_restore_ms", "registry_lazy_pull_ms", "registry_lazy_fetch_ms", "registry_lazy_memory_in_ms",
		"warm_p50_ms", "warm_p99_ms", "warm_reqs", "lazy_p50_ms", "lazy_p99_ms", "lazy_reqs", "eager_p50_ms",
		"lazy_loaded_ms", "idle_restore_ms", "idle_criu_restore_ms", "eager_restore_phase_ms", "eager_criu_log_total_ms")
	for _, n := range PeerNames {
		positive("peer "+n, res.Sizes[0].Med, n+"_cold_ms", n+"_ckpt_ms", n+"_restore_ms", n+"_criu_restore_ms")
	}
	if _, ok := res.Sizes[0].Med["overhead_ms"]; !ok {
		t.Error("no crwrap overhead figure")
	}
	for _, c := range res.Conc {
		positive("concurrency", c.Med, "slowest_ms", "median_ms", "all_ready_ms", "slowest_logged_ms", "slowest_criu_ms")
	}
	if res.Burst == nil {
		t.Error("no burst result")
	} else {
		positive("burst", res.Burst.Med, "p50_ms", "p95_ms", "slowest_ms")
	}
	var out bytes.Buffer
	Report(&out, res)
	for _, want := range []string{"Cold start vs restore", "Concurrent restores", "A fresh node from a loopback registry", "A fresh node with pages on demand", "Targets", "restore <= cold/20", "Peers:", "eager/runc", "After ready", "after idle", "Lazy vs eager:", "Burst: 3 restores", "crwrap eager <= 0.9x raw runc"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("\n%s", out.String())
}
