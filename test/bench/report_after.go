package main

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// reportSplit prints where crwrap's restore phase goes beyond CRIU's own log, lazy and eager.
func reportSplit(w io.Writer, r *Results) {
	fmt.Fprintln(w, "Lazy vs eager: crwrap's restore phase beyond CRIU's own run (ms)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "M MiB\tcrwrap restore phase: lazy\teager\tCRIU's whole log: lazy\teager\tphase beyond CRIU's log: lazy\teager\tlazy - eager\t")
	for _, s := range r.Sizes {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.MiB,
			get(s.Med, "r_restore_ms"), get(s.Med, "eager_restore_phase_ms"), get(s.Med, "criu_log_total_ms"), get(s.Med, "eager_criu_log_total_ms"),
			get(s.Med, "r_beyond_criu_log_ms"), get(s.Med, "eager_beyond_criu_log_ms"), diff(s.Med, "r_beyond_criu_log_ms", "eager_beyond_criu_log_ms"))
	}
	tw.Flush()
	fmt.Fprintln(w, "  phase beyond CRIU's log = crwrap's restore phase minus CRIU's time to \"Restore finished\": libcontainer, starting CRIU (and, lazy, its daemon)")
	fmt.Fprintln(w)
}

// reportAfter prints the first second after ready and the idle restore (issue 11, items 3, 5).
func reportAfter(w io.Writer, r *Results) {
	fmt.Fprintf(w, "After ready: GET %s one after another for %s from the moment /ready answered (ms)\n", touchPath, afterWindow)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "M MiB\twarm p50\tp99\tmax\treqs\tlazy p50\tp99\tmax\treqs\teager p50\tp99\tmax\treqs\tall memory in: after ready\tdaemon total\t")
	for _, s := range r.Sizes {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.MiB,
			f2(s.Med, "warm_p50_ms"), f2(s.Med, "warm_p99_ms"), f2(s.Med, "warm_max_ms"), get(s.Med, "warm_reqs"),
			f2(s.Med, "lazy_p50_ms"), f2(s.Med, "lazy_p99_ms"), f2(s.Med, "lazy_max_ms"), get(s.Med, "lazy_reqs"),
			f2(s.Med, "eager_p50_ms"), f2(s.Med, "eager_p99_ms"), f2(s.Med, "eager_max_ms"), get(s.Med, "eager_reqs"),
			get(s.Med, "lazy_loaded_after_ready_ms"), get(s.Med, "lazy_loaded_ms"))
	}
	tw.Flush()
	fmt.Fprintln(w, "  warm = the cold-started app; lazy/eager = just restored; all memory in = CRIU's lazy-pages daemon has copied every page (crwrap's phase=lazy-pages)")
	fmt.Fprintln(w)

	fmt.Fprintf(w, "Restore right after other container work vs after %s idle (lazy, ms)\n", idlePause)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "M MiB\tafter checkpoint\trestore phase\tCRIU restore\tafter idle\trestore phase\tCRIU restore\tafter/idle\t")
	for _, s := range r.Sizes {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.MiB,
			get(s.Med, "restore_ms"), get(s.Med, "r_restore_ms"), get(s.Med, "criu_restore_logged_ms"),
			get(s.Med, "idle_restore_ms"), get(s.Med, "idle_restore_phase_ms"), get(s.Med, "idle_criu_restore_ms"),
			ratio(s.Med, "restore_ms", "idle_restore_ms"))
	}
	tw.Flush()
	fmt.Fprintln(w, "  after checkpoint = the default lazy restore, started as soon as the checkpointing crwrap exited")
	fmt.Fprintln(w)
}

func f2(m map[string]float64, k string) string {
	v, ok := m[k]
	if !ok || v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

// reportAdmission prints N restores all at once beside N restores taking turns (issue 11, item 4).
func reportAdmission(w io.Writer, r *Results) {
	var single float64
	for _, c := range r.Conc {
		if c.N == 1 {
			single = c.Med["slowest_ms"]
		}
	}
	for _, c := range r.Conc {
		if _, ok := c.Med["adm_slowest_ms"]; !ok {
			continue
		}
		fmt.Fprintf(w, "Burst of %d restores of %d MiB: all at once vs %d at a time (a node semaphore, played by the benchmark; ms from the burst's start)\n", c.N, c.MiB, admitSlots())
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "\tslowest\tmedian\tslowest/single\t")
		sr := func(v float64) string {
			if single <= 0 || v <= 0 {
				return "-"
			}
			return fmt.Sprintf("%.1fx", v/single)
		}
		fmt.Fprintf(tw, "all at once\t%s\t%s\t%s\t\n", get(c.Med, "all_ready_ms"), get(c.Med, "median_ms"), sr(c.Med["all_ready_ms"]))
		fmt.Fprintf(tw, "%d at a time\t%s\t%s\t%s\t\n", admitSlots(), get(c.Med, "adm_slowest_ms"), get(c.Med, "adm_median_ms"), sr(c.Med["adm_slowest_ms"]))
		tw.Flush()
		fmt.Fprintln(w)
	}
}

// reportBurst prints the restores started within one second (issue 11, item 4).
func reportBurst(w io.Writer, r *Results) {
	bu := r.Burst
	if bu == nil {
		return
	}
	fmt.Fprintf(w, "Burst: %d restores of %d MiB started evenly within %s, each in its own network namespace (ms, each from its own start)\n", bu.N, bu.MiB, bu.Within)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "N\tp50\tp95\tslowest\t")
	fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t\n", bu.N, get(bu.Med, "p50_ms"), get(bu.Med, "p95_ms"), get(bu.Med, "slowest_ms"))
	tw.Flush()
	fmt.Fprintln(w)
}
