package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

func f0(v float64, ok bool) string {
	if !ok || v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", v)
}

func get(m map[string]float64, k string) string {
	v, ok := m[k]
	return f0(v, ok)
}

// Report prints the results as text tables.
func Report(w io.Writer, r *Results) {
	m := r.Machine
	fmt.Fprintf(w, "crwrap benchmark — %s\n", r.Started.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "machine: %s, %d cores, %s RAM, kernel %s, THP %s\n", m.CPU, m.Cores, m.Memory, m.Kernel, m.THP)
	fmt.Fprintf(w, "crwrap:  %s; CRIU %s (bundled)\n", m.Crwrap, m.CRIU)
	fmt.Fprintf(w, "load:    %s before, %s after (1/5/15 min); run took %s\n", m.LoadBefore, m.LoadAfter, r.Duration.Round(time.Second))
	fmt.Fprintf(w, "app:     %s\n", r.Command)
	fmt.Fprintf(w, "         W=%s warm-up; medians of %d repetition(s); outside = from just before exec of crwrap until GET /ready answers 200 (polled every %s)\n\n",
		r.Warmup, r.Reps, r.Poll)

	fmt.Fprintln(w, "Cold start vs restore (ms, MB)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "M MiB\tcold\tcold logged\tcheckpoint\timage MB\trestore\trestore logged\tCRIU restore\tcrwrap overhead\trestore/cold\t")
	for _, s := range r.Sizes {
		ratio := "-"
		if s.Med["cold_ms"] > 0 && s.Med["restore_ms"] > 0 {
			ratio = fmt.Sprintf("1/%.1f", s.Med["cold_ms"]/s.Med["restore_ms"])
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.MiB,
			get(s.Med, "cold_ms"), get(s.Med, "cold_logged_ms"), get(s.Med, "ckpt_ms"), get(s.Med, "size_mb"),
			get(s.Med, "restore_ms"), get(s.Med, "restore_logged_ms"), get(s.Med, "criu_restore_ms"),
			get(s.Med, "overhead_ms"), ratio)
	}
	tw.Flush()
	fmt.Fprintln(w, "  checkpoint = crwrap's identify+dump+write+publish phases (after the app was ready); crwrap overhead = restore (outside) - CRIU restore (stats-restore restore_time)")
	fmt.Fprintln(w)

	fmt.Fprintln(w, "Lazy (default) vs eager restore (cr.restore.lazy=false), same run (ms)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "M MiB	lazy restore	lazy/cold	eager restore	eager CRIU restore	eager overhead	eager/cold	")
	for _, s := range r.Sizes {
		lz, ea, eo := "-", "-", "-"
		if s.Med["cold_ms"] > 0 && s.Med["restore_ms"] > 0 {
			lz = fmt.Sprintf("1/%.1f", s.Med["cold_ms"]/s.Med["restore_ms"])
		}
		if s.Med["cold_ms"] > 0 && s.Med["eager_restore_ms"] > 0 {
			ea = fmt.Sprintf("1/%.1f", s.Med["cold_ms"]/s.Med["eager_restore_ms"])
		}
		if s.Med["eager_restore_ms"] > 0 && s.Med["eager_criu_restore_ms"] > 0 {
			eo = fmt.Sprintf("%.0f", s.Med["eager_restore_ms"]-s.Med["eager_criu_restore_ms"])
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.MiB, get(s.Med, "restore_ms"), lz,
			get(s.Med, "eager_restore_ms"), get(s.Med, "eager_criu_restore_ms"), eo, ea)
	}
	tw.Flush()
	fmt.Fprintln(w)

	fmt.Fprintln(w, "A fresh node from a loopback registry (cr.checkpoint.image), same run (ms)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "M MiB\tpush\tfresh node\t= pull phase\t+ restore phase\tnext pod (cache)\tlocal restore\tcold\tcrane pull\tfresh/cold\t")
	for _, s := range r.Sizes {
		ratio := "-"
		if s.Med["cold_ms"] > 0 && s.Med["registry_restore_ms"] > 0 {
			ratio = fmt.Sprintf("1/%.1f", s.Med["cold_ms"]/s.Med["registry_restore_ms"])
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.MiB, get(s.Med, "push_ms"),
			get(s.Med, "registry_restore_ms"), get(s.Med, "registry_restore_pull_ms"), get(s.Med, "registry_restore_restore_phase_ms"),
			get(s.Med, "registry_cached_restore_ms"), get(s.Med, "restore_ms"), get(s.Med, "cold_ms"), get(s.Med, "crane_pull_ms"), ratio)
	}
	tw.Flush()
	fmt.Fprintln(w, "  fresh node = outside time-to-ready of a restore on an empty node (resolve, pull into the node cache with digest checks, verify, restore);")
	fmt.Fprintln(w, "  pull phase = resolve + fetch + verify; crane pull = go-containerregistry's crane.Pull of the same image into a tarball written to /dev/null (the floor for moving the bytes)")
	fmt.Fprintln(w)
	reportLazy(w, r) // registry.go

	fmt.Fprintln(w, "Checkpoint (ms): crwrap phases, CRIU dump statistics")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "M MiB\tidentify\tdump\twrite\tpublish\tsum\tready->exit\tCRIU freezing\tfrozen\tmemdump\tmemwrite\tpages\t")
	for _, s := range r.Sizes {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.MiB,
			get(s.Med, "ckpt_identify_ms"), get(s.Med, "ckpt_dump_ms"), get(s.Med, "ckpt_write_ms"), get(s.Med, "ckpt_publish_ms"),
			get(s.Med, "ckpt_ms"), get(s.Med, "ckpt_exit_ms"), get(s.Med, "criu_freezing_ms"), get(s.Med, "criu_frozen_ms"),
			get(s.Med, "criu_memdump_ms"), get(s.Med, "criu_memwrite_ms"), get(s.Med, "criu_pages_written"))
	}
	tw.Flush()
	fmt.Fprintln(w)

	fmt.Fprintln(w, "Where restore time-to-ready goes (ms)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "M MiB\toutside\tcrwrap start-up\tfind\tverify\trender\trestore phase\t= CRIU restore\t+ rest\treadiness\tprobe attempts\tCRIU log total\tCRIU pre-fork\tCRIU mnt ns\tCRIU forking\t")
	for _, s := range r.Sizes {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.MiB,
			get(s.Med, "restore_ms"), get(s.Med, "restore_before_ms"), get(s.Med, "r_find_ms"), get(s.Med, "r_verify_ms"),
			get(s.Med, "r_render_ms"), get(s.Med, "r_restore_ms"), get(s.Med, "criu_restore_ms"), get(s.Med, "r_restore_beyond_criu_ms"),
			get(s.Med, "r_readiness_ms"), get(s.Med, "r_attempts"), get(s.Med, "criu_log_total_ms"), get(s.Med, "criu_log_fork_ms"),
			get(s.Med, "criu_log_mntns_ms"), get(s.Med, "criu_forking_ms"))
	}
	tw.Flush()
	fmt.Fprintln(w, "  crwrap start-up = outside - logged time_to_ready (exec, config, CRIU version query, work dir, before the restore clock starts);")
	fmt.Fprintln(w, "  + rest = restore phase - CRIU restore (libcontainer, CRIU exec and kernel probing, RPC); readiness = logged ready - find..restore;")
	fmt.Fprintln(w, "  CRIU log total/pre-fork = restore.log time of \"Restore finished\"/first fork since CRIU started; mnt ns = restoring the mount namespace")
	fmt.Fprintln(w)

	var single float64
	if len(r.Conc) > 0 {
		fmt.Fprintf(w, "Concurrent restores of one %d MiB checkpoint, each crwrap in its own network namespace (ms)\n", r.Conc[0].MiB)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "N\tslowest\tmedian\tall ready\tslowest logged\tslowest restore phase\tslowest CRIU\tprobe attempts\tslowest/single\t")
		for _, c := range r.Conc {
			if c.N == 1 {
				single = c.Med["slowest_ms"]
			}
			ratio := "-"
			if single > 0 && c.Med["slowest_ms"] > 0 {
				ratio = fmt.Sprintf("%.1fx", c.Med["slowest_ms"]/single)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", c.N, get(c.Med, "slowest_ms"), get(c.Med, "median_ms"),
				get(c.Med, "all_ready_ms"), get(c.Med, "slowest_logged_ms"), get(c.Med, "slowest_restore_phase_ms"),
				get(c.Med, "slowest_criu_ms"), get(c.Med, "max_attempts"), ratio)
		}
		tw.Flush()
		fmt.Fprintln(w, "  slowest/median = per-restore outside time-to-ready (polled inside each namespace); all ready = first exec until the last answered")
		fmt.Fprintln(w)
	}

	reportPeers(w, r)
	reportSplit(w, r)
	reportAfter(w, r)
	reportAdmission(w, r)
	reportBurst(w, r)

	if len(r.Failures) > 0 {
		fmt.Fprintf(w, "Failed attempts (retried): %d\n", len(r.Failures))
		for _, f := range r.Failures {
			fmt.Fprintf(w, "  - %s\n", f)
		}
		fmt.Fprintln(w)
	}

	fmt.Fprintln(w, "Targets (issue 3 item 10, issue 11)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, t := range Targets(r) {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", t.Name, t.Value, t.Verdict)
	}
	tw.Flush()
}

