// Package interop tests crwrap's checkpoints against the ecosystem's own reader of checkpoint
// archives, checkpointctl v1.6.0, on real CRIU dumps made with the bundled CRIU.
//
// The tests need root, the CRIU bundle (build/crwrap/criu, or $CRWRAP_BUILD/criu) and either
// checkpointctl ($CHECKPOINTCTL) or the Go module proxy to install it into a temporary GOBIN.
// Without them they skip on a developer's machine and fail in CI ($CI set) or as root.
//
// Set CRWRAP_CHECKPOINT to a checkpoint directory made by `crwrap checkpoint` to run the same
// checks on it as well.
package interop
