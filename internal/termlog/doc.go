// Package termlog writes crwrap's fatal error to the Kubernetes termination message file,
// /dev/termination-log, which the kubelet reads when the container exits and shows in
// `kubectl describe pod` and in the pod's status (lastState.terminated.message).
package termlog
