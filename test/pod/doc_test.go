// Package pod tests crwrap the way Kubernetes runs it: the example manifests decode strictly into
// the Kubernetes API types and agree with each other (manifests_test.go, no root, no Docker), and
// the images built by `docker build` from images/ and examples/ run as "pods": Docker containers
// made from the manifests' container specs, as a kubelet would make them (pod_root_docker_test.go,
// root and a Docker Engine; they fail, never skip, when CI is set or when running as root).
package pod
