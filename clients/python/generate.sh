#!/usr/bin/env bash
# Generates the Python protobuf + gRPC stubs for proto/gathering/bridge/v1/*.proto with Debian's
# protoc and grpc_python_plugin (not grpc_tools, whose bundled protoc is too old).
# Usage: clients/python/generate.sh [OUT_DIR]   (default: clients/python/gathering_bridge/gen)
# The protos: $GATHERING_BRIDGE_PROTO_DIR, else ../../proto from here.
# The package finds them there, or in $GATHERING_BRIDGE_GEN_DIR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto="$(cd "${GATHERING_BRIDGE_PROTO_DIR:-$here/../../proto}" && pwd)"
out="${1:-$here/gathering_bridge/gen}"
plugin="${GRPC_PYTHON_PLUGIN:-/usr/bin/grpc_python_plugin}"
command -v protoc >/dev/null || { echo "generate.sh: protoc not found (apt-get install protobuf-compiler)" >&2; exit 2; }
[ -x "$plugin" ] || { echo "generate.sh: $plugin not found (apt-get install protobuf-compiler-grpc)" >&2; exit 2; }
mkdir -p "$out"
tmp="$(mktemp -d "$out/.gen.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
protoc -I "$proto" --python_out="$tmp" --pyi_out="$tmp" --grpc_out="$tmp" \
  --plugin=protoc-gen-grpc="$plugin" \
  $(cd "$proto" && find gathering -name '*.proto' | sort)
# Swap in atomically enough for concurrent test runs: replace the package tree in one rename.
rm -rf "$out/gathering.old"
[ -d "$out/gathering" ] && mv "$out/gathering" "$out/gathering.old"
mv "$tmp/gathering" "$out/gathering"
rm -rf "$out/gathering.old"
echo "generate.sh: stubs in $out/gathering/bridge/v1" >&2
