package main

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
)

// reportPeers prints crwrap beside raw runc and Podman (issue 11, item 1).
func reportPeers(w io.Writer, r *Results) {
	if len(r.Peers) == 0 {
		return
	}
	names := make([]string, 0, len(r.Peers))
	for n := range r.Peers {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "Peers: the same app, the same bundled CRIU, in the same run (medians, ms)")
	for _, n := range names {
		fmt.Fprintf(w, "  %s: %s\n", n, r.Peers[n])
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "M MiB\tcrwrap lazy\tcrwrap eager\trunc\tpodman\tlazy/runc\teager/runc\tlazy/podman\teager/podman\t")
	for _, s := range r.Sizes {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.MiB,
			get(s.Med, "restore_ms"), get(s.Med, "eager_restore_ms"), get(s.Med, "runc_restore_ms"), get(s.Med, "podman_restore_ms"),
			ratio(s.Med, "restore_ms", "runc_restore_ms"), ratio(s.Med, "eager_restore_ms", "runc_restore_ms"),
			ratio(s.Med, "restore_ms", "podman_restore_ms"), ratio(s.Med, "eager_restore_ms", "podman_restore_ms"))
	}
	tw.Flush()
	fmt.Fprintln(w, "  restore -> ready: from exec of `crwrap restore` / `runc restore -d` / `podman container restore` until GET /ready answers")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "M MiB\tCRIU restore: lazy\teager\trunc\tpodman\tbeyond CRIU: lazy\teager\trunc\tpodman\t")
	for _, s := range r.Sizes {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.MiB,
			get(s.Med, "criu_restore_ms"), get(s.Med, "eager_criu_restore_ms"), get(s.Med, "runc_criu_restore_ms"), get(s.Med, "podman_criu_restore_ms"),
			get(s.Med, "overhead_ms"), diff(s.Med, "eager_restore_ms", "eager_criu_restore_ms"),
			diff(s.Med, "runc_restore_ms", "runc_criu_restore_ms"), diff(s.Med, "podman_restore_ms", "podman_criu_restore_ms"))
	}
	tw.Flush()
	fmt.Fprintln(w, "  CRIU restore = stats-restore restore_time of each; beyond CRIU = restore -> ready minus it")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "M MiB\tcheckpoint: crwrap\trunc\tpodman\tcrwrap/runc\tcrwrap/podman\tCRIU frozen: crwrap\trunc\tpodman\tcold: crwrap\trunc\tpodman\t")
	for _, s := range r.Sizes {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.MiB,
			get(s.Med, "ckpt_ms"), get(s.Med, "runc_ckpt_ms"), get(s.Med, "podman_ckpt_ms"),
			ratio(s.Med, "ckpt_ms", "runc_ckpt_ms"), ratio(s.Med, "ckpt_ms", "podman_ckpt_ms"),
			get(s.Med, "criu_frozen_ms"), get(s.Med, "runc_criu_frozen_ms"), get(s.Med, "podman_criu_frozen_ms"),
			get(s.Med, "cold_ms"), get(s.Med, "runc_cold_ms"), get(s.Med, "podman_cold_ms"))
	}
	tw.Flush()
	fmt.Fprintln(w, "  checkpoint: crwrap's identify+dump+write+publish; runc/podman: the wall time of `runc checkpoint` / `podman container checkpoint`")
	fmt.Fprintln(w)
}

func diff(m map[string]float64, a, b string) string {
	x, ok1 := m[a]
	y, ok2 := m[b]
	if !ok1 || !ok2 || x <= 0 || y <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", x-y)
}

// peerTargets are the targets of issue 11 on the reference size.
func peerTargets(r *Results, ref *SizeResult) []Target {
	if ref == nil {
		return nil
	}
	var out []Target
	m := ref.Med
	if ov, ok := m["overhead_ms"]; ok && ov > 0 {
		out = append(out, Target{fmt.Sprintf("lazy: crwrap beyond CRIU restore_time <= 25 ms (M=%d)", ref.MiB),
			fmt.Sprintf("%.0f ms", ov), verdict(ov <= 25, "")})
	}
	if e, c := m["eager_restore_ms"], m["eager_criu_restore_ms"]; e > 0 && c > 0 {
		out = append(out, Target{fmt.Sprintf("eager: crwrap beyond CRIU restore_time <= 25 ms (M=%d)", ref.MiB),
			fmt.Sprintf("%.0f ms (%.0f - %.0f)", e-c, e, c), verdict(e-c <= 25, "")})
	}
	rc := m["runc_restore_ms"]
	if e := m["eager_restore_ms"]; rc > 0 && e > 0 {
		out = append(out, Target{fmt.Sprintf("crwrap eager <= 0.9x raw runc (M=%d)", ref.MiB),
			fmt.Sprintf("%.0f vs %.0f ms (%.2fx)", e, rc, e/rc), verdict(e <= 0.9*rc, "")})
	}
	if l := m["restore_ms"]; rc > 0 && l > 0 {
		out = append(out, Target{fmt.Sprintf("crwrap lazy <= 0.5x raw runc (M=%d)", ref.MiB),
			fmt.Sprintf("%.0f vs %.0f ms (%.2fx)", l, rc, l/rc), verdict(l <= 0.5*rc, "")})
	}
	return out
}
