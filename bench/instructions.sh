#!/usr/bin/env bash
# Counts the instructions the bridge executes for a small fixed load: the bridge runs under
# valgrind's callgrind, bridge-load (native) connects the subscribers, and instrumentation is
# switched on (`callgrind_control -i on`) only once every subscriber is connected and the bridge
# is idle, and off again when bridge-load has finished: start-up, the handshakes and shutdown
# are not counted; the publishes, the deliveries and the subscribers' closes are. Instruction
# counts (Ir) do not depend on how busy the machine is, which wall and CPU times here do (the
# 2-core machine is shared; its times swing 1.5x): use them for before/after comparisons of the
# hot path, next to bench/run.sh's times.
#
#   bench/instructions.sh                  the loads fanout, channels and light
#   bench/instructions.sh fanout           one load
#   BRIDGE_BIN=/path/gathering-bridge LOAD_BIN=/path/bridge-load bench/instructions.sh
#   BRIDGE_ARGS="--io_threads=1"           extra gathering-bridge flags
#   REDIS=1 bench/instructions.sh          broker mode: a throwaway redis-server on a free port
#                                          (fresh per load) and --broker=redis://127.0.0.1:<port>
#   INSTR_LABEL=before                     label copied into the JSON line (default: the binary's
#                                          `--version` line)
#   INSTR_FANOUT / INSTR_CHANNELS / INSTR_LIGHT   the bridge-load flags of each load (below)
#   INSTR_PUBLISH=stream                   publish mode (default unary)
#   INSTR_TOP=10                           how many functions to list
#   INSTR_DUMPS=dir                        keep each callgrind dump as dir/<label>-<load>-<time>.cg
#   bench/instructions.sh --diff A.cg B.cg  the functions whose self Ir differ most between two
#                                          kept dumps (B - A), the binaries' paths left out
#   bench/instructions.sh --calls NAME A.cg...  calls to the functions whose name contains NAME
#                                          (e.g. sendmsg: the socket writes) in each dump
#
# Loads (valgrind makes the bridge ~50x slower; each load takes about a minute here):
#   fanout    100 subscribers on 1 channel, 2,000 events as fast as accepted (200,000 deliveries)
#   channels  500 subscribers on 500 channels (one each), 2,000 events round-robin
#   light     100 subscribers on 1 channel, 300 events at 10/s: each event is written before the
#             next is published (one frame per write), so its count does not depend on batching
#
# Prints per load the Ir total, Ir per delivery and per published event, the socket writes
# (sendmsg calls) and the top functions by self cost (callgrind_annotate --inclusive=no), and
# appends bridge-load's JSON line with ir_total / ir_per_delivery / ir_per_event / label added to
# bench/results/<date>-instructions.jsonl. The totals vary with thread timing under valgrind
# (how many frames each write carries, how often gRPC's mutexes spin): the same binary twice
# agrees within 1-2 % here, so run each side at least twice and read --diff for small changes
# (functions doing fixed work per event count the same every time). Needs valgrind and ss
# (scripts/setup.sh --with-bench) and, for REDIS=1, redis-server.
set -euo pipefail

. "$(dirname "$0")/paths.sh"
LOADS=${*:-"fanout channels light"}
FANOUT_ARGS=${INSTR_FANOUT:-"--subscribers=100 --channels=1 --events=2000 --rate=0"}
CHANNELS_ARGS=${INSTR_CHANNELS:-"--subscribers=500 --channels=500 --events=2000 --rate=0"}
LIGHT_ARGS=${INSTR_LIGHT:-"--subscribers=100 --channels=1 --events=300 --rate=10"}
PUBLISH=${INSTR_PUBLISH:-unary}
TOP=${INSTR_TOP:-10}
# bridge-load holds the connected subscribers this long before publishing: the window in which
# instrumentation is switched on (checked below).
IDLE_S=20
PY=/usr/bin/python3
DATE=$(date +%F)

