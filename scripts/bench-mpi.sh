#!/usr/bin/env bash
# This project's MPI (mpibench) beside fabric-perf (the transport and its
# raw-TCP reference) and the peers' MPIs running the same loops
# (scripts/osu-style.c built with each MPI's mpicc), interleaved round by
# round, in one run. Prints one table of medians over the rounds, with
# ratios to the transport and to raw TCP, and keeps every raw output.
#
#   scripts/bench-mpi.sh                 # REPS=5 rounds, 2 ranks
#   REPS=10 SCALE=0.5 scripts/bench-mpi.sh
#   RANKS="4 8" scripts/bench-mpi.sh     # also ring and all-pairs with 4 and 8 ranks
#   PEERS=none scripts/bench-mpi.sh      # without the peers' MPIs
#   PEERS=install scripts/bench-mpi.sh   # installs Debian's MPICH and Open MPI first (root)
#
# Peers: Debian's MPICH (mpicc.mpich) and Open MPI (mpicc.openmpi), where
# installed, each over TCP (shared memory off, as ../shared/baselines.md
# forces them) and with their defaults (shared memory, labelled "shm"):
# this MPI has no shared-memory path, ranks on one host talk through the
# fabric. OUT=DIR keeps the outputs (default: a fresh temporary directory);
# the report with plots goes to REPORT=DIR (default OUT/report).
# PEER_MODES="tcp" runs the peers over TCP only (default "tcp shm").
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-5}
SCALE=${SCALE:-0.3}
RANKS=${RANKS:-}
SIZES=${SIZES:-8,1K,64K,1M,4M}
OUT=${OUT:-$(mktemp -d /tmp/bench-mpi.XXXXXX)}
# Seconds a peer's run may take: busy-polling MPICH with more ranks than
# cores prints its figure, then may hang in MPI_Finalize until killed.
PEER_TIMEOUT=${PEER_TIMEOUT:-120}
mkdir -p "$OUT"

swift build -c release --product mpibench >/dev/null
swift build -c release --product mpirun >/dev/null
swift build -c release --product fabric-perf >/dev/null
bin=$(swift build -c release --show-bin-path)

PEERS=${PEERS:-auto}   # none: this MPI, fabric-perf and raw TCP only; install: apt-get installs both first
source scripts/peer-mpis.sh
find_peers "${PEER_MODES:-tcp shm}"

# run_peer NAME RANKS TEST SIZE: one osu-style line of that peer.
run_peer() {
    local name=$1 ranks=$2 test=$3 size=$4
    case $name in
        mpich-tcp) MPIR_CVAR_NOLOCAL=1 UCX_TLS=self,tcp UCX_NET_DEVICES=lo timeout "$PEER_TIMEOUT" mpirun.mpich -n "$ranks" "$OUT/osu-style-mpich" "$test" "$size" "$SCALE" ;;
        mpich-shm) timeout "$PEER_TIMEOUT" mpirun.mpich -n "$ranks" "$OUT/osu-style-mpich" "$test" "$size" "$SCALE" ;;
        openmpi-tcp) timeout "$PEER_TIMEOUT" mpirun.openmpi --allow-run-as-root --oversubscribe --mca pml ob1 --mca btl tcp,self -n "$ranks" "$OUT/osu-style-openmpi" "$test" "$size" "$SCALE" ;;
        openmpi-shm) timeout "$PEER_TIMEOUT" mpirun.openmpi --allow-run-as-root --oversubscribe -n "$ranks" "$OUT/osu-style-openmpi" "$test" "$size" "$SCALE" ;;
    esac 2>>"$OUT/peers.err" | tee -a "$OUT/peers.log" | grep '^osu-style ' | sed "s/^osu-style /$name $ranks /" \
        || echo "$name $ranks $test $size failed - -"
}

bytes() { python3 -c "import sys; t=sys.argv[1]; m={'K':1<<10,'M':1<<20}; print(int(t[:-1])*m[t[-1]] if t[-1] in m else int(t))" "$1"; }

