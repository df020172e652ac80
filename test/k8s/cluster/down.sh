#!/usr/bin/env bash
# test/k8s/cluster/down.sh — stop the test cluster that up.sh started from $K8S_DIR (default
# build/k8s) and remove everything it made: its pods (through the CRI, so their network namespaces
# and mounts go too), its processes, the cgroups under /crwrap-k8s, the bridge, the kubelet's
# iptables canary chains, what kubelet and containerd wrote to fixed paths, the sysctls the
# kubelet changed, and $K8S_DIR itself.
# Idempotent and safe on a half-started cluster: each step does what applies and goes on. It
# only signals processes whose command line names $K8S_DIR (or the cluster's cgroups).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
S=${K8S_DIR:-$repo/build/k8s}
bridge=crwk8s0
owner=/run/crwrap-k8s.owner
cgroup_root=crwrap-k8s

log() { echo "k8s-down: $*" >&2; }

[[ $(id -u) == 0 ]] || {
	log "needs root"
	exit 1
}
if [[ ! -d $S ]]; then
	log "nothing to stop ($S does not exist)"
	exit 0
fi
S=$(cd "$S" && pwd)
[[ $S != / && -n $S ]] || exit 1

# ours PID: the process runs and its command line names the cluster directory.
ours() { [[ -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF "$S/"; }
# stop NAME: SIGTERM, then SIGKILL after 15 s.
stop() {
	local f=$S/pid/$1 pid i
	[[ -f $f ]] || return 0
	pid=$(cat "$f")
	if ours "$pid"; then
		kill -TERM "$pid" 2>/dev/null
		for ((i = 0; i < 75; i++)); do
			ours "$pid" || break
			sleep 0.2
		done
		if ours "$pid"; then
			log "$1 ($pid) did not stop on SIGTERM: killing it"
			kill -KILL "$pid" 2>/dev/null
			sleep 0.2
		fi
	fi
	rm -f "$f"
}

stop kubelet
sock=$S/containerd/containerd.sock
if [[ -f $S/pid/containerd ]] && ours "$(cat "$S/pid/containerd")" && [[ -x $S/bin/cricleanup ]]; then
	timeout 150 "$S/bin/cricleanup" -endpoint "$sock" >&2 || log "the CRI cleanup failed; removing what is left by hand"
fi
for p in kube-controller-manager kube-scheduler kube-apiserver etcd containerd cgroup-holder; do
	stop "$p"
done

# Shims (and their containers) that outlived containerd.
for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $sock( |$)"); do
	ours "$pid" && kill -KILL "$pid" 2>/dev/null
done
# Processes left in the pods' cgroups: thaw (a dump may have frozen them), kill, remove.
for hier in /sys/fs/cgroup/*/; do
	d=$hier$cgroup_root
	[[ -d $d ]] || continue
	if [[ -f $d/freezer.state ]]; then
		find "$d" -name freezer.state -exec sh -c 'echo THAWED >"$1"' _ {} \; 2>/dev/null
	fi
	find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u | xargs -r kill -KILL 2>/dev/null
done
sleep 0.2
for hier in /sys/fs/cgroup/*/; do
	d=$hier$cgroup_root
	[[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
	[[ -d $d ]] && log "cgroup $d is still there"
done

# Mounts under the cluster directory (containers' roots, pod volumes), deepest first.
awk -v p="$S/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
	m=$(printf '%b' "${m//\\/\\0}") # mountinfo escapes as \NNN
	umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cannot unmount $m"
done

# Network: the pods' network namespaces (an address of the pod CIDR), the bridge, CNI's caches.
cidr=$(sed -n 's/^POD_CIDR=//p' "$S/env" 2>/dev/null)
prefix=${cidr%.*/*}.
if [[ -n $cidr ]]; then
	for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^cni-/ {print $1}'); do
		if ip -n "$ns" -4 addr show 2>/dev/null | grep -qF "inet $prefix"; then
			ip netns delete "$ns" 2>/dev/null || log "cannot delete network namespace $ns"
		fi
	done
fi
ip link show "$bridge" >/dev/null 2>&1 && ip link delete "$bridge"
rm -f /var/lib/cni/results/crwrap-k8s-*
for sb in "$S"/containerd/root/io.containerd.grpc.v1.cri/sandboxes/*/; do
	[[ -d $sb ]] && rm -f "/var/lib/cni/results/cni-loopback-$(basename "$sb")-lo"
done
rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null
# The kubelet's iptables chains (KUBE-FIREWALL hooked into INPUT and OUTPUT, KUBE-IPTABLES-HINT,
# the KUBE-KUBELET-CANARY chains), unless another kubelet runs on this machine.
if ! pgrep -x kubelet >/dev/null; then
	for cmd in iptables ip6tables iptables-legacy ip6tables-legacy; do
		command -v "$cmd" >/dev/null || continue
		for hook in INPUT OUTPUT; do
			while "$cmd" -w -t filter -D "$hook" -j KUBE-FIREWALL 2>/dev/null; do :; done
		done
		for table in mangle nat filter; do
			for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
				if "$cmd" -w -t "$table" -S "$chain" >/dev/null 2>&1; then
					"$cmd" -w -t "$table" -F "$chain" && "$cmd" -w -t "$table" -X "$chain"
				fi
			done
		done
	done
fi

# What kubelet and containerd write to fixed paths.
for l in /var/log/containers/*; do
	[[ -L $l ]] && [[ $(readlink "$l") == "$S/"* ]] && rm -f "$l"
done
rmdir /var/log/containers 2>/dev/null
if ! pgrep -x kubelet >/dev/null; then
	rm -rf /var/lib/kubelet/device-plugins
	rmdir /var/lib/kubelet 2>/dev/null
fi
# Shim sockets nobody listens on any more (a killed shim leaves its socket behind).
if [[ -d /run/containerd/s ]]; then
	for s in /run/containerd/s/*; do
		[[ -S $s ]] && ! grep -qF " $s" /proc/net/unix && rm -f "$s"
	done
	rmdir /run/containerd/s /run/containerd 2>/dev/null
fi

if [[ -f $S/etc/sysctl.saved ]]; then
	sysctl -q -p "$S/etc/sysctl.saved" >/dev/null || log "cannot restore the sysctls in $S/etc/sysctl.saved"
fi
[[ -f $owner && $(cat "$owner") == "$S" ]] && rm -f "$owner"
if [[ -f $S/.crwrap-k8s ]]; then
	rm -rf "$S" || log "cannot remove $S"
else
	log "$S has no .crwrap-k8s marker: not removing it"
fi
log "stopped; removed $S"
exit 0
