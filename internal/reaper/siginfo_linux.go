package reaper

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// siginfoPid reads si_pid: after si_signo, si_errno, si_code (3 int32) and padding to the 8-byte aligned union on 64-bit Linux.
func siginfoPid(info *unix.Siginfo) int {
	return int(*(*int32)(unsafe.Add(unsafe.Pointer(info), 16)))
}
