#!/usr/bin/env bash
# images/base/make.sh — build the local base images that the repo's Dockerfiles use when no
# registry can be reached. Idempotent: a root is made once per recipe and cached under
# build/cache/ (gitignored); an image is imported again only when its recipe changed.
#
#   crwrap-local/golang:1.26    Debian 12 (bookworm) + gcc + libseccomp-dev + this host's Go
#                               (stands in for golang:1.26-bookworm: the build stage)
#   crwrap-local/debian:testing Debian forky (testing) with criu >= 4.2 and iptables
#                               (stands in for debian:testing: the CRIU stage)
#   crwrap-local/static:latest  busybox-static, CA certificates and /etc/{passwd,group} only:
#                               no glibc, no CRIU (stands in for a distroless runtime image)
#
# Usage: images/base/make.sh [IMAGE...]   (default: all three)
# Environment: CACHE_DIR (build/cache), DEBIAN_MIRROR (the Debian archive to debootstrap from;
# default: the one this host's apt uses, see images/lib/debian-archive.sh), GOROOT_SRC (the Go
# tree copied into the golang image; default: `go env GOROOT`).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${CACHE_DIR:-$repo/build/cache}
goroot=${GOROOT_SRC:-$(go env GOROOT 2>/dev/null || echo /usr/local/go)}
mkdir -p "$cache"

log() { echo "base: $*" >&2; }
# shellcheck source=images/lib/debian-archive.sh
. "$repo/images/lib/debian-archive.sh"

# root DIR RECIPE CMD...: run CMD (which must fill "$tmp") unless DIR holds a root for RECIPE.
# The root is made in a temporary directory and renamed, so a half-made root is never used.
root() {
	local dir=$1 recipe=$2
	shift 2
	if [[ -f $dir.recipe && $(cat "$dir.recipe") == "$recipe" && -d $dir ]]; then
		return 0
	fi
	log "making $dir ($recipe)"
	tmp=$dir.tmp.$$
	rm -rf "$tmp"
	mkdir -p "$tmp"
	"$@"
	rm -rf "$dir"
	mv "$tmp" "$dir"
	echo "$recipe" >"$dir.recipe"
}

# import IMAGE RECIPE TARCMD -- CHANGES...: docker import the tar stream that TARCMD prints unless
# IMAGE already carries the label for RECIPE.
import() {
	local image=$1 recipe=$2 tarcmd=$3
	shift 3
	local digest
	digest=$(echo "$recipe" | sha256sum | cut -c1-16)
	if [[ $(docker image inspect -f '{{index .Config.Labels "crwrap.base.recipe"}}' "$image" 2>/dev/null) == "$digest" ]]; then
		log "$image is up to date"
		return 0
	fi
	log "importing $image"
	local args=(-c "LABEL crwrap.base.recipe=$digest")
	local c
	for c in "$@"; do args+=(-c "$c"); done
	eval "$tarcmd" | docker import "${args[@]}" - "$image" >/dev/null
}

debootstrap_into() { # SUITE INCLUDE [SCRIPT]
	if ! command -v debootstrap >/dev/null; then
		log "installing debootstrap"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
	fi
	local archive
	archive=$(debian_archive) || return 1
	debootstrap --variant=minbase --include="$2" "$1" "$tmp" "$archive" ${3:+"$3"} >"$tmp.log" 2>&1 ||
		{ tail -n 30 "$tmp.log" >&2; return 1; }
	rm -f "$tmp.log"
	# Keep the images small: no apt lists or caches.
	rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
}

bookworm_pkgs=gcc,libc6-dev,libseccomp-dev,pkg-config,ca-certificates,busybox-static
bookworm_root() {
	root "$cache/bookworm-root" "bookworm minbase $bookworm_pkgs" debootstrap_into bookworm "$bookworm_pkgs"
}

golang() {
	bookworm_root
	host_cas "$cache/bookworm-root"
	local gover g
	gover=$("$goroot/bin/go" env GOVERSION)
	g=$(basename "$goroot") # one tar stream: docker import stops at the first end-of-archive
	import crwrap-local/golang:1.26 "v2 bookworm $bookworm_pkgs $gover $goroot cas=$(cas_digest)" \
		"tar -c -C '$cache/bookworm-root' --exclude=./usr/local/go . -C '$goroot/..' --transform 's,^$g/,usr/local/go/,S;s,^$g\$,usr/local/go,S' '$g'" \
		"ENV PATH=/usr/local/go/bin:/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
		"ENV GOPATH=/go" "ENV GOTOOLCHAIN=local" "WORKDIR /go" 'CMD ["bash"]'
}

# The forky root is images/criu/bundle.sh's: it makes it (once) when missing, with its recipe.
debian_testing() {
	local r=$cache/forky-root
	if [[ ! -f $r/.crwrap-root-complete ]]; then
		bash "$repo/images/criu/bundle.sh" "$cache/criu-bundle" "$r"
	fi
	import crwrap-local/debian:testing "forky $(cat "$r/.crwrap-root-complete") $(sha256sum <"$r/var/lib/dpkg/status")" \
		"tar -C '$r' -c ." \
		"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" 'CMD ["bash"]'
}

# host_cas ROOT: trust this host's CAs (the host's bundle holds Debian's plus any local one, e.g. a
# TLS-inspecting proxy's), so downloads inside `docker build` work wherever they work on the host.
host_cas() {
	local f=/etc/ssl/certs/ca-certificates.crt
	[[ -f $f ]] || return 0
	mkdir -p "$1/etc/ssl/certs"
	cmp -s "$f" "$1/etc/ssl/certs/ca-certificates.crt" || cp "$f" "$1/etc/ssl/certs/ca-certificates.crt"
}
cas_digest() { sha256sum </etc/ssl/certs/ca-certificates.crt 2>/dev/null | cut -c1-16; }

static_root_fill() {
	local b=$cache/bookworm-root
	mkdir -p "$tmp"/{bin,etc/ssl/certs,tmp,root,app}
	chmod 1777 "$tmp/tmp"
	cp "$b/bin/busybox" "$tmp/bin/busybox"
	local a
	for a in sh ls cat echo sleep ps kill wget env mkdir rm id true false; do ln -s busybox "$tmp/bin/$a"; done
	cp "$b/etc/ssl/certs/ca-certificates.crt" "$tmp/etc/ssl/certs/"
	host_cas "$tmp"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$tmp/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$tmp/etc/group"
	printf 'hosts: files dns\n' >"$tmp/etc/nsswitch.conf"
}

static() {
	bookworm_root
	root "$cache/static-root" "busybox-static v1 $(sha256sum <"$cache/bookworm-root/bin/busybox" | cut -c1-16) cas=$(cas_digest)" static_root_fill
	import crwrap-local/static:latest "$(cat "$cache/static-root.recipe")" \
		"tar -C '$cache/static-root' -c ." \
		"ENV PATH=/bin" 'CMD ["/bin/sh"]'
}

command -v docker >/dev/null || { echo "base: docker not found" >&2; exit 1; }
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(golang debian-testing static)
for t in "${targets[@]}"; do
	case $t in
	golang) golang ;;
	debian-testing) debian_testing ;;
	static) static ;;
	*) echo "base: unknown image $t (golang, debian-testing, static)" >&2; exit 2 ;;
	esac
done
