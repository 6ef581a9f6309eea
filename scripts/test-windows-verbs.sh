#!/usr/bin/env bash
# The window tests (mpi-window-check: every window kind, epoch and atomic,
# a passive target that computes without calling MPI) over the verbs
# backend on a real soft-RoCE device in the qemu VM (scripts/vm/), with 2
# ranks: the card (here rxe) serves the passive target. Run
# scripts/test.sh first (it builds the test tools), or pass --build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
if [ "${1:-}" = "--build" ]; then
    swift build --build-tests
fi
bin_path="$(swift build --show-bin-path)"
[ -x "$bin_path/mpi-window-check" ] || { echo "no build of mpi-window-check in $bin_path: run scripts/test.sh or pass --build" >&2; exit 1; }
secret="${FABRIC_JOB_SECRET:-test-secret-$(od -An -tx8 -N16 /dev/urandom | tr -d ' \n')}"
exec bash scripts/vm/run-in-vm.sh --timeout "${FABRIC_VM_TIMEOUT:-600}" \
    --env FABRIC_JOB_SECRET="$secret" --env FABRIC_BACKEND=verbs \
    -- bash -c "out=\$('$bin_path/mpirun' --timeout 300 -n 2 '$bin_path/mpi-window-check' 2>&1); status=\$?; echo \"\$out\"
        [ \$status -eq 0 ] && grep -q 'rank 1: windows ok, 2 ranks' <<<\"\$out\" && grep -q 'rank 0: passive target computed' <<<\"\$out\""
