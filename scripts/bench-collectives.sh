#!/usr/bin/env bash
# This project's collectives (mpibench's barrier, allreduce, bcast and
# alltoall) beside the peers' MPIs running the same loops
# (scripts/osu-style.c built with each MPI's mpicc), interleaved round by
# round, in one run. Prints one table of medians over the rounds and the
# figures the collectives are held to; keeps every raw output.
#
#   scripts/bench-collectives.sh                  # REPS=10 rounds, SCALE=0.1
#   CONFIGS="2 8" scripts/bench-collectives.sh    # a subset of the configurations
#   SIZES4=64K,1M scripts/bench-collectives.sh    # the 4-rank sizes
#   PEERS=none scripts/bench-collectives.sh       # without the peers' MPIs
#   PEERS=install scripts/bench-collectives.sh    # installs Debian's MPICH and Open MPI first (root)
#
# Configurations (CONFIGS, default "2 4 8"), each a rank count with its
# tests, every collective timed per operation (mean and 99th percentile of
# the slowest rank):
#   2: latency, barrier and allreduce at 8 B. Figure: allreduce / latency
#      (one-way), ours at most 1.6; barrier and allreduce are also the
#      base of the 8-rank / 2-rank ratios.
#   4: allreduce, bcast and alltoall at SIZES4 (default 1M; a list such as
#      64K,1M), alltoall with SIZE bytes per block.
#   8: barrier, allreduce and ring at 8 B. The ring gives the time of one
#      exchange step: its figure is the sum over ranks of each rank's
#      messages per second, one exchange per rank per step, so
#      step µs = ranks / (msg/s) × 1e6. Figures: time per operation at most
#      2 × 3 ring steps (log2 8 = 3 rounds, each allowed twice a step), ours,
#      and p99 per operation under 2 ms.
#
# Peers: Debian's MPICH (mpicc.mpich) and Open MPI (mpicc.openmpi), where
# installed, over TCP (shared memory off, as in scripts/bench-mpi.sh);
# PEER_MODES="tcp shm" adds their defaults. A peer's run may take
# PEER_TIMEOUT seconds (default 300: busy-polling MPICH with 8 ranks on 2
# cores is slow); one that prints no figure in that time, or fails, is
# counted as failed, not fatal. MPICH over UCX's TCP can hang in
# MPI_Finalize after printing its figure, so a run is stopped PEER_GRACE
# seconds (default 10) after its figure and keeps it (listed in
# OUT/peers-killed.txt). OUT=DIR keeps the outputs (default: a fresh
# temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-10}
SCALE=${SCALE:-0.1}
SIZES4=${SIZES4:-1M}
CONFIGS=${CONFIGS:-2 4 8}
PEER_MODES=${PEER_MODES:-tcp}
PEER_TIMEOUT=${PEER_TIMEOUT:-300}
PEER_GRACE=${PEER_GRACE:-10}
OUT=${OUT:-$(mktemp -d /tmp/bench-collectives.XXXXXX)}

# config_tests RANKS / config_sizes RANKS: one configuration's tests and sizes.
config_tests() {
    case $1 in
        2) echo latency,barrier,allreduce ;;
        4) echo allreduce,bcast,alltoall ;;
        8) echo barrier,allreduce,ring ;;
        *) echo "bench-collectives: unknown configuration '$1' in CONFIGS (2, 4 or 8)" >&2; return 2 ;;
    esac
}
config_sizes() { if [ "$1" = 4 ]; then echo "$SIZES4"; else echo 8; fi; }
for config in $CONFIGS; do config_tests "$config" >/dev/null; done
mkdir -p "$OUT"

swift build -c release --product mpibench >/dev/null
swift build -c release --product mpirun >/dev/null
bin=$(swift build -c release --show-bin-path)

PEERS=${PEERS:-auto}   # none: this MPI only; install: apt-get installs both first
source scripts/peer-mpis.sh
find_peers "$PEER_MODES"

