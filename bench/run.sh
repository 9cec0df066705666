#!/usr/bin/env bash
# Runs the benchmark scenarios against the built-in sink (the load tool's own ceiling), the
# bridge and nginx+nchan, one fresh server per run, and writes
#   bench/results/<date>-<scenario>.jsonl   one JSON line per run (bridge-load's output)
#   bench/results/latest.md                 the tables of this invocation
#
#   bench/run.sh                    every scenario
#   bench/run.sh fanout idle        some scenarios
#   BENCH_QUICK=1 bench/run.sh      reduced counts (smoke check, about a minute)
#   BENCH_TARGETS="bridge nchan"    which targets (default: sink bridge nchan)
#   BUILD_DIR=build/bench           where gathering-bridge and bridge-load are (default build/release)
#   LOAD_ARGS="--io_threads=2"      extra bridge-load flags for every run (after the scenario's)
#   BRIDGE_ARGS="--io_threads=1"    extra gathering-bridge flags for every run
#
# Scenarios: fanout fanout-max fanout-tls fanout-light channels idle connect-storm slow-consumer.
# Everything listens on 127.0.0.1; every run is bounded by bridge-load --max_s and `timeout`.
#
# fanout-tls is fanout-max with the subscribers on wss:// (bridge-load --tls): run.sh makes a
# throwaway self-signed ECDSA P-256 certificate for localhost/127.0.0.1 in its temp dir (openssl
# CLI), starts the bridge with --ws_tls_cert_file/--ws_tls_key_file and nginx+nchan with an ssl
# listener (TLS 1.2+) carrying the same certificate. Only the subscribers speak TLS: the bridge
# is published to over plain gRPC and nchan over plain HTTP on its plain listener, so both
# targets pay TLS on the fan-out side only. The sink has no TLS and skips it. It is in the
# default list: it adds about 70 s (the bridge's run about 10 s, nchan's about 60 s, as its TLS
# fan-out is slow) to a `make bench` of roughly 5 minutes on the 2-core machine, and TLS is how
# the bridge is meant to be deployed. Read it next to fanout-max: at "as fast as accepted" the
# cost per delivery depends on how many frames each server write carries, and that is not the
# same over TLS (the bridge's TLS writes are fewer and bigger).
set -euo pipefail

. "$(dirname "$0")/paths.sh"
TARGETS=${BENCH_TARGETS:-"sink bridge nchan"}
QUICK=${BENCH_QUICK:-0}
ALL_SCENARIOS="fanout fanout-max fanout-tls fanout-light channels idle connect-storm slow-consumer"
SCENARIOS=${*:-$ALL_SCENARIOS}
PY=/usr/bin/python3

for s in $SCENARIOS; do
  case " $ALL_SCENARIOS " in *" $s "*) ;; *) echo "unknown scenario: $s (one of: $ALL_SCENARIOS)" >&2; exit 2 ;; esac
done
[ -x "$LOAD_BIN" ] || { echo "no $LOAD_BIN: build first (make bench)" >&2; exit 1; }
case " $TARGETS " in *" bridge "*) [ -x "$BRIDGE_BIN" ] || { echo "no $BRIDGE_BIN" >&2; exit 1; } ;; esac

# 10,000 connections need 10,000 descriptors in the tool and in the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 20000 ]; then
  echo "warning: ulimit -n is $(ulimit -n); the 10,000-connection scenarios will fail" >&2
fi

WORK=$(mktemp -d /tmp/gathering-bench.XXXXXX)
BRIDGE_PID=""
NCHAN_MASTER=""
cleanup() {
  stop_bridge || true
  stop_nchan || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

DATE=$(date +%F)
mkdir -p "$RESULTS_DIR"
RUN_LINES=$WORK/run.jsonl
: >"$RUN_LINES"

log() { echo "[bench $(date +%T)] $*" >&2; }

# ---------------------------------------------------------------------------------------------
# Servers.

free_port() {
  $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_bridge [extra flags...]: sets BRIDGE_PID WS_PORT GRPC_PORT.
start_bridge() {
  rm -f "$WORK/ready.json"
  "$BRIDGE_BIN" --host=127.0.0.1 --ws_port=0 --grpc_port=0 --ready_file="$WORK/ready.json" \
    --log_level=warn "$@" >>"$WORK/bridge.log" 2>&1 &
  BRIDGE_PID=$!
  for _ in $(seq 200); do
    [ -s "$WORK/ready.json" ] && break
    kill -0 "$BRIDGE_PID" 2>/dev/null || { log "bridge exited at start:"; tail -20 "$WORK/bridge.log" >&2; BRIDGE_PID=""; return 1; }
    sleep 0.1
  done
  [ -s "$WORK/ready.json" ] || { log "bridge not ready in 20 s"; return 1; }
  WS_PORT=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["ws_port"])' "$WORK/ready.json")
  GRPC_PORT=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["grpc_port"])' "$WORK/ready.json")
}

