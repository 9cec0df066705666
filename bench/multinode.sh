#!/usr/bin/env bash
# Many bridges on one Redis, side by side with one embedded bridge, same load (bridge-load):
#   embedded   one bridge, no --broker (the default)
#   redis-1    one bridge with --broker=redis://: publish and subscribe on the same node
#   redis-2    two bridges on one Redis: publish on node A, every subscriber on node B, so each
#              event crosses Redis (script publish on A, pub/sub delivery to B)
# for the fanout-max load (1000 subscribers, one channel, 5000 events as fast as accepted) and
# the channels load (5000 subscribers on 5000 channels, 20000 events). Writes
# bench/results/<date>-multinode.jsonl; the CPU figure is the sum over the bridge processes
# (Redis's own CPU is printed apart).
#
#   bench/multinode.sh                 both loads
#   BENCH_QUICK=1 bench/multinode.sh   reduced counts
#   BUILD_DIR=build/release            where gathering-bridge and bridge-load are
set -euo pipefail

. "$(dirname "$0")/paths.sh"
QUICK=${BENCH_QUICK:-0}
LOADS=${*:-"fanout-max channels"}
PY=/usr/bin/python3
DATE=$(date +%F)
WORK=$(mktemp -d)
PIDS=()
REDIS_PID=""
mkdir -p "$RESULTS_DIR"

log() { echo "$*" >&2; }
cleanup() {
  for p in "${PIDS[@]}" $REDIS_PID; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

q() { if [ "$QUICK" = 1 ]; then echo "$2"; else echo "$1"; fi; }
load_args() {
  case "$1" in
    fanout-max) echo "--subscribers=$(q 1000 200) --channels=1 --events=$(q 5000 1000) --rate=0" ;;
    channels) echo "--subscribers=$(q 5000 1000) --channels=$(q 5000 1000) --events=$(q 20000 4000) --rate=0" ;;
  esac
}

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_redis() {
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$WORK" >"$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 100); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  log "redis-server did not start"; return 1
}

stop_redis() { kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; REDIS_PID=""; }

# start_node NAME [flags...]: appends to PIDS; sets WS_PORT GRPC_PORT of that node.
start_node() {
  local name=$1; shift
  rm -f "$WORK/$name.json"
  "$BRIDGE_BIN" --host=127.0.0.1 --ws_port=0 --grpc_port=0 --ready_file="$WORK/$name.json" \
    --log_level=warn --node_id="$name" "$@" >>"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 200); do [ -s "$WORK/$name.json" ] && break; sleep 0.1; done
  [ -s "$WORK/$name.json" ] || { log "$name not ready"; tail "$WORK/$name.log" >&2; return 1; }
  WS_PORT=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["ws_port"])' "$WORK/$name.json")
  GRPC_PORT=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["grpc_port"])' "$WORK/$name.json")
}

stop_nodes() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  PIDS=()
}

redis_cpu() {  # seconds of CPU the redis-server used so far
  [ -n "$REDIS_PID" ] || { echo 0; return; }
  $PY -c 'import os,sys; t=open("/proc/%s/stat"%sys.argv[1]).read().rsplit(")",1)[1].split(); print((int(t[11])+int(t[12]))/os.sysconf("SC_CLK_TCK"))' "$REDIS_PID"
}

run() {  # load mode ws grpc pids
  local load=$1 mode=$2 ws=$3 grpc=$4 pids=$5 out before after
  before=$(redis_cpu)
  # shellcheck disable=SC2046
  out=$(timeout 300 "$LOAD_BIN" --scenario="multinode-$load-$mode" --target=bridge --publish=stream \
          --ws_port="$ws" --grpc_port="$grpc" --server_pids="$pids" --max_s=240 \
          $(load_args "$load") 2>>"$WORK/load.err") || { log "bridge-load failed"; tail -5 "$WORK/load.err" >&2; return 0; }
  after=$(redis_cpu)
  echo "$out" >>"$RESULTS_DIR/$DATE-multinode.jsonl"
  echo "$out" | $PY -c 'import json,sys; r=json.load(sys.stdin); d=max(r["delivered"],1); print("  %-28s delivered %s/%s lost %s dup %s  %.0f/s  p50 %.2f p99 %.2f ms  bridge cpu %.2f s = %.2f us/delivery  redis cpu %.2f s" % (r["scenario"], r["delivered"], r["expected"], r["lost"], r["duplicated"], r["deliveries_per_sec"], r["p50_ms"], r["p99_ms"], r["server_cpu_seconds"], 1e6*r["server_cpu_seconds"]/d, float(sys.argv[2])-float(sys.argv[1])))' "$before" "$after" >&2
}

for load in $LOADS; do
  log "== $load"
  start_node a
  run "$load" embedded "$WS_PORT" "$GRPC_PORT" "${PIDS[0]}"
  stop_nodes
  start_redis
  start_node a --broker="redis://127.0.0.1:$REDIS_PORT"
  run "$load" redis-1 "$WS_PORT" "$GRPC_PORT" "${PIDS[0]}"
  stop_nodes
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
  start_node a --broker="redis://127.0.0.1:$REDIS_PORT"
  A_GRPC=$GRPC_PORT
  start_node b --broker="redis://127.0.0.1:$REDIS_PORT"
  run "$load" redis-2 "$WS_PORT" "$A_GRPC" "${PIDS[0]},${PIDS[1]}"
  stop_nodes
  stop_redis
done
