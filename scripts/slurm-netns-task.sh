#!/usr/bin/env bash
# A task wrapper for srun: runs the rank inside the network namespace of
# the node Slurm started it on (scripts/slurm-netns.sh makes them). The
# PMI-2 descriptor srun hands down (PMI_FD, a Unix socket) keeps working
# across the switch; only the network view changes. PMIx does not: its
# server is reached over the host's network.
#
#   srun -N3 -n6 --mpi=pmi2 scripts/slurm-netns-task.sh PROGRAM [ARGUMENTS]
set -euo pipefail
: "${SLURMD_NODENAME:?not started by srun (SLURMD_NODENAME is not set)}"
exec ip netns exec "fabric-slurm-$SLURMD_NODENAME" "$@"
