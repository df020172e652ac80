// Package entrypoint runs crwrap as a container's entrypoint, one call per command as crane's
// commands call pkg/crane: Run prepares what the supervisor needs from the process and the
// host — root, the CRIU to use (the bundle or cr.criu.path), a private tmpfs for work files,
// writable cgroups, CRIU's kernel probe cache on the checkpoint root, an orphan reaper,
// forwarded signals and the metrics endpoint — and runs the configured mode; Verify is the CI
// gate built on it (checkpoint, restore, ready again); Render is the spec a run would give the
// app. The CLI gives the logger: nothing here configures logging.
package entrypoint
