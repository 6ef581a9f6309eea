#!/usr/bin/env bash
# fabric-perf over the verbs backend beside perftest on the same soft-RoCE
# device, inside the qemu VM of scripts/vm/ (software emulation: absolute
# figures are the emulator's; the ratios are what counts). Repetitions are
# interleaved: in each, perftest then fabric-perf for 8 B send latency, then
# for 1 MiB RDMA WRITE bandwidth. Medians over repetitions at the end.
#
#   scripts/bench-verbs.sh [REPETITIONS]        (default 7)
#
# On a host with an RDMA device, run the part inside the VM directly:
#   FABRIC_VERBS_ADDRESS=<address> FABRIC_VERBS_DEVICE=<device> scripts/bench-verbs.sh --inside 7
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--inside" ]; then
    source scripts/setup.sh
    swift build -c release --product fabric-perf
    exec bash scripts/vm/run-in-vm.sh --timeout "${FABRIC_VM_TIMEOUT:-1800}" \
        --env FABRIC_VERBS_ADDRESS=10.77.0.1 --env FABRIC_VERBS_DEVICE=rxe0 \
        -- bash scripts/bench-verbs.sh --inside "${1:-7}"
fi

repetitions="${2:-7}"
address="${FABRIC_VERBS_ADDRESS:?set FABRIC_VERBS_ADDRESS to the RDMA interface address}"
device="${FABRIC_VERBS_DEVICE:-rxe0}"
perf=.build/release/fabric-perf
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export FABRIC_BACKEND=verbs

# One perftest run: server in the background, client against it; prints the
# client's result line for the size. perftest calibrates its clock at start
# and gives up when the samples scatter ("Correlation coefficient"), which
# happens under emulation now and then: such a run is tried again. Every
# process is bounded in time, so a failed client cannot leave the server
# waiting forever.
perftest() {
    local tool=$1 size=$2; shift 2
    local attempt line=""
    for attempt in 1 2 3; do
        timeout 120 "$tool" -d "$device" -R -F -s "$size" "$@" >"$work/server.txt" 2>&1 &
        local server=$!
        sleep 1
        timeout 100 "$tool" -d "$device" -R -F -s "$size" "$@" "$address" >"$work/client.txt" 2>&1 || true
        wait "$server" || true
        line=$(awk -v s="$size" '$1 == s { print; exit }' "$work/client.txt")
        [ -n "$line" ] && break
        echo "$tool attempt $attempt gave no result: $(grep -v '^[ -]' "$work/client.txt" | tail -2 | tr '\n' ' ')" >&2
    done
    echo "$line"
}

# fabric-perf's median for one test and size (one repetition, no raw TCP).
fabric() {
    timeout 300 "$perf" loopback --host "$address" --tests "$1" --sizes "$2" --reps 1 --no-raw --json 2>/dev/null \
        | sed -n 's/.*"median":\([0-9.e+-]*\).*/\1/p' | head -1
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for ((rep = 1; rep <= repetitions; rep++)); do
    # ib_send_lat: t_typical (the median) in column 5, one-way microseconds.
    perftest ib_send_lat 8 -n 2000 | awk 'NF { print $5 }' >>"$work/ib_send_lat"
    fabric lat-send 8 >>"$work/fabric_send_lat"
    # ib_write_bw --report_gbits: average Gb/s in column 4; to MB/s (1e6 B/s).
    perftest ib_write_bw 1048576 -n 200 --report_gbits | awk 'NF { print $4 * 125 }' >>"$work/ib_write_bw"
    fabric bw-write 1048576 >>"$work/fabric_write_bw"
    echo "repetition $rep of $repetitions done" >&2
done

send_ib=$(median <"$work/ib_send_lat")
send_fabric=$(median <"$work/fabric_send_lat")
write_ib=$(median <"$work/ib_write_bw")
write_fabric=$(median <"$work/fabric_write_bw")
echo "verbs on $device ($address), $repetitions interleaved repetitions, medians; load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-28s %12s %12s %8s  %s\n' test perftest fabric-perf ratio goal
printf '%-28s %12.2f %12.2f %8.3f  %s\n' "send latency 8 B (us)" "$send_ib" "$send_fabric" \
    "$(awk -v a="$send_fabric" -v b="$send_ib" 'BEGIN { print a / b }')" "<= 1.1 x ib_send_lat"
printf '%-28s %12.1f %12.1f %8.3f  %s\n' "WRITE bandwidth 1 MiB (MB/s)" "$write_ib" "$write_fabric" \
    "$(awk -v a="$write_fabric" -v b="$write_ib" 'BEGIN { print a / b }')" ">= 0.9 x ib_write_bw"
# Repetitions are interleaved pairs: the median of the per-pair ratios is
# less disturbed by the emulator's drift than the ratio of the medians.
paired() { paste "$1" "$2" | awk 'NF == 2 && $2 > 0 { print $1 / $2 }' | median; }
echo "median of per-repetition ratios: send latency $(paired "$work/fabric_send_lat" "$work/ib_send_lat"), WRITE bandwidth $(paired "$work/fabric_write_bw" "$work/ib_write_bw")"
for name in ib_send_lat fabric_send_lat ib_write_bw fabric_write_bw; do
    echo "$name per repetition: $(tr '\n' ' ' <"$work/$name")"
done
