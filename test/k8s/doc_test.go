// Package k8s tests the example manifests (examples/kubernetes) end to end on a real single-node
// Kubernetes: kube-apiserver, kube-controller-manager, kube-scheduler and a kubelet on a
// containerd of their own (test/k8s/cluster). The suite applies the manifests with
// `kubectl apply -k` (the image set to the one `docker build` made, imported into the cluster's
// containerd) and checks what a platform engineer would see through kubectl: readiness, logs,
// termination messages, scaling, rollouts.
//
// TestMain starts the cluster (test/k8s/cluster/up.sh, building its binaries once per machine)
// and stops it at the end, unless one already runs (make k8s-up). The tests need root; they fail,
// never skip, when CI is set or when running as root and the cluster cannot be had.
package k8s
