#!/usr/bin/env bash
# bundle.sh OUT_DIR [CACHE_DIR]
#
# Builds the self-contained CRIU bundle that ships as /crwrap/criu:
#
#   OUT_DIR/root/     criu, tar, gzip, xtables-{nft,legacy}-multi, nft, their loader and the full
#                     shared-library closure, each at its path in a Debian testing (forky) root
#   OUT_DIR/bin/      criu, tar, gzip, iptables*, ip6tables*, nft -> ../../bin/crwrap (multi-call:
#                     crwrap execs ROOT/lib64/ld-linux-x86-64.so.2 --library-path ... ROOT/<tool>)
#
# Which programs, packages and names: tools.sh next to this script, generated from
# internal/criu/tools.go (`go generate ./internal/criu`).
#   OUT_DIR/VERSION   CRIU's version as the bundled criu reports it (must be >= 4.2)
#
# CRIU >= 4.2 is needed on kernels >= 6.16 and only Debian testing has it; its packages need a
# newer glibc than Debian 12, so they go into a debootstrap root (CACHE_DIR, default
# build/cache/forky-root), never into the system. They come from the Debian archive this host's
# apt uses (images/lib/debian-archive.sh), or from $DEBIAN_MIRROR when set. The root is built
# once: a second run downloads nothing. It is built in a temporary directory and renamed, so an
# interrupted run leaves no half root behind. Runs as root on a fresh Debian 12 machine (installs debootstrap when missing).
set -euo pipefail

usage() { echo "usage: $0 OUT_DIR [CACHE_DIR]" >&2; exit 2; }
die() { echo "bundle.sh: $*" >&2; exit 1; }
log() { echo "bundle.sh: $*" >&2; }

