// Package runmode holds the root tests of crwrap's run mode: the built static crwrap runs a
// real app (test/testapp, a shell, sleep) under embedded libcontainer, and the tests check
// what a pod would see: output, exit codes, signals, orphan reaping, the app's view of the
// filesystem, readiness, and that nothing is left behind.
package runmode
