// Package reaper makes crwrap a good PID 1: it becomes the child subreaper (libcontainer's
// container init is re-parented to it, as runc does) and reaps orphaned processes that
// are re-parented to it, without stealing the exit status of children other code waits for.
package reaper
