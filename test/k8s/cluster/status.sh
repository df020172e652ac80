#!/usr/bin/env bash
# test/k8s/cluster/status.sh — exit 0 when the test cluster of $K8S_DIR (default build/k8s) runs:
# every process up.sh started is alive and the API server is ready. Prints what is not.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
S=${K8S_DIR:-$(cd "$here/../../.." && pwd)/build/k8s}
[[ -f $S/env ]] || {
	echo "no cluster in $S"
	exit 1
}
rc=0
for p in containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet; do
	if ! kill -0 "$(cat "$S/pid/$p" 2>/dev/null)" 2>/dev/null; then
		echo "$p is not running"
		rc=1
	fi
done
# shellcheck source=/dev/null
. "$S/env"
"$KUBECTL" --kubeconfig "$KUBECONFIG" get --raw /readyz >/dev/null 2>&1 || {
	echo "the API server is not ready"
	rc=1
}
exit "$rc"
