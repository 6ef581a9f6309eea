#!/usr/bin/env bash
# The registration cache's effect on MPI rendezvous bandwidth and latency,
# interleaved in one run: mpibench with the cache, mpibench registering per
# message (FABRIC_REGCACHE=off), mpibench from the library's registered
# memory (--pool), and fabric-perf's bw-write (the transport alone), REPS
# rounds of each in turn; then the cache's own costs
# (fabric-perf regcache). Medians over rounds, with the spread.
#   scripts/bench-regcache.sh              # REPS=10, tcp
#   REPS=12 SIZES=64K,1M scripts/bench-regcache.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-10}
SIZES=${SIZES:-64K,1M,4M}
SCALE=${SCALE:-0.5}
export FABRIC_BACKEND=${FABRIC_BACKEND:-tcp}
swift build -c release --product mpibench >/dev/null
swift build -c release --product mpirun >/dev/null
swift build -c release --product fabric-perf >/dev/null
bin=.build/release
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for round in $(seq 1 "$REPS"); do
    "$bin/mpirun" -n 2 "$bin/mpibench" --tests bw,latency --sizes "$SIZES" --reps 1 --scale "$SCALE" --json \
        | sed 's/^/cached /' >>"$out/rows"
    FABRIC_REGCACHE=off "$bin/mpirun" -n 2 "$bin/mpibench" --tests bw,latency --sizes "$SIZES" --reps 1 --scale "$SCALE" --json \
        | sed 's/^/per-message /' >>"$out/rows"
    "$bin/mpirun" -n 2 "$bin/mpibench" --pool --tests bw,latency --sizes "$SIZES" --reps 1 --scale "$SCALE" --json \
        | sed 's/^/pool /' >>"$out/rows"
    "$bin/fabric-perf" --tests bw-write,lat-write --sizes "$SIZES" --reps 1 --json 2>/dev/null \
        | sed 's/^/fabric-perf /' >>"$out/rows"
done
python3 - "$out/rows" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, _, text = line.partition(" ")
    try:
        row = json.loads(text)
    except ValueError:
        continue
    test = row.get("test")
    if label == "fabric-perf":
        test = {"bw-write": "bw", "lat-write": "latency"}.get(test)
        if test is None:
            continue
        if row.get("backend") == "raw-tcp":
            label = "raw"
    rows.setdefault((test, row["size"]), {}).setdefault(label, []).append((row["median"], row.get("allocationsPerMessage")))
print(f"rendezvous with the registration cache, with registration per message, from pool memory, and fabric-perf (bw-write, lat-write), {len(next(iter(rows.values()))['cached'])} interleaved rounds")
print("bw in MB/s (higher is better), latency in us; raw is fabric-perf's raw-TCP reference")
print(f"{'test':8} {'size':>8} {'cached':>10} {'per-msg':>10} {'pool':>10} {'fabric':>10} {'raw':>10} {'cached/fabric':>14} {'per-msg/fabric':>15} {'cached/pool':>12} {'alloc/msg cached':>17}")
for (test, size), by in sorted(rows.items()):
    med = {k: statistics.median(v for v, _ in by[k]) for k in by}
    spread = {k: (min(v for v, _ in by[k]) / med[k], max(v for v, _ in by[k]) / med[k]) for k in by}
    allocs = statistics.median(a for _, a in by["cached"] if a is not None) if any(a is not None for _, a in by["cached"]) else float("nan")
    f = med.get("fabric-perf", float("nan"))
    raw = med.get("raw", float("nan"))
    pool = med.get("pool", float("nan"))
    print(f"{test:8} {size:>8} {med['cached']:>10.1f} {med['per-message']:>10.1f} {pool:>10.1f} {f:>10.1f} {raw:>10.1f} {med['cached']/f:>14.3f} {med['per-message']/f:>15.3f} {med['cached']/pool:>12.3f} {allocs:>17.4f}"
          f"   spread cached {spread['cached'][0]:.2f}-{spread['cached'][1]:.2f}")
PY
"$bin/fabric-perf" regcache --reps "$REPS"
