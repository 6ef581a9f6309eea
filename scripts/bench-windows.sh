#!/usr/bin/env bash
# One-sided windows (mpibench's put_lat, get_lat, fop_lat, cas_lat,
# acc_lat, put_bw, get_bw, acc_bw) beside fabric-perf's READ and
# fetch-and-add round trips and its raw-TCP stream, interleaved round by
# round in one run, with the target polling and with a passive target
# (computing, calling nothing). Prints a table of medians over the rounds
# with the spread, and the figures windows are held to; keeps every raw
# output.
#
#   scripts/bench-windows.sh              # REPS=10 rounds, SCALE=0.2
#   REPS=3 SCALE=0.05 scripts/bench-windows.sh
#
# Figures (tcp backend, loopback):
#   put_lat 8 B (put + flush) / fabric-perf lat-read 8 B       at most 1.15
#   fop_lat 8 B and cas_lat 8 B / fabric-perf lat-fadd 8 B      at most 1.1
#   put_bw and get_bw at 1 MiB and 4 MiB / raw-TCP bw-write     at least 0.9
#   (polling target; the passive target's rows are reported beside them)
# OUT=DIR keeps the outputs (default: a fresh temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-10}
SCALE=${SCALE:-0.2}
OUT=${OUT:-$(mktemp -d /tmp/bench-windows.XXXXXX)}
mkdir -p "$OUT"

swift build -c release --product mpibench >/dev/null
swift build -c release --product mpirun >/dev/null
swift build -c release --product fabric-perf >/dev/null
bin=$(swift build -c release --show-bin-path)

for round in $(seq 1 "$REPS"); do
    "$bin/fabric-perf" --tests lat-read,lat-fadd,bw-write --sizes 8,1M,4M --reps 1 --mode poll --scale "$SCALE" --json \
        > "$OUT/fabric-perf-$round.json" 2> "$OUT/fabric-perf-$round.log"
    for target in polling passive; do
        "$bin/mpirun" --timeout 600 -n 2 "$bin/mpibench" --tests put_lat,get_lat,fop_lat,cas_lat,acc_lat --sizes 8 \
            --reps 1 --scale "$SCALE" --target "$target" --json > "$OUT/mpibench-lat-$target-$round.json"
        "$bin/mpirun" --timeout 600 -n 2 "$bin/mpibench" --tests put_bw,get_bw,acc_bw --sizes 1M,4M \
            --reps 1 --scale "$SCALE" --target "$target" --json > "$OUT/mpibench-bw-$target-$round.json"
    done
    echo "round $round of $REPS done" >&2
done

python3 - "$OUT" "$REPS" <<'PY'
import glob, json, statistics, sys
out, reps = sys.argv[1], int(sys.argv[2])
values = {}
def add(key, value):
    values.setdefault(key, []).append(value)
for path in glob.glob(f"{out}/fabric-perf-*.json"):
    for line in open(path):
        row = json.loads(line)
        add(("fabric-perf", row["test"], row["backend"], row["size"]), row["median"])
for path in glob.glob(f"{out}/mpibench-*.json"):
    target = "passive" if "-passive-" in path else "polling"
    for line in open(path):
        row = json.loads(line)
        add(("mpibench", row["test"], target, row["size"]), row["median"])
def median(key):
    return statistics.median(values[key]) if key in values else float("nan")
def spread(key):
    v = values.get(key, [])
    m = median(key)
    return (max(v) - min(v)) / m * 100 if v and m else float("nan")
print(f"# medians over {reps} interleaved rounds (spread: highest - lowest, % of the median)")
print(f"{'source':12} {'test':9} {'target/backend':15} {'size':>8} {'median':>10} {'spread%':>8}")
for key in sorted(values):
    print(f"{key[0]:12} {key[1]:9} {key[2]:15} {key[3]:>8} {median(key):10.2f} {spread(key):8.0f}")
print()
print("# figures (polling target)")
def figure(name, numerator, denominator, limit, below):
    ratio = median(numerator) / median(denominator)
    met = ratio <= limit if below else ratio >= limit
    print(f"{name:48} {ratio:6.3f}  ({'at most' if below else 'at least'} {limit}: {'met' if met else 'NOT met'})")
figure("put_lat 8 B / lat-read 8 B", ("mpibench", "put_lat", "polling", 8), ("fabric-perf", "lat-read", "tcp", 8), 1.15, True)
figure("fop_lat 8 B / lat-fadd 8 B", ("mpibench", "fop_lat", "polling", 8), ("fabric-perf", "lat-fadd", "tcp", 8), 1.1, True)
figure("cas_lat 8 B / lat-fadd 8 B", ("mpibench", "cas_lat", "polling", 8), ("fabric-perf", "lat-fadd", "tcp", 8), 1.1, True)
for size in (1 << 20, 4 << 20):
    for test in ("put_bw", "get_bw"):
        figure(f"{test} {size >> 20} MiB / raw-TCP bw-write", ("mpibench", test, "polling", size), ("fabric-perf", "bw-write", "raw-tcp", size), 0.9, False)
print()
print("# passive target / polling target, same run")
for test, size in (("put_lat", 8), ("get_lat", 8), ("fop_lat", 8), ("put_bw", 1 << 20), ("get_bw", 1 << 20), ("acc_bw", 1 << 20)):
    print(f"{test} {size:>8}: {median(('mpibench', test, 'passive', size)) / median(('mpibench', test, 'polling', size)):6.3f}")
print(f"# outputs in {out}")
PY
