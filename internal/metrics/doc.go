// Package metrics holds crwrap's Prometheus metrics and serves them.
//
// A Metrics has its own registry (never the process-wide default one), so tests and several
// instances do not collide. Label sets known in advance (modes, phases, fallback reasons) are
// created up front, so every family appears at the first scrape, with zero counts, and
// dashboards and alerts see "nothing yet" rather than "no such series".
//
// Values are plain: the caller converts CRIU's statistics (microseconds) into durations and
// counts. Gauges of CRIU statistics describe the latest dump or restore this process did.
package metrics