stop_bridge() {
  [ -n "$BRIDGE_PID" ] || return 0
  kill -TERM "$BRIDGE_PID" 2>/dev/null || true
  local rc=0
  for _ in $(seq 100); do kill -0 "$BRIDGE_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$BRIDGE_PID" 2>/dev/null; then
    log "bridge did not exit 10 s after SIGTERM: SIGKILL"
    kill -KILL "$BRIDGE_PID" 2>/dev/null || true
  fi
  wait "$BRIDGE_PID" 2>/dev/null || rc=$?
  [ "$rc" = 0 ] || log "bridge exit status $rc after SIGTERM (expected 0)"
  BRIDGE_PID=""
}

nchan_module() {
  for f in /usr/lib/nginx/modules/ngx_nchan_module.so /usr/share/nginx/modules/ngx_nchan_module.so; do
    [ -f "$f" ] && { echo "$f"; return; }
  done
  # Debian's modules-available snippet names it.
  sed -n 's/^load_module \(.*\);/\1/p' /usr/share/nginx/modules-available/mod-nchan.conf 2>/dev/null | head -1
}

# The throwaway certificate and key of the TLS scenarios (made once per invocation): sets
# TLS_CERT TLS_KEY.
TLS_CERT=""
TLS_KEY=""
make_tls_cert() {
  [ -z "$TLS_CERT" ] || return 0
  mkdir -p "$WORK/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" 2>>"$WORK/tls/openssl.log" ||
    { log "openssl could not make the certificate:"; tail -5 "$WORK/tls/openssl.log" >&2; return 1; }
  TLS_CERT=$WORK/tls/cert.pem
  TLS_KEY=$WORK/tls/key.pem
}

# start_nchan [tls]: sets NCHAN_MASTER NCHAN_PORT NCHAN_WORKERS (comma list), and with tls
# NCHAN_TLS_PORT (the ssl listener; NCHAN_PORT stays plain, for publishing).
start_nchan() {
  local dir=$WORK/nchan module tls_sed
  module=$(nchan_module)
  [ -n "$module" ] || { log "nchan module not found: scripts/setup.sh --with-bench"; return 1; }
  rm -rf "$dir" && mkdir -p "$dir"
  NCHAN_PORT=$(free_port)
  NCHAN_TLS_PORT=""
  if [ "${1:-}" = tls ]; then
    NCHAN_TLS_PORT=$(free_port)
    tls_sed=(-e 's/^#tls# //' -e "s#@TLS_PORT@#$NCHAN_TLS_PORT#g" -e "s#@CERT@#$TLS_CERT#g"
             -e "s#@KEY@#$TLS_KEY#g")
  else
    tls_sed=(-e '/^#tls# /d')
  fi
  sed "${tls_sed[@]}" -e "s#@PREFIX@#$dir#g" -e "s#@PORT@#$NCHAN_PORT#g" \
    -e "s#@MODULE@#$module#g" "$ROOT/bench/nchan/nginx.conf.in" >"$dir/nginx.conf"
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" 2>>"$dir/error.log"
  for _ in $(seq 100); do [ -s "$dir/nginx.pid" ] && break; sleep 0.1; done
  NCHAN_MASTER=$(cat "$dir/nginx.pid")
  for _ in $(seq 100); do
    NCHAN_WORKERS=$(pgrep -P "$NCHAN_MASTER" | paste -sd, || true)
    [ "$(echo "$NCHAN_WORKERS" | tr ',' '\n' | grep -c .)" -ge 2 ] && break
    sleep 0.1
  done
}

stop_nchan() {
  [ -n "$NCHAN_MASTER" ] || return 0
  kill -TERM "$NCHAN_MASTER" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$NCHAN_MASTER" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$NCHAN_MASTER" 2>/dev/null && kill -KILL "$NCHAN_MASTER" 2>/dev/null || true
  NCHAN_MASTER=""
}

# ---------------------------------------------------------------------------------------------
# Scenarios: q FULL QUICK picks the count.
q() { if [ "$QUICK" = 1 ]; then echo "$2"; else echo "$1"; fi; }

# scenario_args NAME: bridge-load flags common to every target.
scenario_args() {
  case "$1" in
    fanout)        echo "--subscribers=$(q 1000 200) --channels=1 --events=$(q 2000 400) --rate=1000" ;;
    fanout-max|fanout-tls)
                   echo "--subscribers=$(q 1000 200) --channels=1 --events=$(q 5000 1000) --rate=0" ;;
    fanout-light)  echo "--subscribers=$(q 1000 200) --channels=1 --events=$(q 400 60) --rate=20" ;;
    channels)      echo "--subscribers=$(q 5000 1000) --channels=$(q 5000 1000) --events=$(q 20000 4000) --rate=0" ;;
    idle)          echo "--subscribers=$(q 10000 1000) --events=0 --idle_s=$(q 5 1) --connect_concurrency=500" ;;
    connect-storm) echo "--subscribers=$(q 10000 1000) --events=0 --connect_concurrency=10000" ;;
    # A load every target sustains (200 subscribers x 100 events/s of 4 KiB), so that only the 5%
    # that stop reading fall behind; each of them is sent 8 MiB, more than the kernel buffers
    # (4 MiB send buffer at most) plus the bridge's queue bound hold.
    slow-consumer) echo "--subscribers=$(q 200 100) --channels=1 --events=$(q 2000 400) --rate=100 --slow_fraction=0.05 --payload_bytes=4096" ;;
  esac
}

