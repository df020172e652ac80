#!/usr/bin/env bash
# test/k8s/cluster/deps.sh — the Debian packages the test cluster needs (as root; idempotent:
# installs only what is missing). containerd runs as a second instance beside Docker's; runc and
# the CNI plugins (bridge, host-local) are Debian's; the kubelet wants conntrack, iptables,
# ebtables and socat on its PATH; up.sh uses openssl, curl and iproute2.
set -euo pipefail
need=()
for p in containerd runc containernetworking-plugins conntrack iptables ebtables socat openssl curl iproute2 procps; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "k8s deps.sh: installing ${need[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
