#!/usr/bin/env bash
# The demo (make demo): the example app (examples/go-app, an HTTP service on :4000 with a slow
# warm-up) started cold under crwrap, checkpointed, then restored; prints cold start vs restore
# time-to-ready, measured from the outside the same way for both (polling /ready every 10 ms).
# Needs root and `make build`. Settings: WARMUP_SECONDS (5), HEAP_MB (64), DEMO_PORT (4000).
set -euo pipefail
cd "$(dirname "$0")/.."
CRWRAP=${CRWRAP:-$PWD/build/crwrap/bin/crwrap}
PORT=${DEMO_PORT:-4000}
export WARMUP_SECONDS=${WARMUP_SECONDS:-5} HEAP_MB=${HEAP_MB:-64} LISTEN_ADDRESS=127.0.0.1:$PORT

[ "$(id -u)" = 0 ] || { echo "demo: needs root (CRIU and containers)" >&2; exit 1; }
[ -x "$CRWRAP" ] || { echo "demo: no $CRWRAP (run make build)" >&2; exit 1; }
command -v curl >/dev/null || { echo "demo: curl is missing (make deps installs it)" >&2; exit 1; }
if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then
	echo "demo: something already listens on 127.0.0.1:$PORT (set DEMO_PORT)" >&2
	exit 1
fi

work=$(mktemp -d /tmp/crwrap-demo.XXXXXX)
pid=
cleanup() {
	if [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; then wait "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
CGO_ENABLED=0 go build -o "$work/go-app" ./examples/go-app
cat >"$work/cr.properties" <<PROPS
cr.checkpoint.name=go-app
cr.checkpoint.directory=demo
cr.checkpoint.root=$work/cr
cr.container.readiness=http://127.0.0.1:$PORT/ready
cr.readiness.interval=10ms
PROPS
export CR_PROPERTIES=$work/cr.properties

now_ms() { echo $(($(date +%s%N) / 1000000)); }
# start MODE: start crwrap in MODE in the background; elapsed = ms until /ready answers 200.
start() {
	local t0 t1
	t0=$(now_ms)
	"$CRWRAP" "$1" -- "$work/go-app" >"$work/$1.out" 2>"$work/$1.log" &
	pid=$!
	until curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/ready"; do
		kill -0 "$pid" 2>/dev/null || { echo "demo: crwrap $1 exited:" >&2; cat "$work/$1.log" >&2; exit 1; }
		sleep 0.01
	done
	t1=$(now_ms)
	elapsed=$((t1 - t0))
}
stop() { kill -TERM "$pid"; wait "$pid" || true; pid=; }

echo "demo: example app with a ${WARMUP_SECONDS}s warm-up and ${HEAP_MB} MiB of heap, on 127.0.0.1:$PORT"
echo "demo: 1/3 cold start (crwrap run)"
start run
cold=$elapsed
cold_value=$(curl -s "http://127.0.0.1:$PORT/value")
stop

echo "demo: 2/3 checkpoint (crwrap checkpoint)"
CR_CHECKPOINT_EXIT=true "$CRWRAP" checkpoint -- "$work/go-app" >"$work/checkpoint.out" 2>"$work/checkpoint.log" ||
	{ echo "demo: checkpoint failed:" >&2; tail -5 "$work/checkpoint.log" >&2; exit 1; }
grep 'phase=summary' "$work/checkpoint.log" | sed 's/^.*msg=/demo:   /'
ckpt_value=$("$CRWRAP" inspect --json "$work/cr/demo/go-app" >/dev/null && echo ok)

echo "demo: 3/3 restore (crwrap restore)"
start restore
restore=$elapsed
value=$(curl -s "http://127.0.0.1:$PORT/value")
curl -s "http://127.0.0.1:$PORT/" >/dev/null
stop
grep -q 'phase=fallback' "$work/restore.log" && { echo "demo: the restore fell back to a cold start:" >&2; grep phase=fallback "$work/restore.log" >&2; exit 1; }
restore_phase=$(grep -E 'phase=restore( |$)' "$work/restore.log" | grep -o 'duration_ms=[0-9]*' | head -1 | cut -d= -f2 || true)
[ "$ckpt_value" = ok ] || exit 1

echo
printf '%-34s %8s\n' "" "ms"
printf '%-34s %8d\n' "cold start -> ready" "$cold" "restore -> ready" "$restore"
printf '%-34s %8s\n' "  of which CRIU restore phase" "${restore_phase:-?}"
awk -v c="$cold" -v r="$restore" 'BEGIN { printf "%-34s %8.1fx\n", "restore is faster by", c / r }'
echo
echo "demo: value drawn at warm-up: cold $cold_value, restored $value (the restored one was drawn during the checkpointed run)"
echo "demo: the restored app's log lines reached crwrap's stdout:"
sed 's/^/demo:   /' "$work/restore.out" | tail -3
