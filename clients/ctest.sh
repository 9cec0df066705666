#!/usr/bin/env bash
# Runs one client test for ctest (clients/CMakeLists.txt). Exit 77 (ctest SKIP_RETURN_CODE) only
# when a tool the test needs is absent (scripts/setup.sh --with-browser installs them).
# Usage: clients/ctest.sh npm-ci | typescript | generated | package | browser | python GEN_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
need() {
  command -v "$1" >/dev/null 2>&1 || { echo "SKIP: $1 not found (scripts/setup.sh --with-browser installs it)"; exit 77; }
}
need_bridge() {
  [ -n "${BRIDGE_BIN:-}" ] && [ -x "$BRIDGE_BIN" ] || { echo "BRIDGE_BIN=${BRIDGE_BIN:-} is not an executable; build the gathering-bridge target" >&2; exit 1; }
}
case "${1:-}" in
  npm-ci)
    need node; need npm
    cd "$here/typescript" && exec npm ci --no-audit --no-fund ;;
  typescript)
    need node; need npm; need_bridge
    cd "$here/typescript" && exec npm test ;;
  generated)
    need node; need npm; need protoc
    cd "$here/typescript" && exec npm run check-generated ;;
  package)
    need node; need npm; need_bridge
    cd "$here/typescript" && exec npm run test:package ;;
  browser)
    need node; need npm; need_bridge
    chromium="${CHROMIUM_BIN:-/usr/bin/chromium}"
    [ -x "$chromium" ] || { echo "SKIP: no Chromium at $chromium"; exit 77; }
    cd "$here/typescript" && exec npm run test:browser ;;
  python)
    need_bridge
    gen="${2:?GEN_DIR}"
    "$here/python/generate.sh" "$gen"
    export GATHERING_BRIDGE_GEN_DIR="$gen" PYTHONPATH="$here/python${PYTHONPATH:+:$PYTHONPATH}"
    cd "$here/.." && exec /usr/bin/python3 -m pytest -q clients/python/tests ;;
  *)
    echo "usage: $0 npm-ci|typescript|generated|package|browser|python GEN_DIR" >&2; exit 2 ;;
esac
