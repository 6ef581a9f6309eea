#!/usr/bin/env bash
# The main job for now: fabric-perf comparing the tcp backend with raw TCP on
# loopback (two processes, interleaved repetitions, medians). Extra arguments
# go to fabric-perf (try --help), e.g. scripts/bench.sh --json --mode both.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
swift build -c release --product fabric-perf
exec .build/release/fabric-perf "$@"
