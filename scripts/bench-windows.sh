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
#     (with the transport's own WRITE-and-completion round trip,
#     lat-write-rt, beside it: what of the gap is the transport's)
#   fop_lat 8 B and cas_lat 8 B / fabric-perf lat-fadd 8 B      at most 1.1
#   put_bw and get_bw at 1 MiB and 4 MiB / raw-TCP bw-write     at least 0.9
#   (polling target; the passive target's rows are reported beside them)
# Peers: Debian's MPICH and Open MPI, where installed, run the same tests
# (scripts/osu-style.c) over TCP with a polling target: Open MPI with
# osc pt2pt over the tcp BTL (its default would take shared memory
# between ranks of one host), MPICH with UCX's TCP and no shared memory.
# PEERS=none leaves them out; PEERS=install apt-gets them first (root). A
# peer's run may take PEER_TIMEOUT seconds (default 120); one that prints
# nothing by then counts as failed.
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

PEERS=${PEERS:-auto}
PEER_TIMEOUT=${PEER_TIMEOUT:-120}
source scripts/peer-mpis.sh
find_peers tcp

# run_peer NAME TEST SIZE: that peer's osu-style line, or a "failed" line.
run_peer() {
    local name=$1 test=$2 size=$3 line
    case $name in
        mpich-tcp) line=$(env MPIR_CVAR_NOLOCAL=1 UCX_TLS=self,tcp UCX_NET_DEVICES=lo timeout -k 5 "$PEER_TIMEOUT" \
            mpirun.mpich -n 2 "$OUT/osu-style-mpich" "$test" "$size" "$SCALE" 2>>"$OUT/peers.err" | grep '^osu-style ' || true) ;;
        openmpi-tcp) line=$(timeout -k 5 "$PEER_TIMEOUT" mpirun.openmpi --allow-run-as-root --oversubscribe --mca pml ob1 --mca btl tcp,self \
            --mca osc pt2pt -n 2 "$OUT/osu-style-openmpi" "$test" "$size" "$SCALE" 2>>"$OUT/peers.err" | grep '^osu-style ' || true) ;;
    esac
    if [ -n "$line" ]; then echo "$name ${line#osu-style }"; else echo "$name $test $size failed"; fi
}

for round in $(seq 1 "$REPS"); do
    "$bin/fabric-perf" --tests lat-read,lat-write-rt,lat-fadd,bw-write --sizes 8,1M,4M --reps 1 --mode poll --scale "$SCALE" --json \
        > "$OUT/fabric-perf-$round.json" 2> "$OUT/fabric-perf-$round.log"
    for target in polling passive; do
        "$bin/mpirun" --timeout 600 -n 2 "$bin/mpibench" --tests put_lat,get_lat,fop_lat,cas_lat,acc_lat --sizes 8 \
            --reps 1 --scale "$SCALE" --target "$target" --json > "$OUT/mpibench-lat-$target-$round.json"
        "$bin/mpirun" --timeout 600 -n 2 "$bin/mpibench" --tests put_bw,get_bw,acc_bw --sizes 1M,4M \
            --reps 1 --scale "$SCALE" --target "$target" --json > "$OUT/mpibench-bw-$target-$round.json"
    done
    for peer in "${peers[@]}"; do
        for test in put_lat get_lat fop_lat cas_lat acc_lat; do run_peer "$peer" "$test" 8 >>"$OUT/peers.txt"; done
        for test in put_bw get_bw acc_bw; do
            for size in 1048576 4194304; do run_peer "$peer" "$test" "$size" >>"$OUT/peers.txt"; done
        done
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
import os
if os.path.exists(f"{out}/peers.txt"):
    for line in open(f"{out}/peers.txt"):
        parts = line.split()
        if len(parts) >= 4 and parts[3] != "failed":
            add((parts[0], parts[1], "polling", int(parts[2])), float(parts[3]))
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
ratio = median(("fabric-perf", "lat-write-rt", "tcp", 8)) / median(("fabric-perf", "lat-read", "tcp", 8))
print(f"{'  (transport: lat-write-rt 8 B / lat-read 8 B)':48} {ratio:6.3f}")
ratio = median(("mpibench", "put_lat", "polling", 8)) / median(("fabric-perf", "lat-write-rt", "tcp", 8))
print(f"{'  (put_lat 8 B / lat-write-rt 8 B)':48} {ratio:6.3f}")
figure("fop_lat 8 B / lat-fadd 8 B", ("mpibench", "fop_lat", "polling", 8), ("fabric-perf", "lat-fadd", "tcp", 8), 1.1, True)
figure("cas_lat 8 B / lat-fadd 8 B", ("mpibench", "cas_lat", "polling", 8), ("fabric-perf", "lat-fadd", "tcp", 8), 1.1, True)
for size in (1 << 20, 4 << 20):
    for test in ("put_bw", "get_bw"):
        figure(f"{test} {size >> 20} MiB / raw-TCP bw-write", ("mpibench", test, "polling", size), ("fabric-perf", "bw-write", "raw-tcp", size), 0.9, False)
print()
print("# passive target / polling target, same run")
for test, size in (("put_lat", 8), ("get_lat", 8), ("fop_lat", 8), ("put_bw", 1 << 20), ("get_bw", 1 << 20), ("acc_bw", 1 << 20)):
    print(f"{test} {size:>8}: {median(('mpibench', test, 'passive', size)) / median(('mpibench', test, 'polling', size)):6.3f}")
print()
print("# ours / each peer, same run (below 1: ours faster for latency; above 1: ours faster for bandwidth)")
peers = sorted({key[0] for key in values} - {"fabric-perf", "mpibench"})
for test, size in (("put_lat", 8), ("get_lat", 8), ("fop_lat", 8), ("cas_lat", 8), ("acc_lat", 8), ("put_bw", 1 << 20), ("get_bw", 1 << 20),
                   ("acc_bw", 1 << 20), ("put_bw", 4 << 20), ("get_bw", 4 << 20)):
    ours = median(("mpibench", test, "polling", size))
    print(f"{test} {size:>8}: " + "  ".join(f"{peer} {ours / median((peer, test, 'polling', size)):6.3f}" for peer in peers))
print(f"# outputs in {out}")
PY
