#!/usr/bin/env bash
# The soak: random checked operations over several connections that come
# and go, for a bounded time (default 600 s), on loopback:
#   bash scripts/soak.sh [SECONDS] [more fabric-perf soak options]
# FABRIC_BACKEND picks the backend (default here: tcp). Fails on any data
# error, failed or stuck operation, or resident memory that grows by more
# than --leak-limit MiB after the first tenth of the run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
seconds=${1:-600}
shift || true
swift build -c release --product fabric-perf >/dev/null
FABRIC_BACKEND=${FABRIC_BACKEND:-tcp} exec .build/release/fabric-perf soak --seconds "$seconds" "$@"
