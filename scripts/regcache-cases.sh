#!/usr/bin/env bash
# The registration cache's cases (mpi-regcache-check) in 2-rank jobs, run
# where stale registrations can be seen: inside the verbs VM, where rxe pins
# pages as a card does (scripts/test-regcache-verbs.sh runs this there; on
# the host, over tcp, the test suite runs the same cases one by one).
#
# Every case must pass. Over verbs, every case that changes the mapping
# under a buffer must also deliver stale bytes with
# FABRIC_REGCACHE_INVALIDATION=off: the proof that the cache's invalidation
# is what keeps those bytes right.
#   bash scripts/regcache-cases.sh BIN_DIR [BACKEND]
set -uo pipefail
bin="$1"
backend="${2:-tcp}"
export FABRIC_BACKEND="$backend"
# Cases that replace the pages under a cached range.
changing=(malloc-free munmap-fixed fixed-over partial-munmap mremap-grow mremap-shrink mremap-onto dontneed heap-trim)
# Correctness cases: the pages stay (a correct hit), or nothing is cached.
# madv-free is here: MADV_FREE lets the kernel keep the pages, and it keeps
# pinned ones, so no stale byte can be shown; the cache still drops the
# entry (the counters say so).
steady=(reuse small-chunk madv-free fork file-backed storm pool)
failures=0

job() {  # environment assignments, then case names
    local environment=()
    while [[ "${1:-}" == *=* ]]; do environment+=("$1"); shift; done
    env "${environment[@]}" timeout 300 "$bin/mpirun" -n 2 --timeout 280 "$bin/mpi-regcache-check" "$@" 2>&1
}

expect_ok() {  # label, output, case names
    local label=$1 output=$2
    shift 2
    for name in "$@"; do
        if grep -q "rank 1: $name ok.*backend $backend" <<<"$output"; then
            echo "ok      $name: $label"
        else
            echo "FAILED  $name: $label"
            failures=$((failures + 1))
        fi
    done
}

output=$(job "${changing[@]}" "${steady[@]}") || { echo "$output" | tail -6; failures=$((failures + 1)); }
expect_ok "passes with invalidation" "$output" "${changing[@]}" "${steady[@]}"
output=$(job FABRIC_REGISTRATION_CAP=3M cap) || { echo "$output" | tail -4; failures=$((failures + 1)); }
expect_ok "eviction under the cap, and a refusal naming it" "$output" cap
output=$(job FABRIC_MEMORY_MONITOR=off no-monitor) || { echo "$output" | tail -4; failures=$((failures + 1)); }
expect_ok "registered per use without a monitor" "$output" no-monitor
if [ "$backend" = verbs ]; then
    output=$(job FABRIC_REGCACHE_INVALIDATION=off "${changing[@]}") || { echo "$output" | tail -6; failures=$((failures + 1)); }
    for name in "${changing[@]}"; do
        if finding=$(grep -m1 "rank 1: $name STALE" <<<"$output"); then
            echo "ok      $name: stale bytes with invalidation off (${finding#*off: })"
        else
            echo "FAILED  $name: no stale bytes with invalidation off"
            failures=$((failures + 1))
        fi
    done
fi
echo "registration cache cases over $backend: $failures failed"
[ "$failures" = 0 ]
