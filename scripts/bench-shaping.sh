#!/usr/bin/env bash
# How closely the software NIC's emulated link (FABRIC_TCP_LINK) meets its
# settings: fabric-perf over the tcp backend on loopback, shaped and
# unshaped runs interleaved round by round, medians over the rounds.
#   bandwidth: 1 MiB RDMA WRITE at 1, 5, 10 and 25 Gbit/s, as a fraction of
#              the configured rate (and the unshaped figure: loopback's limit)
#   latency:   8 B send/recv one-way latency with 2, 10 and 50 us added,
#              busy-polling, and 10 us and 1 ms added with blocking waits:
#              the achieved addition is shaped minus unshaped
# ROUNDS (default 7) sets the rounds; each fabric-perf run has its own
# interleaved repetitions.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
swift build -c release --product fabric-perf >/dev/null
perf=.build/release/fabric-perf
rounds=${ROUNDS:-7}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export FABRIC_BACKEND=tcp

# One fabric-perf run; prints its median.
measure() {  # link test size mode
    FABRIC_TCP_LINK="$1" "$perf" --tests "$2" --sizes "$3" --mode "$4" --reps 5 --no-raw --json 2>/dev/null \
        | grep -o '"median":[0-9.e+-]*' | head -1 | cut -d: -f2
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

rates="1 5 10 25"
poll_latencies="2us 10us 50us"
block_latencies="10us 1ms"
for round in $(seq "$rounds"); do
    echo "round $round of $rounds" >&2
    measure "" bw-write 1M poll >>"$work/bw-unshaped"
    for rate in $rates; do
        measure "rate=${rate}Gbit/s" bw-write 1M poll >>"$work/bw-$rate"
    done
    measure "" lat-send 8 poll >>"$work/lat-poll-unshaped"
    for latency in $poll_latencies; do
        measure "latency=$latency" lat-send 8 poll >>"$work/lat-poll-$latency"
    done
    measure "" lat-send 8 block >>"$work/lat-block-unshaped"
    for latency in $block_latencies; do
        measure "latency=$latency" lat-send 8 block >>"$work/lat-block-$latency"
    done
done

microseconds() {  # 2us | 1ms -> us
    case "$1" in
        *us) echo "${1%us}" ;;
        *ms) awk -v v="${1%ms}" 'BEGIN { print v * 1000 }' ;;
    esac
}

echo "emulated link, tcp backend on loopback; medians over $rounds interleaved rounds; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "bandwidth, 1 MiB RDMA WRITE (MB/s = 1e6 B/s)"
unshaped=$(median <"$work/bw-unshaped")
printf '  %-10s %10s  %s\n' "unshaped" "$unshaped" "(loopback's limit here)"
for rate in $rates; do
    achieved=$(median <"$work/bw-$rate")
    printf '  %-10s %10s  %s\n' "${rate}Gbit/s" "$achieved" \
        "$(awk -v a="$achieved" -v r="$rate" 'BEGIN { c = r * 1e9 / 8 / 1e6; printf "%.1f%% of %.0f MB/s", a / c * 100, c }')"
done
for mode in poll block; do
    echo
    echo "added one-way latency, 8 B send/recv, $mode (us)"
    base=$(median <"$work/lat-$mode-unshaped")
    printf '  %-10s %10s\n' "unshaped" "$base"
    latencies=$poll_latencies
    [ "$mode" = block ] && latencies=$block_latencies
    for latency in $latencies; do
        shaped=$(median <"$work/lat-$mode-$latency")
        printf '  %-10s %10s  %s\n' "+$latency" "$shaped" \
            "$(awk -v s="$shaped" -v b="$base" -v l="$(microseconds "$latency")" 'BEGIN { a = s - b; printf "added %.2f us of %.2f (error %+.2f us, %+.1f%%)", a, l, a - l, (a - l) / l * 100 }')"
    done
done
