#!/usr/bin/env bash
# This MPI over the verbs backend beside fabric-perf over verbs, on the
# soft-RoCE device of the qemu VM (scripts/vm/; software emulation: the
# ratios count, not the absolute figures). Interleaved repetitions, each:
# mpibench 8 B latency and 1 MiB bandwidth with the registration cache,
# mpibench 1 MiB bandwidth registering per message (FABRIC_REGCACHE=off),
# fabric-perf lat-send 8 B and bw-write 1 MiB. Medians at the end.
#
#   scripts/bench-mpi-verbs.sh [REPETITIONS]        (default 5)
#   OUT=DIR scripts/bench-mpi-verbs.sh 10           also keep every row as JSON lines in DIR
#                                                   (for scripts/bench-report.py), with
#                                                   fabric-perf's raw-TCP reference in the VM
#   SCALE=0.3 scripts/bench-mpi-verbs.sh 10         fewer iterations per repetition
#                                                   (one repetition at scale 1 takes
#                                                   about 215 s under emulation)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--inside" ]; then
    source scripts/setup.sh
    for product in fabric-perf mpibench mpirun; do swift build -c release --product "$product" >/dev/null; done
    share=()
    if [ -n "${OUT:-}" ]; then
        mkdir -p "$OUT"
        OUT=$(cd "$OUT" && pwd)
        share=(--share-out "$OUT" --env OUT="$OUT")
    fi
    exec bash scripts/vm/run-in-vm.sh --timeout "${FABRIC_VM_TIMEOUT:-1800}" "${share[@]}" \
        --env FABRIC_VERBS_ADDRESS=10.77.0.1 --env SCALE="${SCALE:-1}" -- bash scripts/bench-mpi-verbs.sh --inside "${1:-5}"
fi

repetitions="${2:-5}"
scale="${SCALE:-1}"
address="${FABRIC_VERBS_ADDRESS:?}"
bin=.build/release
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export FABRIC_BACKEND=verbs

# With OUT, every row is kept, labelled for the report.
keep() {  # label [raw label]: JSON lines through, labelled, into OUT/verbs.jsonl
    if [ -z "${OUT:-}" ]; then cat; return; fi
    python3 -c 'import json, sys
out = open(sys.argv[1], "a")
for line in sys.stdin:
    if line.startswith("{"):
        row = json.loads(line)
        row["label"] = sys.argv[3] if row.get("backend") == "raw-tcp" and len(sys.argv) > 3 else sys.argv[2]
        out.write(json.dumps(row) + "\n")
        print(line, end="")' "$OUT/verbs.jsonl" "$@"
}
# The rows are labelled after the run, not through a pipe beside it: a
# python started while the ranks measure takes an emulated CPU from them
# (it made 8 B latency 1058 us instead of 122 in one run).
mpibench() {  # test size label [environment...]: the row's median
    local test=$1 size=$2 label=$3 rows
    shift 3
    rows=$(env "$@" timeout 300 "$bin/mpirun" -n 2 "$bin/mpibench" --tests "$test" --sizes "$size" --reps 1 --scale "$scale" --json 2>/dev/null)
    keep "$label" <<<"$rows" | sed -n 's/.*"median":\([0-9.e+-]*\).*/\1/p' | head -1
}
fabric() {  # test size: the verbs row's median (and with OUT, raw TCP in the VM beside it)
    local raw=(--no-raw)
    [ -n "${OUT:-}" ] && raw=()
    local rows
    rows=$(timeout 300 "$bin/fabric-perf" loopback --host "$address" --tests "$1" --sizes "$2" --reps 1 --scale "$scale" "${raw[@]}" --json 2>/dev/null)
    keep "transport (verbs, rxe in the VM)" "raw TCP" <<<"$rows" | grep -v '"raw-tcp"' \
        | sed -n 's/.*"median":\([0-9.e+-]*\).*/\1/p' | head -1
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for ((rep = 1; rep <= repetitions; rep++)); do
    mpibench latency 8 "this MPI (verbs, rxe in the VM)" >>"$work/mpi_lat"
    fabric lat-send 8 >>"$work/fabric_lat"
    mpibench bw 1M "this MPI (verbs, rxe in the VM)" >>"$work/mpi_bw"
    mpibench bw 1M "this MPI (verbs, rxe in the VM, registering per message)" FABRIC_REGCACHE=off >>"$work/mpi_bw_uncached"
    fabric bw-write 1M >>"$work/fabric_bw"
    echo "repetition $rep of $repetitions done" >&2
done
lat_mpi=$(median <"$work/mpi_lat"); lat_fabric=$(median <"$work/fabric_lat")
bw_mpi=$(median <"$work/mpi_bw"); bw_uncached=$(median <"$work/mpi_bw_uncached"); bw_fabric=$(median <"$work/fabric_bw")
echo "MPI over verbs on rxe0 (emulated), $repetitions interleaved repetitions at scale $scale, medians; load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-40s %12s %12s %8s  %s\n' test mpibench fabric-perf ratio goal
printf '%-40s %12.2f %12.2f %8.3f  %s\n' "8 B one-way latency (us)" "$lat_mpi" "$lat_fabric" "$(awk -v a="$lat_mpi" -v b="$lat_fabric" 'BEGIN { print a / b }')" "<= 1.1 x lat-send"
printf '%-40s %12.1f %12.1f %8.3f  %s\n' "1 MiB bandwidth, cached (MB/s)" "$bw_mpi" "$bw_fabric" "$(awk -v a="$bw_mpi" -v b="$bw_fabric" 'BEGIN { print a / b }')" ">= 0.95 x bw-write"
printf '%-40s %12.1f %12.1f %8.3f\n' "1 MiB bandwidth, per-message registration" "$bw_uncached" "$bw_fabric" "$(awk -v a="$bw_uncached" -v b="$bw_fabric" 'BEGIN { print a / b }')"
for name in mpi_lat fabric_lat mpi_bw mpi_bw_uncached fabric_bw; do
    echo "$name per repetition: $(tr '\n' ' ' <"$work/$name")"
done
