// Package doctor checks that a host (or a pod) can checkpoint and restore with crwrap, and says
// why not: privileges, kernel release, namespaces and configuration, cgroups and the freezer,
// CRIU (found, its version, "criu check"), the tools CRIU executes, CRIU's kernel-probe cache and
// the security modules that get in its way.
//
// Every check reads files under an injectable filesystem root and runs programs through an
// injectable runner, so the checks are unit-tested against fake /proc and /sys trees without root.
package doctor
