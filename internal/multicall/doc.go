// Package multicall is the fast path of crwrap's multi-call dispatch (criu.Dispatch): when the
// binary is started as one of the bundled CRIU tools (criu, tar, gzip, iptables*, nft), a C
// constructor execs the bundled loader before the Go runtime and crwrap's packages initialise.
// CRIU starts these tools many times per restore (criu swrk twice, tar and gzip for every
// tmpfs), and each Go start costs several milliseconds on a restore's critical path.
// The table of tools (tools.h) is generated from internal/criu's, so both paths pick the same
// program: the first present of a name's candidates (xtables-nft-multi, then
// xtables-legacy-multi), or xtables-legacy-multi alone with CRWRAP_XTABLES=legacy.
// If the constructor cannot exec (no bundle), main's criu.Dispatch reports why.
// Import it for its side effect in the crwrap binary only.
package multicall
