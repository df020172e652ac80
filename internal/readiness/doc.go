// Package readiness decides when the app is ready: it parses cr.container.readiness (and
// cr.checkpoint.warmup) into a Probe and polls it.
//
// A spec is one of
//
//	http://host[:port]/path, https://…  GET, ready on a 2xx status
//	tcp://host:port                      ready when a TCP connect succeeds
//	anything else                        run as /bin/sh -c SPEC, ready on exit status 0
//
// The time to ready is the product's headline number, so polling is built not to add delay
// to the moment readiness is detected: the first attempt starts at once, later ones start
// every interval counted from the start of the previous one (an attempt's own duration is not
// added), a slow attempt does not hold back the next one (a few may run at once), and every
// attempt has a short deadline of its own, like a kubelet probe's timeoutSeconds. Network
// probes connect with a shorter deadline still, because a SYN dropped while CRIU locks the
// network during a restore is only retried by the kernel after a second.
//
// Shell commands run in a process group of their own that is killed when the attempt ends,
// so nothing a probe started outlives it. How a command is started and waited for is
// injectable (see Runner) because crwrap, as PID 1, reaps orphans and must not reap a probe's
// child behind exec.Cmd's back.
package readiness
