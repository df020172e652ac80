package spec

// Input is everything the template may use to describe the app's container.
// It is plain data: Render does no I/O.
type Input struct {
	// ID is the container id (also the last element of the cgroups path).
	ID string
	// Rootfs is the absolute path of the app's root filesystem as prepared by crwrap.
	Rootfs string
	// Args is the app's argv (never empty).
	Args []string
	// Env is the app's environment, KEY=VALUE.
	Env []string
	// Cwd is the app's working directory (absolute).
	Cwd string
	// UID and GID are the user the app runs as; AdditionalGids its supplementary groups.
	UID, GID       uint32
	AdditionalGids []uint32
	// Hostname is the container's hostname (the pod's).
	Hostname string
	// EtcFiles are the pod files among /etc/hosts, /etc/resolv.conf, /etc/hostname that exist;
	// each is bind-mounted read-only at the same path.
	EtcFiles []string
	// Mounts are the pod paths of cr.container.mounts, bind-mounted read-write at the same path.
	Mounts []string
	// CgroupsPath is the app's cgroups path.
	CgroupsPath string
}
