#!/usr/bin/env bash
# The main job: a small MPI job over this package's mpirun (4 ranks on this
# host, over the tcp backend), then mpibench against the transport and its
# raw-TCP reference measured in the same run (scripts/bench-mpi.sh; the
# peers' MPIs too where installed). With arguments, they go to fabric-perf
# instead (try --help), e.g. scripts/bench.sh --json --mode both.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
if [ $# -gt 0 ]; then
    swift build -c release --product fabric-perf
    exec .build/release/fabric-perf "$@"
fi
swift build -c release --product mpirun
swift build -c release --product mpi-example
echo "== a small MPI job: mpirun -n 4 mpi-example"
.build/release/mpirun -n 4 .build/release/mpi-example
echo "== mpibench beside fabric-perf and raw TCP (and the peers' MPIs where installed)"
REPS=${REPS:-5} exec bash scripts/bench-mpi.sh
