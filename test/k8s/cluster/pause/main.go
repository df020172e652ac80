// Command pause is the pod sandbox's process of the test cluster (the role of registry.k8s.io/pause,
// which cannot be pulled here): it holds the sandbox's namespaces open until it is told to stop.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	// The sandbox may share its PID namespace with the pod's containers: reap what is left to it.
	signal.Ignore(syscall.SIGCHLD)
	<-sig
}
