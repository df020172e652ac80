package inspect

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kballard/go-shellquote"
)

// WriteJSON writes r as indented JSON, the form of `crwrap inspect --json`.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes r for people: a status line first (intact, or DAMAGED with its reasons),
// then what, when, where, sizes, the process tree and CRIU's statistics.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k, f string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(f, a...)) }

	dir := r.Dir
	if r.Resolved != "" {
		dir += " -> " + r.Resolved
	}
	line("Checkpoint:", "%s", dir)
	if r.Damaged {
		line("Status:", "DAMAGED")
		for _, why := range r.Reasons {
			line("", "- %s", why)
		}
	} else {
		line("Status:", "intact")
	}
	if r.Name != "" {
		line("Name:", "%s", r.Name)
	}
	if !r.Created.IsZero() {
		line("Created:", "%s", r.Created.UTC().Format(time.RFC3339))
	}
	if len(r.Command) > 0 {
		line("Command:", "%s", shellquote.Join(r.Command...))
	}
	if len(r.Mounts) > 0 {
		line("Mounts:", "%s", strings.Join(r.Mounts, ", "))
	}
	if h := r.Host; h.Hostname != "" || h.Kernel != "" {
		host := []string{}
		for _, s := range []string{h.Hostname, kv("kernel", h.Kernel), h.Arch, h.CPUModel} {
			if s != "" {
				host = append(host, s)
			}
		}
		line("Host:", "%s", strings.Join(host, ", "))
	}
	if r.CrwrapVersion != "" || r.CRIUVersion != "" {
		line("Versions:", "crwrap %s, CRIU %s", orDash(r.CrwrapVersion), orDash(r.CRIUVersion))
	}
	if c := r.Container; c != nil {
		line("Container:", "%s", strings.Join(nonEmpty(kv("id", c.ID), kv("image", c.RootfsImageName), kv("runtime", c.OCIRuntime)), ", "))
	}
	if len(r.DurationsMS) > 0 {
		phases := make([]string, 0, len(r.DurationsMS))
		for k := range r.DurationsMS {
			phases = append(phases, k)
		}
		sort.Strings(phases)
		for i, k := range phases {
			phases[i] = fmt.Sprintf("%s %d ms", k, r.DurationsMS[k])
		}
		line("Durations:", "%s", strings.Join(phases, ", "))
	}

	line("Size:", "%s (memory pages %s)", Bytes(uint64(r.Sizes.TotalBytes)), Bytes(uint64(r.Sizes.PagesBytes)))
	for _, s := range r.Sizes.Entries {
		files := ""
		if strings.HasSuffix(s.Name, "/") {
			files = fmt.Sprintf(" in %d files", s.Files)
		}
		line("", "%-16s %10s%s", s.Name, Bytes(uint64(s.Bytes)), files)
	}

	if r.ProcessCount > 0 {
		line("Processes:", "%d", r.ProcessCount)
		var walk func(p *Process, indent string)
		walk = func(p *Process, indent string) {
			line("", "%s%s", indent, p.describe())
			for _, c := range p.Children {
				walk(c, indent+"  ")
			}
		}
		for _, p := range r.Processes {
			walk(p, "")
		}
		m := r.Memory
		line("Memory:", "%d VMAs, %s mapped, %d pages dumped (%s)", m.VMAs, Bytes(m.MappedBytes), m.Pages, Bytes(m.PageBytes))
	}

	if s := r.Stats; s != nil {
		line("CRIU dump:", "freezing %s, frozen %s, memdump %s, memwrite %s",
			Micros(s.FreezingTimeUS), Micros(s.FrozenTimeUS), Micros(s.MemdumpTimeUS), Micros(s.MemwriteTimeUS))
		line("", "pages scanned %d, written %d, skipped (in parent) %d, lazy %d",
			s.PagesScanned, s.PagesWritten, s.PagesSkippedParent, s.PagesLazy)
	}
	return tw.Flush()
}

func (p *Process) describe() string {
	s := fmt.Sprintf("%d %s", p.PID, p.Comm)
	var attrs []string
	if p.State != "" {
		attrs = append(attrs, p.State)
	}
	if p.Threads > 1 {
		attrs = append(attrs, fmt.Sprintf("%d threads", p.Threads))
	}
	if p.Exe != "" {
		attrs = append(attrs, p.Exe)
	}
	if p.Memory.VMAs > 0 {
		attrs = append(attrs, fmt.Sprintf("%d VMAs, %s mapped, %d pages dumped", p.Memory.VMAs, Bytes(p.Memory.MappedBytes), p.Memory.Pages))
	}
	if len(attrs) > 0 {
		s += " (" + strings.Join(attrs, ", ") + ")"
	}
	return s
}

func kv(k, v string) string {
	if v == "" {
		return ""
	}
	return k + " " + v
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Bytes formats n with binary units: "512 B", "1.5 KiB", "18.0 MiB".
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Micros formats a duration in microseconds, as CRIU's statistics count: "830 µs", "1.2 ms".
func Micros(us uint32) string {
	d := time.Duration(us) * time.Microsecond
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", us)
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}
