# Sourced by the bench scripts: where the binaries and results are. BUILD_DIR (default
# build/release, relative to the project root unless absolute), BRIDGE_BIN, LOAD_BIN and
# BENCH_RESULTS override them.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build/release}
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR=$ROOT/$BUILD_DIR ;; esac
BRIDGE_BIN=${BRIDGE_BIN:-$BUILD_DIR/src/app/gathering-bridge}
LOAD_BIN=${LOAD_BIN:-$BUILD_DIR/bench/load/bridge-load}
RESULTS_DIR=${BENCH_RESULTS:-$ROOT/bench/results}
