#!/usr/bin/env bash
# The allocation gates: builds the benchmarks package (Benchmarks/, release)
# and runs its benchmarks of the tcp fabric against the thresholds stored in
# Benchmarks/Thresholds/: the data-path benchmarks (8 B send/recv round trip,
# 64 KiB WRITE, an empty completion-queue poll) must make no heap allocation
# beyond what the harness itself makes per iteration (16, which the
# benchmark `harness-alone`, a loop that does nothing, is held to): p90 of
# the iterations, each of 1000 operations. Only the allocation counts gate; the wall-clock times (and instructions, where the machine
# counts them) are printed for reading. Exits non-zero on a regression.
# The threshold files are written by hand: "no allocation" is the project's
# rule, not a measured figure, and a file that named a timing would gate on
# it. Not in CI by default (scripts/test.sh runs it with FABRIC_BENCH_GATES=1).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cd Benchmarks
export FABRIC_BACKEND=tcp
unset FABRIC_TCP_LINK FABRIC_TCP_FAULTS FABRIC_TCP_PROFILE
# The run prints each benchmark's figures; the check compares the
# allocation counts with the thresholds (the only metric stored there).
swift package benchmark thresholds check --no-progress
