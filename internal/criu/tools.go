package criu

//go:generate go run ./toolgen ../..

// This file is the one source of the bundled-tool table. `go generate ./internal/criu` writes
// it out for the two other readers: internal/multicall/tools.h (the C fast path that execs a
// tool before the Go runtime starts) and images/criu/tools.sh (what bundle.sh copies out of
// the Debian root and links in bin/). internal/criu/toolgen's test fails when either is stale.

// Tool is one name crwrap answers to as a multi-call binary.
type Tool struct {
	// Name is the multi-call name: argv[0]'s base name, a link in the bundle's bin/.
	Name string
	// Paths are the programs that can serve Name, relative to the bundle's root/: the first
	// present wins.
	Paths []string
	// Xtables marks the iptables family: it loads its extensions from the bundle
	// (XTABLES_LIBDIR), and CRWRAP_XTABLES=legacy runs XtablesLegacy only.
	Xtables bool
}

// The iptables programs: nft first, legacy for hosts whose kernel lacks nf_tables (also what
// CRWRAP_XTABLES=legacy selects).
const (
	xtablesNft = "usr/sbin/xtables-nft-multi"
	// XtablesLegacy is the legacy (ip_tables) iptables program, relative to the bundle's root/.
	XtablesLegacy = "usr/sbin/xtables-legacy-multi"
)

var xtablesPaths = []string{xtablesNft, XtablesLegacy}

// criuPath is the bundled criu, relative to root/: OpenBundle requires it.
const criuPath = "usr/sbin/criu"

// bundledTools are the programs CRIU executes through PATH: tar (tmpfs contents, with --gzip,
// so gzip too), iptables-restore/ip6tables-restore (network lock), nft, and criu itself, which
// runc and go-criu exec. The other iptables names are for debugging inside a container.
var bundledTools = []Tool{
	{Name: "criu", Paths: []string{criuPath}},
	{Name: "tar", Paths: []string{"usr/bin/tar"}},
	{Name: "gzip", Paths: []string{"usr/bin/gzip"}},
	{Name: "nft", Paths: []string{"usr/sbin/nft"}},
	{Name: "iptables", Paths: xtablesPaths, Xtables: true},
	{Name: "iptables-restore", Paths: xtablesPaths, Xtables: true},
	{Name: "iptables-save", Paths: xtablesPaths, Xtables: true},
	{Name: "ip6tables", Paths: xtablesPaths, Xtables: true},
	{Name: "ip6tables-restore", Paths: xtablesPaths, Xtables: true},
	{Name: "ip6tables-save", Paths: xtablesPaths, Xtables: true},
}

// BundledPackages are the Debian packages the bundled programs come from.
var BundledPackages = []string{"criu", "iptables", "tar", "gzip", "nftables"}

// BundledTools returns a copy of the bundled-tool table, in its order.
func BundledTools() []Tool {
	out := make([]Tool, len(bundledTools))
	for i, t := range bundledTools {
		t.Paths = append([]string(nil), t.Paths...)
		out[i] = t
	}
	return out
}

// BundledPrograms returns every program of the table once, relative to root/, in table order.
func BundledPrograms() []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range bundledTools {
		for _, p := range t.Paths {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// LibraryDirs returns the directories the bundle's loader searches, relative to root/.
func LibraryDirs() []string { return append([]string(nil), libraryDirs...) }

// XtablesLibDir is where the iptables extensions (dlopened) live, relative to root/.
const XtablesLibDir = xtablesLibDir

func lookupTool(name string) (Tool, bool) {
	for _, t := range bundledTools {
		if t.Name == name {
			return t, true
		}
	}
	return Tool{}, false
}
