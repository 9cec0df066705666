#!/usr/bin/env bash
# Profiles the bridge while bridge-load runs one scenario: `perf stat` (task clock, context
# switches) and `perf record -g` of the server process, then the top of `perf report`.
#
#   bench/profile.sh [scenario] [extra bridge-load flags...]      (default: fanout-max, quick size)
#   BUILD_DIR=build/bench bench/profile.sh channels --publish=stream
#
# Writes bench/results/profile-<scenario>.txt. Needs linux-perf (perf_event_paranoid <= 2 as root).
set -euo pipefail
. "$(dirname "$0")/paths.sh"
SCENARIO=${1:-fanout-max}
shift || true
command -v perf >/dev/null || { echo "perf not installed (apt-get install linux-perf)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

case "$SCENARIO" in
  fanout)       ARGS="--subscribers=1000 --events=2000 --rate=1000" ;;
  fanout-max)   ARGS="--subscribers=1000 --events=3000 --rate=0" ;;
  fanout-light) ARGS="--subscribers=1000 --events=200 --rate=20" ;;
  channels)     ARGS="--subscribers=5000 --channels=5000 --events=20000 --rate=0" ;;
  *) echo "scenario: fanout | fanout-max | fanout-light | channels" >&2; exit 2 ;;
esac

WORK=$(mktemp -d /tmp/gathering-profile.XXXXXX)
PID=""
cleanup() {
  [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BRIDGE_BIN" --host=127.0.0.1 --ws_port=0 --grpc_port=0 --ready_file="$WORK/ready.json" \
  --log_level=warn >"$WORK/bridge.log" 2>&1 &
PID=$!
for _ in $(seq 200); do [ -s "$WORK/ready.json" ] && break; sleep 0.1; done
WS=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ws_port"])' "$WORK/ready.json")
GRPC=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["grpc_port"])' "$WORK/ready.json")

OUT=$ROOT/bench/results/profile-$SCENARIO.txt
mkdir -p "$(dirname "$OUT")"
perf record -F 499 -g -o "$WORK/perf.data" -p "$PID" 2>"$WORK/perf-record.log" &
REC=$!
perf stat -e task-clock,context-switches,cpu-migrations,page-faults -p "$PID" \
  -o "$WORK/stat.txt" 2>/dev/null &
STAT=$!
sleep 0.5
# shellcheck disable=SC2086
timeout 300 "$LOAD_BIN" --scenario="$SCENARIO" --target=bridge --ws_port="$WS" --grpc_port="$GRPC" \
  --server_pids="$PID" --max_s=240 $ARGS "$@" >"$WORK/load.json"
kill -INT "$REC" "$STAT" 2>/dev/null || true
wait "$REC" 2>/dev/null || true
wait "$STAT" 2>/dev/null || true
{
  echo "# bench/profile.sh $SCENARIO $* ($(date +%F' '%T), load $(cut -d' ' -f1-3 /proc/loadavg))"
  echo; echo "## bridge-load"; cat "$WORK/load.json"
  echo; echo "## perf stat (server process, whole run)"; cat "$WORK/stat.txt"
  echo; echo "## perf report: self time by symbol (server process)"
  perf report -i "$WORK/perf.data" --no-children --sort=dso,sym --stdio 2>/dev/null \
    | grep -E '^ +[0-9.]+%' | head -40
  echo; echo "## perf report: kernel vs user self time"
  perf report -i "$WORK/perf.data" --no-children --sort=sym --stdio -g none 2>/dev/null \
    | awk '/^ +[0-9.]+%/ { v = $1; sub("%", "", v); if ($2 == "[k]") k += v; else u += v }
           END { printf "kernel %.1f%%  user %.1f%%\n", k, u }'
} >"$OUT"
echo "wrote $OUT" >&2
