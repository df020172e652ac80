#!/usr/bin/env bash
# test/k8s/cluster/up.sh — start a single-node Kubernetes for the end-to-end tests (as root):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and a kubelet on a containerd of
# its own (own config, root, state and socket; the containerd Docker uses is never touched).
#
#   - binaries: test/k8s/cluster/build.sh (built once per version into $K8S_CACHE/k8s-<version>);
#   - every file it makes is under $K8S_DIR (default build/k8s), except what kubelet and containerd
#     always write to fixed paths (/var/log/containers, /var/lib/kubelet/device-plugins,
#     /var/lib/cni/results), its iptables chains, cgroups under /crwrap-k8s and the bridge
#     crwk8s0: down.sh removes all;
#   - the control plane listens on 127.0.0.1 only, on free ports picked at start; the pod network
#     ($K8S_POD_CIDR, default 10.213.0.0/24) is a host-only bridge: no default route, no NAT, so a
#     pod reaches this host and other pods, never the outside; the node's address (the kubelet
#     listens there) is the bridge's;
#   - one cluster per machine (the kubelet's fixed paths): /run/crwrap-k8s.owner names the running
#     one's directory.
#
# It prints the kubeconfig's path last; $K8S_DIR/env holds what the tests need (KUBECONFIG,
# KUBECTL, CONTAINERD_ADDRESS, NODE). A failed start stops what it started (down.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
S=${K8S_DIR:-$repo/build/k8s}
cache=${K8S_CACHE:-$repo/build/cache}
pod_cidr=${K8S_POD_CIDR:-10.213.0.0/24} # a /24: the bridge (and the node) get its .1
service_cidr=${K8S_SERVICE_CIDR:-10.213.1.0/24}
node=crwrap-node
bridge=crwk8s0
owner=/run/crwrap-k8s.owner

log() { echo "k8s-up: $*" >&2; }
die() {
	log "$*"
	exit 1
}

[[ $(id -u) == 0 ]] || die "needs root (kubelet and containerd run as root)"
mkdir -p "$S"
S=$(cd "$S" && pwd)
if [[ ! -f $S/.crwrap-k8s ]] && [[ -n $(ls -A "$S") ]]; then
	die "$S is not empty and not a test cluster's directory: set K8S_DIR to another one"
fi
touch "$S/.crwrap-k8s"
if [[ -f $owner ]]; then
	other=$(cat "$owner")
	if [[ $other != "$S" ]] && [[ -d $other/pid ]]; then
		die "another test cluster runs from $other: stop it first (K8S_DIR=$other test/k8s/cluster/down.sh)"
	fi
	if [[ $other == "$S" ]] && [[ -f $S/env ]] && "$here/status.sh" >/dev/null 2>&1; then
		log "already up"
		echo "$S/kubeconfig"
		exit 0
	fi
fi

bin=$(bash "$here/build.sh" "$cache")
# A half-started cluster of an earlier run is removed first; a failure below removes this one.
K8S_DIR=$S bash "$here/down.sh" 2>/dev/null
mkdir -p "$S"
touch "$S/.crwrap-k8s"
mkdir -p "$S"/{pid,log,pki,bin,etc,cni/net.d,cni/ipam,containerd,kubelet}
echo "$S" >"$owner"
started=0
trap '[[ $started == 1 ]] || { log "start failed; logs in $S/log (kept in $S.failed)"; rm -rf "$S.failed"; cp -r "$S/log" "$S.failed" 2>/dev/null || true; K8S_DIR=$S bash "$here/down.sh" >&2 || true; }' EXIT

