#!/usr/bin/env bash
# The test suites under a sanitizer (not in CI by default: set
# FABRIC_SANITIZE=address or thread for scripts/test.sh, or run this):
#   bash scripts/sanitize.sh address|thread [swift test options]
# Builds into .build-<sanitizer>. Tests run one at a time: on two cores,
# many busy-polling tests at once under the thread sanitizer's slowdown
# starve each other. Under the thread sanitizer the two tests it cannot
# host are disabled (they say why): the fault guard's jump out of a
# faulting copy (TSan defers signals) and fork() of a threaded process.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
sanitizer=${1:?usage: scripts/sanitize.sh address|thread}
shift
case "$sanitizer" in address|thread) ;; *) echo "unknown sanitizer: $sanitizer" >&2; exit 2 ;; esac
export FABRIC_JOB_SECRET="${FABRIC_JOB_SECRET:-test-secret-$(od -An -tx8 -N16 /dev/urandom | tr -d ' \n')}"
export FABRIC_TEST_SANITIZER=$sanitizer
# Leaks are reported at exit, and any leak fails the run, except what the
# test runners keep (scripts/lsan-suppressions.txt).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/scripts/lsan-suppressions.txt}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1}"
swift build --build-tests --sanitize="$sanitizer" --scratch-path ".build-$sanitizer"
swift test --skip-build --sanitize="$sanitizer" --scratch-path ".build-$sanitizer" --no-parallel "$@"