(($# >= 1 && $# <= 2)) || usage
OUT=$1
CACHE=${2:-build/cache/forky-root}
SUITE=forky
MIN_MAJOR=4 MIN_MINOR=2
here=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=images/criu/tools.sh
. "$here/tools.sh"
# shellcheck source=images/lib/debian-archive.sh
. "$here/../lib/debian-archive.sh"
read -ra PROGRAMS <<<"$BUNDLE_PROGRAMS"
read -ra LIBDIRS <<<"$BUNDLE_LIBDIRS"

# Make SIGINT/SIGTERM run the EXIT traps that remove temporary directories.
trap 'exit 130' INT
trap 'exit 143' TERM

[ "$(uname -m)" = x86_64 ] || die "only x86_64 is supported (got $(uname -m))"

mkdir -p "$(dirname "$CACHE")" "$(dirname "$OUT")"
CACHE=$(realpath -m "$CACHE")
OUT=$(realpath -m "$OUT")

# --- the forky root ---------------------------------------------------------------------------

MARKER=.crwrap-root-complete

# root_complete DIR: the root was fully installed (our marker, or a finished debootstrap run
# made by hand as FACTS.md describes: debootstrap removes its work directory only at the end).
root_complete() {
	local d=$1
	[ -f "$d/$MARKER" ] && return 0
	local p
	for p in "${PROGRAMS[@]}"; do [ -x "$d/$p" ] || return 1; done
	[ ! -e "$d/debootstrap" ] && grep -q '^Package: criu$' "$d/var/lib/dpkg/status" 2>/dev/null
}

ensure_debootstrap() {
	command -v debootstrap >/dev/null && [ -f /usr/share/debootstrap/scripts/sid ] && return 0
	[ "$(id -u)" = 0 ] || die "debootstrap is missing and we are not root to install it"
	log "installing debootstrap"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends debootstrap ca-certificates >/dev/null
}

if root_complete "$CACHE"; then
	[ -f "$CACHE/$MARKER" ] || date -u +%FT%TZ >"$CACHE/$MARKER"
	log "using cached root $CACHE"
else
	[ "$(id -u)" = 0 ] || die "building the $SUITE root needs root"
	ensure_debootstrap
	archive=$(debian_archive) || die "cannot tell which Debian archive to download the $SUITE root from"
	[ ! -e "$CACHE" ] || [ -z "$(ls -A "$CACHE" 2>/dev/null)" ] || {
		# An incomplete root in place (e.g. made by hand and interrupted): start over.
		log "removing incomplete root $CACHE"
		rm -rf --one-file-system "$CACHE"
	}
	rmdir "$CACHE" 2>/dev/null || true
	tmp=$(mktemp -d "$CACHE.tmp.XXXXXX")
	trap 'rm -rf --one-file-system "$tmp"' EXIT
	log "debootstrap $SUITE from $archive into $tmp (about 30 s)"
	debootstrap --variant=minbase --include="${BUNDLE_PACKAGES// /,}" "$SUITE" "$tmp" "$archive" \
		/usr/share/debootstrap/scripts/sid >"$tmp.log" 2>&1 || {
		tail -20 "$tmp.log" >&2
		die "debootstrap failed (log: $tmp.log)"
	}
	rm -f "$tmp.log"
	root_complete "$tmp" || die "debootstrap finished but the root lacks one of $BUNDLE_PROGRAMS"
	date -u +%FT%TZ >"$tmp/$MARKER"
	chmod 755 "$tmp"
	mv -T "$tmp" "$CACHE"
	trap - EXIT
fi

ROOT=$CACHE
LOADER_REL=$BUNDLE_LOADER
# libpath DIR: the loader's --library-path for the root at DIR.
libpath() { local d dirs=(); for d in "${LIBDIRS[@]}"; do dirs+=("$1/$d"); done; (IFS=:; echo "${dirs[*]}"); }
LIBPATH=$(libpath "$ROOT")

# --- copying paths out of the root, symlinks and all --------------------------------------------

STAGE=$(mktemp -d "$OUT.tmp.XXXXXX")
trap 'rm -rf --one-file-system "$STAGE"' EXIT
SROOT=$STAGE/root
mkdir -p "$SROOT"

# add REL: copy ROOT/REL to SROOT/REL. Every symlink met on the way (in any component, absolute
# or relative, resolved inside ROOT) is copied as a symlink and its target is added too, so the
# bundle keeps the root's layout (merged /usr, soname links, alternatives).
add() {
	local rel=${1#/} cur="" comp i target rest
	local -a parts
	IFS=/ read -ra parts <<<"$rel"
	for ((i = 0; i < ${#parts[@]}; i++)); do
		comp=${parts[i]}
		[ -n "$comp" ] || continue
		cur=${cur:+$cur/}$comp
		if [ -L "$ROOT/$cur" ]; then
			if [ ! -L "$SROOT/$cur" ]; then
				mkdir -p "$SROOT/$(dirname "$cur")"
				cp -P "$ROOT/$cur" "$SROOT/$cur"
			fi
			target=$(readlink "$ROOT/$cur")
			case $target in
			/*) target=${target#/} ;;
			*) target=$(dirname "$cur")/$target ;;
			esac
			target=$(realpath -m -s "/$target")
			rest=$(IFS=/; echo "${parts[*]:i+1}")
			add "${target#/}${rest:+/$rest}"
			return
		fi
	done
	[ -e "$ROOT/$cur" ] || die "$cur: not in the root"
	[ -e "$SROOT/$cur" ] && return 0
	mkdir -p "$SROOT/$(dirname "$cur")"
	cp -p "$ROOT/$cur" "$SROOT/$cur"
}

# needed FILE...: the root-relative paths of the shared libraries FILEs load, as resolved by the
# root's own loader (never the host's ldd: the root's glibc is newer).
needed() {
	"$ROOT/$LOADER_REL" --library-path "$LIBPATH" --list "$@" 2>/dev/null |
		sed -n 's/.*=> \(\/[^ ]*\) (0x.*/\1/p' | sort -u |
		while read -r p; do
			case $p in
			"$ROOT"/*) echo "${p#"$ROOT"/}" ;;
			*) die "library $p resolved outside the root" ;;
			esac
		done
}

# The programs (tools.sh): criu and the tools CRIU executes through PATH (tar, gzip, iptables in
# both backends, nft). CRIU itself links libnftables for --network-lock nftables.
# iptables loads its matches and targets (-m mark, -j DROP ...) with dlopen at run time.
XT_DIR=$BUNDLE_XTABLES_LIBDIR

add "$LOADER_REL"
# Keep the merged-/usr top-level links (lib -> usr/lib ...) so root/lib/<triplet> works too.
for l in lib bin sbin; do [ -L "$ROOT/$l" ] && cp -P "$ROOT/$l" "$SROOT/$l"; done
for t in "${PROGRAMS[@]}"; do add "$t"; done
mapfile -t xt < <(cd "$ROOT" && ls "$XT_DIR"/*.so)
for x in "${xt[@]}"; do add "$x"; done

mapfile -t libs < <(
	for t in "${PROGRAMS[@]}"; do needed "$ROOT/$t"; done
	for x in "${xt[@]}"; do needed "$ROOT/$x"; done
)
[ ${#libs[@]} -gt 0 ] || die "no shared libraries found for criu (loader --list failed?)"
for l in $(printf '%s\n' "${libs[@]}" | sort -u); do add "$l"; done

# Closure check: every ELF file in the stage resolves all its libraries inside the stage.
while IFS= read -r -d '' f; do
	head -c4 "$f" | grep -q $'\x7fELF' || continue
	out=$("$SROOT/$LOADER_REL" --library-path "$(libpath "$SROOT")" --list "$f" 2>&1) ||
		[[ $f == */ld-linux-x86-64.so.2 ]] || die "loader --list $f: $out"
	if grep -q 'not found' <<<"$out"; then die "$f: missing libraries: $(grep 'not found' <<<"$out")"; fi
	if grep -F "$ROOT/" <<<"$out" >/dev/null; then die "$f resolves libraries outside the bundle"; fi
done < <(find "$SROOT" -type f -print0)

# --- bin/ (multi-call links to crwrap) and VERSION ----------------------------------------------

mkdir -p "$STAGE/bin"
read -ra names <<<"$BUNDLE_TOOLS"
for n in "${names[@]}"; do
	ln -s ../../bin/crwrap "$STAGE/bin/$n"
done

ver_out=$("$SROOT/$LOADER_REL" --library-path "$(libpath "$SROOT")" --argv0 criu \
	"$SROOT/usr/sbin/criu" --version) || die "bundled criu --version failed: $ver_out"
version=$(sed -n 's/^Version: *\([0-9][0-9.]*\).*/\1/p' <<<"$ver_out" | head -1)
[ -n "$version" ] || die "cannot parse criu --version output: $ver_out"
IFS=. read -r vmaj vmin _ <<<"$version"
if ((vmaj < MIN_MAJOR || (vmaj == MIN_MAJOR && ${vmin:-0} < MIN_MINOR))); then
	die "bundled CRIU $version is older than $MIN_MAJOR.$MIN_MINOR (needed on kernels >= 6.16)"
fi
echo "$version" >"$STAGE/VERSION"

# Replace OUT_DIR atomically enough: a complete new bundle or the old one, never a mix.
chmod 755 "$STAGE"
if [ -e "$OUT" ]; then
	old=$(mktemp -d "$OUT.old.XXXXXX")
	mv -T "$OUT" "$old/b"
	mv -T "$STAGE" "$OUT"
	rm -rf --one-file-system "$old"
else
	mv -T "$STAGE" "$OUT"
fi
trap - EXIT

log "CRIU $version bundled in $OUT ($(du -sh "$OUT" | cut -f1))"