# The pause image's binary and the CRI teardown tool, from this module (quick: Go's build cache).
(cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$S/bin/" ./pause ./cricleanup)

# Free loopback ports.
used=$(ss -Htanl | awk '{print $4}' | sed 's/.*://' | sort -u)
port=$((20000 + RANDOM % 10000))
free_port() { # VAR: set VAR to the next free port
	while grep -qx "$port" <<<"$used"; do port=$((port + 1)); done
	printf -v "$1" %d "$port"
	port=$((port + 1))
}
p_etcd='' p_peer='' p_api='' p_kcm='' p_sched='' p_kubelet='' p_healthz=''
for v in p_etcd p_peer p_api p_kcm p_sched p_kubelet p_healthz; do free_port "$v"; done

# The sysctls the kubelet sets at start, restored by down.sh.
for k in vm.overcommit_memory kernel.panic kernel.panic_on_oops; do
	echo "$k=$(sysctl -n "$k")"
done >"$S/etc/sysctl.saved"

# Certificates: one CA; the apiserver's serving certificate; one client certificate in
# system:masters that every component uses (authorization is AlwaysAllow: a test cluster).
pki=$S/pki
openssl_quiet() { openssl "$@" 2>/dev/null; }
openssl_quiet req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 3650 -subj /CN=crwrap-k8s-ca
sign() { # NAME SUBJECT EXTENSIONS
	openssl_quiet req -newkey rsa:2048 -nodes -keyout "$pki/$1.key" -out "$pki/$1.csr" -subj "$2"
	openssl_quiet x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
		-days 3650 -out "$pki/$1.crt" -extfile <(printf '%s\n' "$3")
}
svc_ip=${service_cidr%.*}.1
sign apiserver /CN=kube-apiserver "subjectAltName=IP:127.0.0.1,IP:$svc_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
extendedKeyUsage=serverAuth"
sign admin "/O=system:masters/CN=crwrap-admin" "extendedKeyUsage=clientAuth"
openssl_quiet genrsa -out "$pki/sa.key" 2048
openssl_quiet rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

kubeconfig=$S/kubeconfig
cat >"$kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: crwrap
  cluster:
    server: https://127.0.0.1:$p_api
    certificate-authority: $pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $pki/admin.crt
    client-key: $pki/admin.key
contexts:
- name: crwrap
  context: {cluster: crwrap, user: admin, namespace: default}
current-context: crwrap
EOF

# start NAME CMD...: run CMD detached (own session), output to log/NAME.log, pid in pid/NAME.
start() {
	local name=$1
	shift
	setsid "$@" </dev/null >"$S/log/$name.log" 2>&1 &
	echo $! >"$S/pid/$name"
}
# wait_for WHAT SECONDS CMD...: retry CMD until it succeeds.
wait_for() {
	local what=$1 secs=$2 begin=$EPOCHREALTIME
	shift 2
	while ((${EPOCHREALTIME/./} - ${begin/./} < secs * 1000000)); do
		if "$@" >/dev/null 2>&1; then
			log "$what ($(((${EPOCHREALTIME/./} - ${begin/./}) / 1000)) ms)"
			return 0
		fi
		sleep 0.2
	done
	die "$what: not after $secs s"
}
alive() { kill -0 "$(cat "$S/pid/$1")" 2>/dev/null; }

# The pod network's bridge, made here so that its address (the gateway of the pod CIDR) is the
# node's: the kubelet refuses a loopback node IP, and this one is reachable from this host only.
node_ip=${pod_cidr%.*/*}.1
ip link add "$bridge" type bridge
ip addr add "$node_ip/${pod_cidr#*/}" dev "$bridge"
ip link set "$bridge" up

# containerd: its own instance; CRI with Debian's runc, overlayfs, the bridge below.
sock=$S/containerd/containerd.sock
cat >"$S/etc/containerd.toml" <<EOF
version = 2
root = "$S/containerd/root"
state = "$S/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$S/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "crwrap-k8s.local/pause:1"
  # root here lacks CAP_SYS_RESOURCE: runc cannot raise oom_score_adj above the parent's
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$S/containerd/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$S/cni/net.d"
EOF
cat >"$S/cni/net.d/10-crwrap.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "crwrap-k8s",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$S/cni/ipam",
        "ranges": [[{"subnet": "$pod_cidr"}]]
      }
    }
  ]
}
EOF
start containerd containerd --config "$S/etc/containerd.toml"
wait_for "containerd is up" 30 ctr -a "$sock" version

# The pause image: the static binary above as a one-layer OCI image, imported into containerd.
img=$S/pause-image
mkdir -p "$img/rootfs" "$img/oci/blobs/sha256"
cp "$S/bin/pause" "$img/rootfs/pause"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$img/rootfs" -cf "$img/layer.tar" pause
blob() { # FILE -> digest; copies FILE into the layout
	local d
	d=$(sha256sum "$1" | cut -d' ' -f1)
	cp "$1" "$img/oci/blobs/sha256/$d"
	echo "$d"
}
layer=$(blob "$img/layer.tar")
printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
	"$layer" >"$img/config.json"
