#!/bin/sh
# Long variant of TestStressLazyRestores (test/cr/stress_root_test.go): N lazy restores of a Go
# app while both cores build Go code, every other one with CRIU's lazy-pages daemon killed at a
# random point; zero crashes and zero answers from wrong memory. CI runs the short variant
# (6 restores) with the other root tests. Needs root and `make build`.
#
#   test/stress/lazy.sh [N]     (default 200)
set -eu
cd "$(dirname "$0")/../.."
n=${1:-200}
export PATH=/usr/local/go/bin:$PATH
export CRWRAP_BUILD=${CRWRAP_BUILD:-$PWD/build/crwrap}
CRWRAP_STRESS_N=$n exec go test -count=1 -p 1 -timeout "$((n * 20 + 300))s" -v ./test/cr/ -run '^TestStressLazyRestores$'
