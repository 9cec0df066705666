#!/usr/bin/env bash
# Installs every Debian package the build, the tests and the benchmarks need.
# Idempotent: when everything is present it only checks (about a second) and exits.
# Usage: scripts/setup.sh [--with-browser] [--with-bench] [--with-fuzz]
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build ccache pkg-config clang-format
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libboost1.81-dev libabsl-dev libspdlog-dev libgtest-dev libgmock-dev libbenchmark-dev
  libhiredis-dev libcpp-jwt-dev libssl-dev redis-server openssl
  python3-grpcio python3-protobuf python3-websockets python3-pytest python3-pytest-asyncio
)
for arg in "$@"; do
  case "$arg" in
    --with-browser) pkgs+=(chromium nodejs npm) ;;
    --with-bench) pkgs+=(nginx-light libnginx-mod-nchan) ;;
    --with-fuzz) pkgs+=(clang libclang-rt-14-dev) ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  # nodejs/npm may come from elsewhere (the image ships node 20); accept any on PATH.
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup.sh: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
