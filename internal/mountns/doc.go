// Package mountns gives the crwrap process a private mount namespace before the Go
// runtime starts, so that every mount crwrap makes for the app (its overlay root, the
// bind of the pod's root, its scratch tmpfs) disappears with crwrap itself, even when
// crwrap is killed with SIGKILL and gets no chance to clean up.
//
// It is a cgo constructor, like libcontainer's nsenter: unshare(CLONE_NEWNS) only works
// for a single-threaded process, and by the time main runs the Go runtime has threads.
// Import it for its side effect in the crwrap binary only.
package mountns