config=$(blob "$img/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d}]}' \
	"$config" "$(stat -c %s "$img/config.json")" "$layer" "$(stat -c %s "$img/layer.tar")" >"$img/manifest.json"
manifest=$(blob "$img/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"io.containerd.image.name":"crwrap-k8s.local/pause:1","org.opencontainers.image.ref.name":"1"}}]}' \
	"$manifest" "$(stat -c %s "$img/manifest.json")" >"$img/oci/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$img/oci/oci-layout"
tar -C "$img/oci" -cf "$img/pause.tar" .
ctr -a "$sock" -n k8s.io images import "$img/pause.tar" >/dev/null

# etcd and the control plane.
start etcd "$bin/etcd" --name crwrap --data-dir "$S/etcd" \
	--listen-client-urls "http://127.0.0.1:$p_etcd" --advertise-client-urls "http://127.0.0.1:$p_etcd" \
	--listen-peer-urls "http://127.0.0.1:$p_peer" --initial-advertise-peer-urls "http://127.0.0.1:$p_peer" \
	--initial-cluster "crwrap=http://127.0.0.1:$p_peer" --unsafe-no-fsync --log-level warn
wait_for "etcd is up" 30 curl -fsS "http://127.0.0.1:$p_etcd/health"

start kube-apiserver "$bin/kube-apiserver" \
	--etcd-servers "http://127.0.0.1:$p_etcd" \
	--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$p_api" \
	--tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
	--client-ca-file "$pki/ca.crt" \
	--service-account-issuer https://kubernetes.default.svc \
	--service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
	--service-cluster-ip-range "$service_cidr" \
	--authorization-mode AlwaysAllow --allow-privileged=true \
	--endpoint-reconciler-type none \
	--kubelet-preferred-address-types InternalIP \
	--enable-priority-and-fairness=false --profiling=false
api() { curl -fsS --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "https://127.0.0.1:$p_api$1"; }
wait_for "kube-apiserver is ready" 120 api /readyz

start kube-controller-manager "$bin/kube-controller-manager" \
	--kubeconfig "$kubeconfig" --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
	--bind-address 127.0.0.1 --secure-port "$p_kcm" --leader-elect=false \
	--service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
	--service-cluster-ip-range "$service_cidr" --profiling=false
start kube-scheduler "$bin/kube-scheduler" \
	--kubeconfig "$kubeconfig" --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
	--bind-address 127.0.0.1 --secure-port "$p_sched" --leader-elect=false --profiling=false

# kubelet: cgroupfs (the host's cgroup v1), its pods under the cgroup /crwrap-k8s, which must
# exist (cpuset's with the parent's CPUs and memory nodes).
# A process of the cluster's holds it, so that nothing that sweeps empty cgroups (this machine has
# such a janitor) removes it under the kubelet.
start cgroup-holder "$S/bin/pause"
for hier in /sys/fs/cgroup/*/; do
	[[ -f $hier/cgroup.procs ]] || continue
	mkdir -p "$hier/crwrap-k8s"
	if [[ -f $hier/cpuset.cpus ]]; then
		cat "$hier/cpuset.cpus" >"$hier/crwrap-k8s/cpuset.cpus"
		cat "$hier/cpuset.mems" >"$hier/crwrap-k8s/cpuset.mems"
	fi
	cat "$S/pid/cgroup-holder" >"$hier/crwrap-k8s/cgroup.procs"
done
cat >"$S/etc/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: $p_kubelet
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $p_healthz
containerRuntimeEndpoint: unix://$sock
imageServiceEndpoint: unix://$sock
cgroupDriver: cgroupfs
cgroupRoot: /crwrap-k8s
failCgroupV1: false
failSwapOn: false
podLogsDir: $S/log/pods
volumePluginDir: $S/kubelet/volume-plugins
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: AlwaysAllow}
serializeImagePulls: false
maxPods: 40
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
resolvConf: /etc/resolv.conf
EOF
start kubelet "$bin/kubelet" --config "$S/etc/kubelet.yaml" --kubeconfig "$kubeconfig" \
	--root-dir "$S/kubelet" --cert-dir "$S/kubelet/pki" --hostname-override "$node" --node-ip "$node_ip" --v 1
kubectl=("$bin/kubectl" --kubeconfig "$kubeconfig")
wait_for "node $node is Ready" 120 "${kubectl[@]}" wait --for condition=Ready "node/$node" --timeout 1s
wait_for "the default service account exists" 60 "${kubectl[@]}" get serviceaccount default
# The holder moves down into the kubelet's kubepods, which holds the pods (made again if swept).
for hier in /sys/fs/cgroup/*/; do
	d=$hier/crwrap-k8s/kubepods
	[[ -d $hier/crwrap-k8s ]] || continue
	mkdir -p "$d"
	if [[ -f $hier/cpuset.cpus && -z $(cat "$d/cpuset.cpus") ]]; then
		cat "$hier/cpuset.cpus" >"$d/cpuset.cpus"
		cat "$hier/cpuset.mems" >"$d/cpuset.mems"
	fi
	cat "$S/pid/cgroup-holder" >"$d/cgroup.procs"
done
for p in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet containerd; do
	alive "$p" || die "$p exited; see $S/log/$p.log"
done

cat >"$S/env" <<EOF
KUBECONFIG=$kubeconfig
KUBECTL=$bin/kubectl
CONTAINERD_ADDRESS=$sock
NODE=$node
POD_CIDR=$pod_cidr
K8S_VERSION=$("${kubectl[@]}" get node "$node" -o jsonpath='{.status.nodeInfo.kubeletVersion}')
CONTAINERD_VERSION=$(containerd --version | awk '{print $3}')
RUNC_VERSION=$(runc --version | awk 'NR==1{print $3}')
EOF
started=1
log "Kubernetes $(grep K8S_VERSION "$S/env" | cut -d= -f2) on containerd $(grep CONTAINERD_VERSION "$S/env" | cut -d= -f2), logs in $S/log"
log "use it: export KUBECONFIG=$kubeconfig; alias kubectl=$bin/kubectl"
echo "$kubeconfig"