# --calls NAME dump...: the calls to functions whose name contains NAME (callgrind's calls= lines).
count_calls() {
  $PY - "$@" <<'EOF'
import re, sys
pat = sys.argv[1]
for path in sys.argv[2:]:
    names, total, callee = {}, 0, None
    for line in open(path, errors="replace"):
        m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if m:
            if m.group(3):
                names[m.group(2)] = m.group(3)
            if m.group(1) == "cfn":
                callee = names.get(m.group(2), "")
            continue
        if line.startswith("calls=") and callee is not None and pat in callee:
            total += int(line.split("=")[1].split()[0])
    print("%s: %d calls to *%s*" % (path, total, pat))
EOF
}
if [ "${1:-}" = --calls ]; then
  [ $# -ge 3 ] || { echo "usage: bench/instructions.sh --calls NAME A.cg..." >&2; exit 2; }
  shift
  count_calls "$@"
  exit 0
fi

# --diff A B: self Ir per function (callgrind_annotate), largest differences first.
if [ "${1:-}" = --diff ]; then
  [ $# = 3 ] || { echo "usage: bench/instructions.sh --diff A.cg B.cg" >&2; exit 2; }
  $PY - "$2" "$3" "${INSTR_TOP:-10}" <<'EOF'
import re, subprocess, sys

def self_ir(path):
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    costs, total = {}, 0
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+) \([ \d.]+%\)\s+(.*)$", line)
        if not m:
            continue
        ir, name = int(m.group(1).replace(",", "")), m.group(2)
        if name == "PROGRAM TOTALS":
            total = ir
            continue
        name = re.sub(r" \[[^\]]*\]$", "", name)  # the object's path differs between builds
        costs[name] = costs.get(name, 0) + ir
    return total, costs

ta, a = self_ir(sys.argv[1])
tb, b = self_ir(sys.argv[2])
print("total: %s -> %s (%+.2f %%)" % (format(ta, ","), format(tb, ","), 100.0 * (tb - ta) / max(ta, 1)))
rows = sorted(set(a) | set(b), key=lambda n: -abs(b.get(n, 0) - a.get(n, 0)))
print("%15s %15s %13s  function (self Ir)" % ("A", "B", "B - A"))
for n in rows[: int(sys.argv[3])]:
    print("%15s %15s %+13s  %s" % (format(a.get(n, 0), ","), format(b.get(n, 0), ","),
                                   format(b.get(n, 0) - a.get(n, 0), ","), n[:160]))
EOF
  exit 0
fi

for tool in valgrind callgrind_control callgrind_annotate ss; do
  command -v "$tool" >/dev/null || { echo "$tool not found (scripts/setup.sh --with-bench)" >&2; exit 1; }
done
[ -x "$BRIDGE_BIN" ] || { echo "no $BRIDGE_BIN: build first" >&2; exit 1; }
[ -x "$LOAD_BIN" ] || { echo "no $LOAD_BIN: build first" >&2; exit 1; }
for l in $LOADS; do
  case "$l" in fanout|channels|light) ;; *) echo "unknown load: $l (fanout | channels | light)" >&2; exit 2 ;; esac
done
LABEL=${INSTR_LABEL:-$("$BRIDGE_BIN" --version 2>/dev/null | head -1 || echo "$BRIDGE_BIN")}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
mkdir -p "$RESULTS_DIR"

