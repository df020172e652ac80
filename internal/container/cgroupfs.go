package container

import (
	"fmt"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// WritableCgroups makes read-only cgroup mounts writable in this process's mount namespace.
// A pod that is not privileged sees its own cgroup subtree mounted read-only, and
// libcontainer must create the app's cgroup below it ("mkdir /sys/fs/cgroup/cpuset/crwrap:
// read-only file system"). With CAP_SYS_ADMIN a bind remount lifts that; the app's cgroup
// stays inside the pod's, under its limits. Call it only in a private mount namespace.
func WritableCgroups() error {
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		if m.FSType != "cgroup" && m.FSType != "cgroup2" {
			return true, false
		}
		return !strings.HasPrefix(m.Mountpoint, "/sys/fs/cgroup") || !hasOpt(m.Options, "ro"), false
	})
	if err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	for _, m := range mounts {
		flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
		if err := unix.Mount("", m.Mountpoint, "", flags, ""); err != nil {
			return fmt.Errorf("make %s writable: %w", m.Mountpoint, err)
		}
	}
	return nil
}

func hasOpt(opts, opt string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == opt {
			return true
		}
	}
	return false
}
