#!/usr/bin/env bash
# Installs the Debian packages a task needs; each option adds a group to the base set.
# Idempotent: when everything is present it only checks (about a second) and exits.
# Usage: scripts/setup.sh [--with-tests] [--with-browser] [--with-packaging] [--with-bench]
#                         [--with-fuzz] [--with-dev]
#   (none)            build and run the bridge (make build, make run, the docker build stage)
#   --with-tests      the test suite: GoogleTest, Redis, Python packages, dpkg tools (make test)
#   --with-browser    Chromium and Node for the browser and TypeScript client tests (make test)
#   --with-packaging  the Debian package with CPack (make package)
#   --with-bench      nginx + nchan for the comparison benchmarks (make bench), valgrind and ss
#                     (iproute2) for bench/instructions.sh, redis-server for bench/multinode.sh
#   --with-fuzz       clang and libFuzzer (make fuzz)
#   --with-dev        clang-format (make fmt)
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libboost1.81-dev libabsl-dev libspdlog-dev libhiredis-dev libcpp-jwt-dev libssl-dev
)
tests=(
  libgtest-dev libgmock-dev libbenchmark-dev redis-server openssl clang-format
  python3-grpcio python3-protobuf python3-websockets python3-pytest python3-pytest-asyncio
  python3-yaml dpkg-dev file
)
for arg in "$@"; do
  case "$arg" in
    --with-tests) pkgs+=("${tests[@]}") ;;
    --with-browser) pkgs+=(chromium nodejs npm) ;;
    --with-packaging) pkgs+=(dpkg-dev file) ;;
    --with-bench) pkgs+=(nginx-light libnginx-mod-nchan libbenchmark-dev valgrind redis-server iproute2) ;;
    --with-fuzz) pkgs+=(clang libclang-rt-14-dev) ;;
    --with-dev) pkgs+=(clang-format) ;;
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
# Each package once, in order.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')

echo "setup.sh: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