// Target is one target of issue 3 item 10 and its verdict.
type Target struct{ Name, Value, Verdict string }

func verdict(ok bool, note string) string {
	v := "MISSED"
	if ok {
		v = "met"
	}
	if note != "" {
		v += " (" + note + ")"
	}
	return v
}

// Targets evaluates the targets on the results (M=256 where present, else the largest size).
func Targets(r *Results) []Target {
	var out []Target
	var ref *SizeResult
	for i := range r.Sizes {
		if r.Sizes[i].MiB == 256 || ref == nil || (ref.MiB != 256 && r.Sizes[i].MiB > ref.MiB) {
			ref = &r.Sizes[i]
		}
	}
	if ref != nil {
		var notes []string
		if ref.MiB != 256 {
			notes = append(notes, fmt.Sprintf("at M=%d, target is M=256", ref.MiB))
		}
		if r.Warmup != 5*time.Second {
			notes = append(notes, fmt.Sprintf("at W=%s, target is W=5s", r.Warmup))
		}
		cold, rest := ref.Med["cold_ms"], ref.Med["restore_ms"]
		if cold > 0 && rest > 0 {
			out = append(out, Target{
				fmt.Sprintf("restore <= cold/20 (M=%d)", ref.MiB),
				fmt.Sprintf("%.0f ms vs %.0f/20 = %.0f ms (1/%.1f)", rest, cold, cold/20, cold/rest),
				verdict(rest <= cold/20, strings.Join(notes, ", ")),
			})
		}
		if ov, ok := ref.Med["overhead_ms"]; ok {
			out = append(out, Target{
				fmt.Sprintf("crwrap overhead beyond CRIU restore <= 50 ms (M=%d)", ref.MiB),
				fmt.Sprintf("%.0f ms (%.0f - %.0f)", ov, ref.Med["restore_ms"], ref.Med["criu_restore_ms"]),
				verdict(ov <= 50, ""),
			})
		}
		out = append(out, peerTargets(r, ref)...)
	}
	var single, slowest float64
	maxN := 0
	for _, c := range r.Conc {
		if c.N == 1 {
			single = c.Med["slowest_ms"]
		}
		if c.N > maxN {
			maxN, slowest = c.N, c.Med["slowest_ms"]
		}
	}
	if single > 0 && maxN > 1 {
		note := ""
		if maxN != 8 {
			note = fmt.Sprintf("at N=%d, target is N=8", maxN)
		}
		out = append(out, Target{
			fmt.Sprintf("slowest of %d concurrent <= 4x single", maxN),
			fmt.Sprintf("%.0f ms vs %.0f ms (%.1fx)", slowest, single, slowest/single),
			verdict(slowest <= 4*single, note),
		})
		out = append(out, Target{
			fmt.Sprintf("slowest of %d concurrent <= 3x single (issue 11)", maxN),
			fmt.Sprintf("%.1fx", slowest/single),
			verdict(slowest <= 3*single, note),
		})
	}
	return out
}
