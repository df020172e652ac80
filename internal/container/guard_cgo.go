//go:build linux && cgo

package container

import "C" // guard.c: the waiting half of the guard, a C constructor

// The guard needs cgo; crwrap is always built with it (libcontainer's nsenter needs it too).
