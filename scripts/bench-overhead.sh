#!/usr/bin/env bash
# Old build against new: this tree against BASE (by default 7753acc, the
# last commit before the emulator's controls were wired into the engine, for
# what those cost when switched off; BASE=<commit> compares with any other),
# both with no FABRIC_TCP_LINK and no FABRIC_TCP_FAULTS.
#   1. instructions counted by callgrind in the thread that drives both
#      ends (`fabric-perf count`): per 8 B send/recv round trip
#      ((4000 round trips - none) / 4000, sleeping 200 us before each poll so
#      that no poll finds nothing), and per 1 MiB RDMA WRITE ((400 WRITEs -
#      100 WRITEs) / 300, past the sockets' warm-up, polling without pause so
#      that the progress thread never takes the target's side over); medians
#      of REPS (default 5) runs each (REPS=0 skips them)
#   2. fabric-perf medians, the two builds' runs interleaved ROUNDS
#      (default 20) times: 8 B send/recv latency, 1 MiB and 4 MiB WRITE
#      bandwidth
# Needs valgrind (installed if missing). The base is built in a git worktree
# under .build (a full release build the first time: several minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
base=${BASE:-7753acc}
reps=${REPS:-5}
rounds=${ROUNDS:-20}
round_trips=${ROUND_TRIPS:-4000}
writes=${WRITES:-300}
if ! command -v valgrind >/dev/null 2>&1; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get install -y -qq valgrind >/dev/null
fi
unset FABRIC_TCP_LINK FABRIC_TCP_FAULTS
export FABRIC_BACKEND=tcp

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The base has no `count` subcommand: give it this tree's (and the helper it uses).
tree=${BASE_TREE:-$PWD/.build/overhead-base}
if [ ! -d "$tree" ]; then
    git worktree add --detach "$tree" "$base" >/dev/null
else
    git -C "$tree" checkout -q --force --detach "$base"
fi
cp Sources/fabric-perf/InstructionCount.swift Sources/fabric-perf/LoopbackPair.swift "$tree/Sources/fabric-perf/"
sed -i 's/Registration.self\]/Registration.self, InstructionCount.self]/' "$tree/Sources/fabric-perf/FabricPerf.swift"
echo "building the base ($base) and this tree" >&2
(cd "$tree" && swift build -c release --product fabric-perf >/dev/null)
swift build -c release --product fabric-perf >/dev/null
# valgrind cannot read the DWARF 5 debug information: count on copies without it.
cp "$tree/.build/release/fabric-perf" "$work/perf-base"
cp .build/release/fabric-perf "$work/perf-head"
strip -g "$work/perf-base" "$work/perf-head"

# Instructions of the thread that drives both ends (callgrind's thread 1).
instructions() {  # binary round-trips writes settle-us
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$work/cg.out" \
        "$1" count --round-trips "$2" --writes "$3" --settle "$4" >/dev/null 2>&1
    awk '/^(summary|totals):/ { print $2; exit }' "$work/cg.out-01"
    rm -f "$work"/cg.out*
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for rep in $(seq "$reps"); do
    echo "callgrind run $rep of $reps" >&2
    for build in base head; do
        idle=$(instructions "$work/perf-$build" 0 0 200)
        sends=$(instructions "$work/perf-$build" "$round_trips" 0 200)
        warm=$(instructions "$work/perf-$build" 0 100 0)
        stream=$(instructions "$work/perf-$build" 0 $((100 + writes)) 0)
        echo "$(( (sends - idle) / round_trips ))" >>"$work/send-$build"
        echo "$(( (stream - warm) / writes ))" >>"$work/write-$build"
    done
done

for round in $(seq "$rounds"); do
    echo "fabric-perf round $round of $rounds" >&2
    for build in base head; do
        "$work/perf-$build" --tests lat-send,bw-write --sizes 8,1M,4M --reps 1 --no-raw --json 2>/dev/null >"$work/perf.json"
        grep '"test":"lat-send"' "$work/perf.json" | grep '"size":8,' | grep -o '"median":[0-9.e+-]*' | cut -d: -f2 >>"$work/lat-$build"
        grep '"test":"bw-write"' "$work/perf.json" | grep '"size":1048576,' | grep -o '"median":[0-9.e+-]*' | cut -d: -f2 >>"$work/bw-$build"
        grep '"test":"bw-write"' "$work/perf.json" | grep '"size":4194304,' | grep -o '"median":[0-9.e+-]*' | cut -d: -f2 >>"$work/bw4-$build"
    done
done

compare() {  # label unit file-stem
    local b h
    b=$(median <"$work/$3-base")
    h=$(median <"$work/$3-head")
    echo "$1: base $(sort -g "$work/$3-base" | tr '\n' ' '); this tree $(sort -g "$work/$3-head" | tr '\n' ' ')" >>"$work/notes"
    printf '  %-34s %12s %12s  %s' "$1" "$b" "$h" "$(awk -v b="$b" -v h="$h" 'BEGIN { printf "%+.2f%%", (h - b) / b * 100 }')"
    # The two builds ran back to back in each round: the median of the
    # rounds' ratios is immune to this machine's speed switching between
    # rounds (which splits the medians above into two clusters).
    if [ "$2" != "Ir" ]; then
        printf '  median of per-round ratios %s' "$(paste "$work/$3-head" "$work/$3-base" | awk '{ print $1 / $2 }' | median)"
    fi
    printf '\n'
}
echo "this tree ($(git rev-parse --short HEAD)) against the base ($base), emulator controls off; load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '  %-34s %12s %12s  %s\n' "" "base" "this tree" "difference"
if [ "$reps" -gt 0 ]; then
    echo "instructions (callgrind; medians of $reps runs; spread in the notes below)"
    compare "per 8 B send/recv round trip" "Ir" send
    compare "per 1 MiB RDMA WRITE" "Ir" write
fi
echo "fabric-perf (medians of $rounds interleaved runs)"
compare "8 B send/recv one-way latency, us" "us" lat
compare "1 MiB RDMA WRITE bandwidth, MB/s" "MB/s" bw
compare "4 MiB RDMA WRITE bandwidth, MB/s" "MB/s" bw4
echo "all runs, sorted:"
sed 's/^/  /' "$work/notes"
