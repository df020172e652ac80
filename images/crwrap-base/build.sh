#!/usr/bin/env bash
# images/crwrap-base/build.sh [TAG] — docker build the crwrap-base image (default tag crwrap-base)
# from images/crwrap-base/Dockerfile, offline-friendly:
#   - the base images are the local ones of images/base/make.sh (crwrap-local/golang:1.26 and
#     crwrap-local/debian:testing), made first; set GO_IMAGE/CRIU_IMAGE to use others;
#   - the build context is staged in build/context/crwrap-base with only what the build reads
#     (go.mod, go.sum, cmd/, internal/, templates/, images/criu/, images/lib/) and a file:// Go
#     module proxy made from this host's module cache, so no module is downloaded inside the
#     build (this host's `go env GOPROXY` stays behind it as a fallback).
# Environment: GO_IMAGE, CRIU_IMAGE, VERSION, DOCKER_BUILD_FLAGS (extra flags, e.g. --network host).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tag=${1:-crwrap-base}
go_image=${GO_IMAGE:-crwrap-local/golang:1.26}
criu_image=${CRIU_IMAGE:-crwrap-local/debian:testing}
ctx=$repo/build/context/crwrap-base

if [[ -z ${GO_IMAGE:-} || -z ${CRIU_IMAGE:-} ]]; then
	"$repo/images/base/make.sh" golang debian-testing
fi

cd "$repo"
rm -rf "$ctx"
mkdir -p "$ctx/images/criu" "$ctx/images/lib" "$ctx/.goproxy"
cp go.mod go.sum "$ctx/"
cp -r cmd internal templates "$ctx/"
mkdir -p "$ctx/images/crwrap-base"
cp images/criu/bundle.sh images/criu/tools.sh "$ctx/images/criu/"
cp images/lib/debian-archive.sh "$ctx/images/lib/"
cp images/crwrap-base/Dockerfile "$ctx/images/crwrap-base/"
find "$ctx" -name '*_test.go' -delete

# The module proxy: every .info/.mod of the host's download cache (small; the go command reads
# go.mod files of the whole module graph) and the .zip of each module the binary is built from.
modcache=$(go env GOMODCACHE)/cache/download
deps() { # the modules ./cmd/crwrap is built from, with the Dockerfile's build tags
	CGO_ENABLED=1 go list -deps -tags "netgo osusergo seccomp" \
		-f '{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}}{{end}}{{end}}' ./cmd/crwrap | sort -u
}
mapfile -t mods < <(deps)
for m in "${mods[@]}"; do go mod download "${m/ /@}"; done
(cd "$modcache" && find . \( -name '*.mod' -o -name '*.info' -o -name list \) -exec cp --parents -t "$ctx/.goproxy/" {} +)
printf '%s\n' "${mods[@]}" |
	while read -r path version; do
		# shellcheck disable=SC2001 # sed lowercases each match (\L); no parameter expansion does
		esc=$(sed 's/[A-Z]/!\L&/g' <<<"$path")
		mkdir -p "$ctx/.goproxy/$esc/@v"
		cp "$modcache/$esc/@v/$version.zip" "$ctx/.goproxy/$esc/@v/"
	done

version=${VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}
echo "crwrap-base: docker build -t $tag (GO_IMAGE=$go_image CRIU_IMAGE=$criu_image)" >&2
log=$repo/build/context/crwrap-base.log
# shellcheck disable=SC2086 # DOCKER_BUILD_FLAGS is a list of flags
if ! docker build ${DOCKER_BUILD_FLAGS:-} -f "$ctx/images/crwrap-base/Dockerfile" -t "$tag" \
	--build-arg GO_IMAGE="$go_image" --build-arg CRIU_IMAGE="$criu_image" \
	--build-arg GOPROXY="file:///src/.goproxy,$(go env GOPROXY)" \
	--build-arg VERSION="$version" "$ctx" >"$log" 2>&1; then
	tail -n 40 "$log" >&2
	echo "crwrap-base: docker build failed (log: $log)" >&2
	exit 1
fi
echo "crwrap-base: built $tag" >&2
