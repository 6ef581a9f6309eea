#!/usr/bin/env bash
# Progress with many queue pairs: instructions (callgrind, the thread that
# drives both ends of `fabric-perf count`) of an empty poll and of an 8 B
# send/recv round trip with 1, 16, 64 and 256 queue pairs attached to each
# side's completion queues, the first carrying the traffic, the others idle.
#   per round trip = (run with ROUND_TRIPS round trips - run with none) / ROUND_TRIPS
#   per empty poll = (run with EMPTY_POLLS empty polls - run with none) / EMPTY_POLLS
# Medians of REPS (default 3) runs. Needs valgrind (installed if missing).
# PERF=path measures another build of fabric-perf (one with `count
# --queue-pairs`) instead of this tree's.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
reps=${REPS:-3}
round_trips=${ROUND_TRIPS:-2000}
empty_polls=${EMPTY_POLLS:-20000}
counts=${QUEUE_PAIRS:-"1 16 64 256"}
command -v valgrind >/dev/null 2>&1 || apt-get install -y -qq valgrind >/dev/null
unset FABRIC_TCP_LINK FABRIC_TCP_FAULTS
export FABRIC_BACKEND=tcp
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -n "${PERF:-}" ]; then
    cp "$PERF" "$work/perf"
else
    swift build -c release --product fabric-perf >/dev/null
    cp .build/release/fabric-perf "$work/perf"
fi
strip -g "$work/perf"   # valgrind cannot read DWARF 5

instructions() {  # queue-pairs round-trips empty-polls
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$work/cg.out" \
        "$work/perf" count --queue-pairs "$1" --round-trips "$2" --writes 0 --empty-polls "$3" >/dev/null 2>&1
    awk '/^(summary|totals):/ { print $2; exit }' "$work/cg.out-01"
    rm -f "$work"/cg.out*
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for rep in $(seq "$reps"); do
    for n in $counts; do
        echo "callgrind run $rep of $reps, $n queue pairs" >&2
        base=$(instructions "$n" 0 0)
        sends=$(instructions "$n" "$round_trips" 0)
        empty=$(instructions "$n" 0 "$empty_polls")
        echo "$(( (sends - base) / round_trips ))" >>"$work/rt-$n"
        echo "$(( (empty - base) / empty_polls ))" >>"$work/empty-$n"
    done
done
first=${counts%% *}
rt1=$(median <"$work/rt-$first")
em1=$(median <"$work/empty-$first")
echo "instructions with N queue pairs attached (${PERF:-$(git rev-parse --short HEAD)}; medians of $reps runs; ratio to $first)"
printf '  %6s %14s %7s %14s %7s   %s\n' "N" "empty poll" "ratio" "round trip" "ratio" "runs (empty poll | round trip)"
for n in $counts; do
    em=$(median <"$work/empty-$n")
    rt=$(median <"$work/rt-$n")
    printf '  %6s %14s %7s %14s %7s   %s | %s\n' "$n" "$em" "$(awk -v a="$em" -v b="$em1" 'BEGIN { printf "%.3f", a / b }')" \
        "$rt" "$(awk -v a="$rt" -v b="$rt1" 'BEGIN { printf "%.3f", a / b }')" \
        "$(sort -g "$work/empty-$n" | tr '\n' ' ')" "$(sort -g "$work/rt-$n" | tr '\n' ' ')"
done