# peer_exec NAME RANKS TEST SIZE: becomes that peer's timed-out mpirun
# (exec, so that the caller's $! is timeout's and can stop the run).
peer_exec() {
    local name=$1 ranks=$2 test=$3 size=$4
    case $name in
        mpich-tcp) exec env MPIR_CVAR_NOLOCAL=1 UCX_TLS=self,tcp UCX_NET_DEVICES=lo timeout -k 10 "$PEER_TIMEOUT" mpirun.mpich -n "$ranks" "$OUT/osu-style-mpich" "$test" "$size" "$SCALE" ;;
        mpich-shm) exec timeout -k 10 "$PEER_TIMEOUT" mpirun.mpich -n "$ranks" "$OUT/osu-style-mpich" "$test" "$size" "$SCALE" ;;
        openmpi-tcp) exec timeout -k 10 "$PEER_TIMEOUT" mpirun.openmpi --allow-run-as-root --oversubscribe --mca pml ob1 --mca btl tcp,self -n "$ranks" "$OUT/osu-style-openmpi" "$test" "$size" "$SCALE" ;;
        openmpi-shm) exec timeout -k 10 "$PEER_TIMEOUT" mpirun.openmpi --allow-run-as-root --oversubscribe -n "$ranks" "$OUT/osu-style-openmpi" "$test" "$size" "$SCALE" ;;
    esac
}

# run_peer NAME RANKS TEST SIZE: one osu-style line of that peer, or a
# "failed" line. Its figure is printed before MPI_Finalize, so a run still
# alive PEER_GRACE seconds after it is stopped and keeps the figure.
run_peer() {
    local name=$1 ranks=$2 test=$3 size=$4 run="$OUT/peer-run.out" ticks=0 printed="" stopped=""
    # Emptied here, not only by the child's redirection: the loop below may
    # read it before the child opens it, and must not see the last run's line.
    : >"$run"
    peer_exec "$@" >"$run" 2>>"$OUT/peers.err" &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        # Every 0.2 s, with builtins only beside sleep: the peer's ranks
        # have every core.
        if [ -z "$printed" ]; then
            local line
            while IFS= read -r line; do
                if [[ $line == "osu-style "* ]]; then printed=$ticks; break; fi
            done <"$run"
        fi
        if [ -n "$printed" ] && [ -z "$stopped" ] && [ $((ticks - printed)) -ge $((PEER_GRACE * 5)) ]; then
            kill "$pid" 2>/dev/null || true
            stopped=1
            echo "$name $ranks $test $size" >>"$OUT/peers-killed.txt"
        fi
        sleep 0.2
        ticks=$((ticks + 1))
    done
    wait "$pid" || true
    cat "$run" >>"$OUT/peers.log"
    grep '^osu-style ' "$run" | sed "s/^osu-style /$name $ranks /" || echo "$name $ranks $test $size failed - -"
}

bytes() { python3 -c "import sys; t=sys.argv[1]; m={'K':1<<10,'M':1<<20}; print(int(t[:-1])*m[t[-1]] if t[-1] in m else int(t))" "$1"; }

