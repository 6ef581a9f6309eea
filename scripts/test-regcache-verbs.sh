#!/usr/bin/env bash
# The registration cache's cases over the verbs backend on a real soft-RoCE
# device in the qemu VM (scripts/vm/), where a stale registration sends
# stale bytes as on a card: every case passes, and every case that changes
# a mapping fails on stale bytes with invalidation switched off
# (scripts/regcache-cases.sh). Run scripts/test.sh first (it builds the
# test tools), or pass --build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
if [ "${1:-}" = "--build" ]; then
    swift build --build-tests
fi
bin_path="$(swift build --show-bin-path)"
[ -x "$bin_path/mpi-regcache-check" ] || { echo "no build of mpi-regcache-check in $bin_path: run scripts/test.sh or pass --build" >&2; exit 1; }
secret="${FABRIC_JOB_SECRET:-test-secret-$(od -An -tx8 -N16 /dev/urandom | tr -d ' \n')}"
exec bash scripts/vm/run-in-vm.sh --timeout "${FABRIC_VM_TIMEOUT:-600}" \
    --env FABRIC_JOB_SECRET="$secret" \
    -- bash scripts/regcache-cases.sh "$bin_path" verbs
