// Package cr holds crwrap's checkpoint/restore root tests: real CRIU, real containers, the
// built static crwrap (build/crwrap, or $CRWRAP_BUILD) run as a child process against the
// purpose-built test app (test/testapp), and test/featureapp for one kernel object at a time.
//
// They cover the "Done when" list of the checkpoint and restore modes: round trips with memory
// intact, read-only and concurrent restores, every fallback cause, failed and killed
// checkpoints, root filesystem and tmpfs writes, volumes, and the app's output after restore;
// and what a checkpoint keeps (fidelity_root_test.go): kernel objects, file identity, CRIU
// options, a failure after the dump and a dump that never ends.
// They need root and `make build`; without them they skip on a developer's machine and fail
// in CI ($CI set) or as root.
package cr
