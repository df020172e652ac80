// Package ops holds crwrap's operability root tests: structured JSON phase logs, the
// Prometheus /metrics endpoint of a checkpoint and of a restore, `crwrap verify` as a CI gate,
// the Kubernetes termination message and `crwrap inspect` on intact and damaged checkpoints.
//
// They run the built static crwrap (build/crwrap, or $CRWRAP_BUILD) against the test app
// (test/testapp) with real CRIU. They need root and `make build`; without them they skip on a
// developer's machine and fail in CI ($CI set) or as root.
package ops
