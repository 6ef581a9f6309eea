#!/usr/bin/env bash
# Runs the libFuzzer targets (docs/fuzzing.md) for a bounded time each:
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]    (default: 30 s each, every target)
# Builds fabric-fuzz with -sanitize=fuzzer,address into .build-fuzz, starts
# each target from its committed corpus (Tests/FuzzCorpus/TARGET) and adds
# what it finds to a scratch corpus. A crash fails the script and leaves
# the input in .build-fuzz/crashes/TARGET: fix it, then copy the input into
# the corpus, where the test suite replays it for good.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(frames handshake pmi1 pmi2 proxy)
swift build --product fabric-fuzz --scratch-path .build-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING 2>&1 | grep -v "Cannot export local symbol" | tail -3
binary=.build-fuzz/debug/fabric-fuzz
status=0
for target in "${targets[@]}"; do
    scratch=.build-fuzz/corpus/$target
    crashes=.build-fuzz/crashes/$target
    mkdir -p "$scratch" "$crashes"
    echo "fuzzing $target for $seconds s"
    # Inputs up to 4 KiB; a hang is an input that takes over 10 s.
    if FABRIC_FUZZ_TARGET=$target "$binary" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
        -artifact_prefix="$crashes/" -print_final_stats=1 "$scratch" "Tests/FuzzCorpus/$target" \
        >"$crashes/log" 2>&1; then
        grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done" "$crashes/log" | sed "s/^/  $target: /"
    else
        echo "  $target: FAILED; the input is in $crashes; the log's end:"
        tail -30 "$crashes/log"
        status=1
    fi
done
exit $status