echo "# bench-collectives: $REPS rounds, scale $SCALE, configurations $CONFIGS, 4-rank sizes $SIZES4, peers: ${peers[*]:-none}; outputs in $OUT" >&2
for round in $(seq 1 "$REPS"); do
    echo "round $round of $REPS (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    for ranks in $CONFIGS; do
        tests=$(config_tests "$ranks")
        sizes=$(config_sizes "$ranks")
        "$bin/mpirun" -n "$ranks" "$bin/mpibench" --tests "$tests" --sizes "$sizes" --reps 1 --scale "$SCALE" --json >>"$OUT/ours.jsonl"
        for peer in "${peers[@]}"; do
            for test in ${tests//,/ }; do
                for size in ${sizes//,/ }; do run_peer "$peer" "$ranks" "$test" "$(bytes "$size")" >>"$OUT/peers.txt"; done
            done
        done
    done
done

python3 - "$OUT" "${peers[@]}" <<'PY'
import json, statistics, sys, collections, os
out, peers = sys.argv[1], sys.argv[2:]
rows = collections.defaultdict(list)   # (who, ranks, test, size) -> per-round values, µs
p99 = collections.defaultdict(list)    # the same -> per-round p99 µs (slowest rank)
failed = collections.Counter()

def step_us(ranks, value):
    # ring: value = sum over ranks of messages/s, one exchange per rank per
    # step, so one step takes ranks / value seconds.
    return ranks / value * 1e6 if value > 0 else float("inf")

if os.path.exists(f"{out}/ours.jsonl"):
    for line in open(f"{out}/ours.jsonl"):
        r = json.loads(line)
        key = ("ours", r["ranks"], r["test"], r["size"])
        rows[key].append(step_us(r["ranks"], r["median"]) if r["test"] == "ring" else r["median"])
        if r.get("p99StepMicroseconds") is not None:
            p99[key].append(r["p99StepMicroseconds"])
if os.path.exists(f"{out}/peers.txt"):
    for line in open(f"{out}/peers.txt"):
        f = line.split()
        if len(f) < 5 or not f[1].isdigit():
            continue
        key = (f[0], int(f[1]), f[2], int(f[3]))
        if f[4] == "failed":
            failed[key] += 1
            continue
        value = float(f[4])
        rows[key].append(step_us(key[1], value) if key[2] == "ring" else value)
        if "p99" in f:
            p99[key].append(float(f[f.index("p99") + 1]))
killed = collections.Counter()
if os.path.exists(f"{out}/peers-killed.txt"):
    for line in open(f"{out}/peers-killed.txt"):
        f = line.split()
        killed[(f[0], int(f[1]), f[2], int(f[3]))] += 1

def med(values):
    return statistics.median(values) if values else None

def spread(values):
    m = med(values)
    return (max(values) - min(values)) / m * 100 if values and m else 0

def cell(key):
    values = rows.get(key)
    if not values:
        return "failed" if failed[key] else "-", "-", "-"
    note = f" ({failed[key]} failed)" if failed[key] else ""
    return f"{med(values):.2f}{note}", f"{spread(values):.0f}%", f"{med(p99[key]):.1f}" if p99.get(key) else "-"

units = {"latency": "µs one-way", "ring": "µs per step"}
tests = ["latency", "barrier", "allreduce", "bcast", "alltoall", "ring"]
whos = ["ours"] + peers
keys = sorted({k[1:] for k in list(rows) + list(failed)}, key=lambda k: (k[0], tests.index(k[1]) if k[1] in tests else 99, k[2]))
header = "| ranks | test | size | unit | ours | spread | p99 µs |" + "".join(f" {p} | spread | p99 µs |" for p in peers) + " ours/best peer |"
print(header)
print("|" + "---|" * (header.count("|") - 1))
for ranks, test, size in keys:
    cells = []
    for who in whos:
        cells += cell((who, ranks, test, size))
    ours = med(rows.get(("ours", ranks, test, size), []))
    best = min((med(rows[(p, ranks, test, size)]) for p in peers if rows.get((p, ranks, test, size))), default=None)
    ratio = f"{ours / best:.2f}" if ours is not None and best else "-"
    print(f"| {ranks} | {test} | {size} | {units.get(test, 'µs per op')} | " + " | ".join(cells) + f" | {ratio} |")
print()
print("Medians over the rounds; spread = (max - min) / median; p99 = the slowest rank's 99th-percentile operation"
      " (ring: step), median over the rounds. Ring: step µs = ranks / (sum over ranks of msg/s) × 1e6, per round."
      " Ratios below are ratios of medians.")
if killed:
    print("Peer runs stopped after printing their figure (hung in MPI_Finalize): "
          + ", ".join(f"{k[0]} {k[1]} ranks {k[2]} {k[3]}: {n}" for k, n in sorted(killed.items())))
print()

def ratio(who, a, b):
    x, y = med(rows.get((who,) + a, [])), med(rows.get((who,) + b, []))
    return x / y if x is not None and y else None

def show(value, target=None, text=""):
    if value is None:
        return "-"
    verdict = "" if target is None else (" (target " + text + ": " + ("met" if target(value) else "NOT met") + ")")
    return f"{value:.2f}{verdict}"

print("Figures:")
line = [f"ours {show(ratio('ours', (2, 'allreduce', 8), (2, 'latency', 8)), lambda v: v <= 1.6, '≤ 1.6')}"]
line += [f"{p} {show(ratio(p, (2, 'allreduce', 8), (2, 'latency', 8)))}" for p in peers]
print("- 2 ranks, allreduce 8 B per op / latency 8 B one-way: " + "; ".join(line))
for test in ["barrier", "allreduce"]:
    line = []
    for who in whos:
        figure = ratio(who, (8, test, 8), (8, "ring", 8))
        tail = ""
        if p99.get((who, 8, test, 8)):
            worst = med(p99[(who, 8, test, 8)])
            tail = f", p99 {worst:.0f} µs" + (" (target < 2000 µs: " + ("met" if worst < 2000 else "NOT met") + ")" if who == "ours" else "")
        line.append(f"{who} {show(figure, (lambda v: v <= 6) if who == 'ours' else None, '≤ 2 × 3 = 6')}{tail}")
    print(f"- 8 ranks, {test} 8 B per op / ring step: " + "; ".join(line))
for test in ["barrier", "allreduce"]:
    line = [f"{who} {show(ratio(who, (8, test, 8), (2, test, 8)))}" for who in whos]
    print(f"- {test} 8 B, 8 ranks / 2 ranks per op: " + "; ".join(line))
PY
