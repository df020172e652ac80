#!/usr/bin/env bash
# Installs what building and testing crwrap needs on a fresh Debian 12 machine (as root).
# Idempotent: installs only what is missing.
set -euo pipefail
need=()
for p in libseccomp-dev debootstrap iptables file gcc make git ca-certificates iproute2 curl docker-registry apache2-utils skopeo openssl runc podman; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "deps.sh: installing ${need[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "deps.sh: Go is not installed (expected /usr/local/go)" >&2; exit 1; }
