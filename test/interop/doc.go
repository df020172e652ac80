// Package interop tests crwrap's checkpoints against the ecosystem's own reader of checkpoint
// archives, checkpointctl v1.6.0, on real CRIU dumps made with the bundled CRIU.
//
// The tests need root, the CRIU bundle (build/crwrap/criu, or $CRWRAP_BUILD/criu) and either
// checkpointctl ($CHECKPOINTCTL) or the Go module proxy to install it into a temporary GOBIN.
// Without them they skip on a developer's machine and fail in CI ($CI set) or as root.
//
// TestLeadCheckpoint makes a real checkpoint with `crwrap checkpoint`, exports it with
// `crwrap export` (tar and zstd), has checkpointctl show and inspect it, then imports and
// restores it.
package interop
