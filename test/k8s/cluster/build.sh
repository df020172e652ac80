#!/usr/bin/env bash
# Builds the single-node cluster's binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kubectl) from the Go modules this directory's go.mod pins, into
# $1/k8s-<version>/bin. Skips the build when that directory is complete (the cache).
# Prints the bin directory.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=$(mkdir -p "${1:?usage: build.sh CACHE_DIR}" && cd "$1" && pwd)
cd "$here"
version=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
etcd_version=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
bin=$cache/k8s-$version/bin
tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
complete=1
for t in "${tools[@]}"; do [ -x "$bin/$t" ] || complete=0; done
if [ "$complete" = 1 ]; then
	echo "$bin"
	exit 0
fi
tmp=$(mktemp -d "$cache/k8s-$version.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export CGO_ENABLED=0
minor=${version#v1.}
minor=${minor%%.*}
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$version"
start=$(date +%s)
echo "build.sh: building Kubernetes $version and etcd $etcd_version into $bin (several minutes on 2 cores)" >&2
go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
for t in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
	go build -trimpath -ldflags "$ldflags" -o "$tmp/$t" "k8s.io/kubernetes/cmd/$t"
done
mkdir -p "$(dirname "$bin")"
rm -rf "$bin"
mv "$tmp" "$bin"
trap - EXIT
echo "build.sh: built in $(($(date +%s) - start)) s" >&2
echo "$bin"
