package container

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"
	// The cgroup device filter implementation libcontainer needs at run time.
	_ "github.com/opencontainers/cgroups/devices"
	// nsenter is the C constructor that sets up namespaces when the binary is re-executed as "init".
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// IsInit reports whether this process was re-executed by libcontainer to become a container's
// init; main must then call Init before anything else.
func IsInit() bool { return len(os.Args) > 1 && os.Args[1] == "init" }

// Init runs libcontainer's container init. It does not return.
func Init() { libcontainer.Init() }
