// Package supervisor runs the app through one crwrap mode: run (start it and serve),
// checkpoint (start, wait for ready, warm up, dump, publish, idle) and restore (find,
// check and restore a checkpoint, or fall back to a cold start), forwarding signals to the
// app and returning its exit status. It ties together the pure packages (config, spec,
// readiness) and the ones with side effects (rootfs, container, checkpoint).
package supervisor