WORK=$(mktemp -d /tmp/gathering-instr.XXXXXX)
PID=""
LOAD_PID=""
REDIS_PID=""
cleanup() {
  [ -z "$LOAD_PID" ] || kill "$LOAD_PID" 2>/dev/null || true
  [ -z "$PID" ] || kill -KILL "$PID" 2>/dev/null || true
  [ -z "$REDIS_PID" ] || kill "$REDIS_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "${INSTR_KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[instr $(date +%T)] $*" >&2; }
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json_field() { $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
now() { date +%s.%N; }

start_redis() {
  local port
  port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
    >"$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && { REDIS_URL=redis://127.0.0.1:$port; return 0; }
    sleep 0.1
  done
  log "redis-server did not start"; tail -5 "$WORK/redis.log" >&2; return 1
}

stop_redis() {
  [ -n "$REDIS_PID" ] || return 0
  kill "$REDIS_PID" 2>/dev/null || true
  wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=""
}

run_load() {  # name
  local name=$1 args subscribers broker=() out=$WORK/cg.$1 t_conn t_on t0 t1 last quiet
  case "$name" in fanout) args=$FANOUT_ARGS ;; channels) args=$CHANNELS_ARGS ;; light) args=$LIGHT_ARGS ;; esac
  subscribers=$(echo "$args" | sed -n 's/.*--subscribers=\([0-9]*\).*/\1/p')
  if [ "${REDIS:-0}" = 1 ]; then start_redis; broker=(--broker="$REDIS_URL"); fi

  rm -f "$WORK/ready.json" "$out"*
  # shellcheck disable=SC2086
  # LD_BIND_NOW: the dynamic linker resolves every symbol at start-up, not on first call
  # inside the counted window.
  LD_BIND_NOW=1 valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
    "$BRIDGE_BIN" --host=127.0.0.1 --ws_port=0 --grpc_port=0 --ready_file="$WORK/ready.json" \
    --log_level=warn "${broker[@]}" ${BRIDGE_ARGS:-} >"$WORK/bridge-$name.log" 2>&1 &
  PID=$!
  for _ in $(seq 1200); do
    [ -s "$WORK/ready.json" ] && break
    kill -0 "$PID" 2>/dev/null || { log "bridge exited at start"; tail -20 "$WORK/bridge-$name.log" >&2; return 1; }
    sleep 0.1
  done
  [ -s "$WORK/ready.json" ] || { log "bridge not ready in 120 s"; return 1; }
  local ws grpc
  ws=$(json_field "$WORK/ready.json" ws_port)
  grpc=$(json_field "$WORK/ready.json" grpc_port)

  t0=$(now)
  # shellcheck disable=SC2086
  timeout 900 "$LOAD_BIN" --scenario="instructions-$name" --target=bridge --publish="$PUBLISH" \
    --ws_port="$ws" --grpc_port="$grpc" --server_pids="$PID" --max_s=800 \
    --connect_timeout_s=300 --idle_s="$IDLE_S" --drain_quiet_s=30 --drain_timeout_s=400 \
    $args >"$WORK/load-$name.json" 2>"$WORK/load-$name.err" &
  LOAD_PID=$!
  # Every subscriber connected (and so, soon after, acknowledged) ...
  until [ "$(ss -Htn state established "( sport = :$ws )" | wc -l)" -ge "$subscribers" ]; do
    kill -0 "$LOAD_PID" 2>/dev/null || { log "bridge-load ended before connecting"; cat "$WORK/load-$name.err" >&2; return 1; }
    sleep 0.2
  done
  t_conn=$(now)
  # ... and the bridge idle (its subscription acks written): two quiet 0.3 s windows.
  quiet=0
  last=$(cpu_ticks "$PID")
  while [ "$quiet" -lt 2 ]; do
    sleep 0.3
    local c
    c=$(cpu_ticks "$PID")
    if [ $((c - last)) -le 1 ]; then quiet=$((quiet + 1)); else quiet=0; fi
    last=$c
  done
  callgrind_control -i on "$PID" >"$WORK/ctl-on.log" 2>&1 || { log "callgrind_control -i on failed"; cat "$WORK/ctl-on.log" >&2; return 1; }
  t_on=$(now)
  # bridge-load was ready no earlier than ~0.2 s before t_conn and publishes IDLE_S after that.
  if ! $PY -c 'import sys; sys.exit(0 if float(sys.argv[2]) - float(sys.argv[1]) < float(sys.argv[3]) - 2 else 1)' \
      "$t_conn" "$t_on" "$IDLE_S"; then
    log "instrumentation came on too late (after publishing may have started): not counted"
    return 1
  fi
  wait "$LOAD_PID" || { log "bridge-load failed"; tail -5 "$WORK/load-$name.err" >&2; LOAD_PID=""; return 1; }
  LOAD_PID=""
  t1=$(now)
  callgrind_control -i off "$PID" >/dev/null 2>&1 || true
  callgrind_control -d "$name" "$PID" >"$WORK/ctl-dump.log" 2>&1 || { log "callgrind_control -d failed"; cat "$WORK/ctl-dump.log" >&2; return 1; }
  kill -TERM "$PID" 2>/dev/null || true
  for _ in $(seq 600); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=""
  stop_redis

  # The dump made with -d is <out>.1 (counts since instrumentation came on); the file written
  # at exit holds only what ran after it, with instrumentation off.
  local dump=$out.1
  [ -s "$dump" ] || dump=$(ls -1 "$out".* 2>/dev/null | head -1)
  [ -n "$dump" ] && [ -s "$dump" ] || { log "no callgrind dump"; ls -l "$WORK" >&2; return 1; }
  if [ -n "${INSTR_DUMPS:-}" ]; then
    mkdir -p "$INSTR_DUMPS"
    cp "$dump" "$INSTR_DUMPS/$(echo "$LABEL" | tr -c 'A-Za-z0-9._\n-' _)-$name-$(date +%H%M%S).cg"
  fi
  local total
  # `totals:` (the file's last line); its `summary:` line stays 0 with --instr-atstart=no.
  total=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$dump" | tail -1)
  [ -n "$total" ] || { log "no totals: line in $dump"; return 1; }
  $PY - "$WORK/load-$name.json" "$total" "$LABEL" "$(cut -d' ' -f1-3 /proc/loadavg)" \
      "$RESULTS_DIR/$DATE-instructions.jsonl" "$BRIDGE_BIN" "${BRIDGE_ARGS:-} ${broker[*]}" \
      "$t0" "$t_on" "$t1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
total = int(sys.argv[2])
d = max(int(r["delivered"]), 1)
p = max(int(r["published"]), 1)
r.update({"label": sys.argv[3], "bridge_bin": sys.argv[6], "bridge_args": sys.argv[7].strip(),
          "ir_total": total, "ir_per_delivery": total / d, "ir_per_event": total / p,
          "valgrind_wall_seconds": float(sys.argv[10]) - float(sys.argv[9]),
          "load_at_end": sys.argv[4]})
with open(sys.argv[5], "a") as f:
    f.write(json.dumps(r) + "\n")
print("%s (%s): %s/%s delivered, lost %s, dup %s, %s published; Ir %s = %.0f per delivery, "
      "%.0f per event; %.0f s under valgrind, load %s" % (
          r["scenario"], sys.argv[3], r["delivered"], r["expected"], r["lost"], r["duplicated"],
          r["published"], format(total, ","), total / d, total / p,
          float(sys.argv[10]) - float(sys.argv[9]), sys.argv[4]))
EOF
  count_calls sendmsg "$dump" | sed 's/^.*: /  socket writes: /'
  echo "  top $TOP functions (self Ir):"
  callgrind_annotate --inclusive=no "$dump" 2>/dev/null |
    awk -v top="$TOP" '/file:function/ { on = 1; next } on && /^-+$/ { next }
                       on && NF && n < top { print "   " substr($0, 1, 240); n++ }'
  echo
}

log "loads: $LOADS; bridge $BRIDGE_BIN ($LABEL); args ${BRIDGE_ARGS:-}${REDIS:+ (REDIS=$REDIS)}; load $(cut -d' ' -f1-3 /proc/loadavg)"
for l in $LOADS; do run_load "$l"; done
