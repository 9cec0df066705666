#!/usr/bin/env bash
# ctest admin_dashboard_bundle_in_sync: the committed dashboard bundle equals a fresh build.
# Exit 77 (skipped) only when node or npm is missing.
set -euo pipefail
dir="${1:?usage: $0 src/admin/dashboard}"
for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "SKIP: $tool not found (scripts/setup.sh --with-browser installs it)"; exit 77; }
done
cd "$dir"
npm ci --no-audit --no-fund
exec npm run --silent check-built