echo "# bench-mpi: $REPS rounds, scale $SCALE, sizes $SIZES, peers: ${peers[*]:-none}; outputs in $OUT" >&2
for round in $(seq 1 "$REPS"); do
    echo "round $round of $REPS (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    "$bin/fabric-perf" --tests lat-send,bw-write --sizes "$SIZES" --reps 1 --scale "$SCALE" --json >>"$OUT/fabric.jsonl" 2>/dev/null
    "$bin/mpirun" -n 2 "$bin/mpibench" --tests latency,bw,bibw,mbw_mr --sizes "$SIZES" --reps 1 --scale "$SCALE" --json >>"$OUT/ours.jsonl"
    for ranks in $RANKS; do
        "$bin/mpirun" -n "$ranks" "$bin/mpibench" --tests ring,allpairs --sizes 8 --reps 1 --scale "$SCALE" --json >>"$OUT/ours.jsonl"
    done
    for peer in "${peers[@]}"; do
        for test in latency bw bibw mbw_mr; do
            for size in ${SIZES//,/ }; do run_peer "$peer" 2 "$test" "$(bytes "$size")" >>"$OUT/peers.txt"; done
        done
        for ranks in $RANKS; do
            for test in ring allpairs; do run_peer "$peer" "$ranks" "$test" 8 >>"$OUT/peers.txt"; done
        done
    done
done

python3 - "$OUT" <<'PY'
import json, statistics, sys, collections
out = sys.argv[1]
rows = collections.defaultdict(list)   # (who, ranks, test, size) -> values
p99 = collections.defaultdict(list)
units = {}
fabric_name = {"lat-send": "latency", "bw-write": "bw"}
for line in open(f"{out}/fabric.jsonl"):
    r = json.loads(line)
    who = "fabric-perf " + ("raw-tcp" if r["backend"] == "raw-tcp" else r["test"])
    key = (who, 2, fabric_name[r["test"]], r["size"])
    value = r["median"]
    if r["unit"] == "MB/s" or r["metric"] == "bandwidth":
        units[key] = "MB/s"
    else:
        units[key] = "us one-way"
    rows[key].append(value)
for line in open(f"{out}/ours.jsonl"):
    r = json.loads(line)
    key = ("ours (tcp)", r["ranks"], r["test"], r["size"])
    rows[key].append(r["median"])
    units[key] = r["unit"]
    if r.get("p99StepMicroseconds") is not None:
        p99[key].append(r["p99StepMicroseconds"])
    rows[("ours copied/msg", r["ranks"], r["test"], r["size"])].append(r["copiedBytesPerMessage"])
    rows[("ours alloc/msg", r["ranks"], r["test"], r["size"])].append(r["allocationsPerMessage"])
try:
    # The peers' lines also become JSON lines for scripts/bench-report.py.
    with open(f"{out}/peers.jsonl", "w") as peers_json:
        for line in open(f"{out}/peers.txt"):
            f = line.split()
            if len(f) < 6 or f[4] == "failed" or not f[1].isdigit():
                continue
            key = (f[0], int(f[1]), f[2], int(f[3]))
            rows[key].append(float(f[4]))
            units[key] = " ".join(f[5:7]) if f[5] == "us" else f[5]
            if "p99" in f:
                p99[key].append(float(f[f.index("p99") + 1]))
            peers_json.write(json.dumps({"mpi": f[0], "ranks": int(f[1]), "test": f[2], "size": int(f[3]),
                                         "median": float(f[4]), "unit": units[key]}) + "\n")
except FileNotFoundError:
    pass

def med(values):
    return statistics.median(values) if values else None

def spread(values):
    m = med(values)
    return (max(values) - min(values)) / m * 100 if values and m else 0

tests = ["latency", "bw", "bibw", "mbw_mr", "ring", "allpairs"]
keys = sorted({(k[1], k[2], k[3]) for k in rows if k[0] == "ours (tcp)"}, key=lambda k: (k[0], tests.index(k[1]), k[2]))
print(f"| ranks | test | size | ours (tcp) | spread | copied/msg | alloc/msg | fabric-perf | raw TCP | ours/fabric | ours/raw | peers (median; spread) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for ranks, test, size in keys:
    ours = rows[("ours (tcp)", ranks, test, size)]
    unit = units[("ours (tcp)", ranks, test, size)]
    fabric_key = "lat-send" if test == "latency" else "bw-write"
    fabric = rows.get((f"fabric-perf {fabric_key}", 2, test, size), []) if test in ("latency", "bw") and ranks == 2 else []
    raw = rows.get(("fabric-perf raw-tcp", 2, test, size), []) if test in ("latency", "bw") and ranks == 2 else []
    def ratio(a, b):
        return f"{med(a) / med(b):.3f}" if a and b and med(b) else "-"
    peer_text = []
    for peer in ["mpich-tcp", "openmpi-tcp", "mpich-shm", "openmpi-shm"]:
        values = rows.get((peer, ranks, test, size))
        if values:
            extra = f", p99 {med(p99[(peer, ranks, test, size)]):.0f} us" if p99.get((peer, ranks, test, size)) else ""
            peer_text.append(f"{peer} {med(values):.2f} ({spread(values):.0f}%{extra})")
    extra = f", p99 {med(p99[('ours (tcp)', ranks, test, size)]):.0f} us" if p99.get(("ours (tcp)", ranks, test, size)) else ""
    print(f"| {ranks} | {test} | {size} | {med(ours):.2f} {unit}{extra} | {spread(ours):.0f}% | "
          f"{med(rows[('ours copied/msg', ranks, test, size)]):.1f} | {med(rows[('ours alloc/msg', ranks, test, size)]):.3f} | "
          f"{med(fabric) if fabric else '-'} | {med(raw) if raw else '-'} | {ratio(ours, fabric)} | {ratio(ours, raw)} | {'; '.join(peer_text) or '-'} |")
PY
# The same results as a report with plots (scripts/bench-report.py);
# REPORT=DIR puts it there, REPORT=none skips it.
if [ "${REPORT:-}" != none ]; then
    python3 scripts/bench-report.py "$OUT" --output "${REPORT:-$OUT/report}" --title "${REPORT_TITLE:-MPI and transport against raw TCP and the peers}" \
        --note "Made by \`REPS=$REPS SCALE=$SCALE SIZES=$SIZES scripts/bench-mpi.sh\`: every series measured in the same run, round by round (peers: ${peers[*]:-none})."
fi