# Scenarios whose subscribers connect over TLS.
is_tls() { [ "$1" = fanout-tls ]; }

# The bridge's flags per scenario (slow consumers meet a small queue bound).
bridge_args() {
  case "$1" in
    slow-consumer) echo "--max_queue_bytes=262144" ;;
    fanout-tls) echo "--ws_tls_cert_file=$TLS_CERT --ws_tls_key_file=$TLS_KEY" ;;
    *) echo "" ;;
  esac
}

# publish modes per target and scenario
publish_modes() {
  case "$2" in
    bridge) if [ "$1" = channels ]; then echo "unary stream"; else echo "unary"; fi ;;
    nchan) echo "http" ;;
    # The sink lives in the tool's process: 10,000 connections would be 20,000 descriptors in
    # one process, and its RSS would be the tool's.
    sink) case "$1" in idle|connect-storm|fanout-tls) echo "" ;; *) echo "sink" ;; esac ;;
  esac
}

run_load() {  # scenario target publish pids ws_port grpc_port [extra bridge-load flags]
  local scenario=$1 target=$2 publish=$3 pids=$4 ws=$5 grpc=$6 extra=${7:-} out
  if is_tls "$scenario"; then extra="$extra --tls --tls_ca_file=$TLS_CERT"; fi
  # shellcheck disable=SC2046,SC2086
  out=$(timeout 300 "$LOAD_BIN" --scenario="$scenario" --target="$target" --publish="$publish" \
          --ws_port="$ws" --grpc_port="$grpc" --server_pids="$pids" --max_s=240 \
          $(scenario_args "$scenario") $extra ${LOAD_ARGS:-} 2>>"$WORK/load.err") || {
    log "bridge-load failed ($scenario/$target/$publish), status $?"; tail -5 "$WORK/load.err" >&2; return 0; }
  echo "$out" >>"$RESULTS_DIR/$DATE-$scenario.jsonl"
  echo "$out" >>"$RUN_LINES"
  echo "$out" | $PY -c 'import json,sys; r=json.load(sys.stdin); print("  %-14s %-7s %-6s ready %s/%s delivered %s/%s lost %s dup %s  %.0f/s  p50 %.2f p99 %.2f max %.2f ms  cpu %.2f s  errors %s" % (r["scenario"], r["target"], r["publish"], r["connections_ready"], r["subscribers"], r["delivered"], r["expected"], r["lost"], r["duplicated"], r["deliveries_per_sec"], r["p50_ms"], r["p99_ms"], r["max_ms"], r["server_cpu_seconds"], r["errors"]))' >&2
}

for s in $SCENARIOS; do
  if is_tls "$s"; then make_tls_cert; break; fi
done

START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
log "scenarios: $SCENARIOS; targets: $TARGETS; quick=$QUICK; load $START_LOAD"
for scenario in $SCENARIOS; do
  for target in $TARGETS; do
    for publish in $(publish_modes "$scenario" "$target"); do
      case "$target" in
        sink)
          run_load "$scenario" sink sink "" 0 0 ;;
        bridge)
          # shellcheck disable=SC2046
          if start_bridge $(bridge_args "$scenario") ${BRIDGE_ARGS:-}; then
            run_load "$scenario" bridge "$publish" "$BRIDGE_PID" "$WS_PORT" "$GRPC_PORT"
          fi
          stop_bridge ;;
        nchan)
          if is_tls "$scenario"; then
            if start_nchan tls; then
              run_load "$scenario" nchan http "$NCHAN_WORKERS" "$NCHAN_TLS_PORT" 0 \
                "--http_port=$NCHAN_PORT"
            fi
          elif start_nchan; then
            run_load "$scenario" nchan http "$NCHAN_WORKERS" "$NCHAN_PORT" 0
          fi
          stop_nchan ;;
      esac
      sleep 1
    done
  done
done
END_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

$PY "$ROOT/bench/report.py" --load-start="$START_LOAD" --load-end="$END_LOAD" --quick="$QUICK" \
  --server="$BRIDGE_BIN" \
  "$RUN_LINES" >"$RESULTS_DIR/latest.md"
log "wrote $RESULTS_DIR/latest.md and $RESULTS_DIR/$DATE-<scenario>.jsonl"
