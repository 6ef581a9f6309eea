#!/usr/bin/env bash
# The conformance suite over the verbs backend on a real soft-RoCE device:
# boots a small qemu VM with Debian's kernel and rxe0 (scripts/vm/), and runs
# the host's test build inside it. Run scripts/test.sh first (it builds the
# tests), or pass --build. Extra arguments go to the test runner, e.g.
# --filter "one-sided".
#
# On a host that has an RDMA device already (rdma_rxe loaded and
# `rdma link add rxe0 type rxe netdev IFACE`, or a real card), skip the VM:
#   FABRIC_TEST_VERBS_ADDRESS=<address of IFACE> FABRIC_TEST_VERBS_INTERFACE=IFACE \
#     FABRIC_TEST_BACKENDS=verbs swift test --filter FabricConformanceTests
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

if [ "${1:-}" = "--build" ]; then
    shift
    swift build --build-tests
fi
bin_path="$(swift build --show-bin-path)"
tests="$bin_path/SwiftFabricPackageTests.xctest"
[ -x "$tests" ] || { echo "no test build at $tests: run scripts/test.sh or pass --build" >&2; exit 1; }

secret="${FABRIC_JOB_SECRET:-test-secret-$(od -An -tx8 -N16 /dev/urandom | tr -d ' \n')}"
exec bash scripts/vm/run-in-vm.sh --timeout "${FABRIC_VM_TIMEOUT:-900}" \
    --env FABRIC_JOB_SECRET="$secret" \
    --env FABRIC_TEST_VERBS_ADDRESS=10.77.0.1 \
    --env FABRIC_TEST_VERBS_INTERFACE=va \
    --env FABRIC_TEST_VERBS_DEVICE=rxe0 \
    --env FABRIC_TEST_BACKENDS=verbs \
    -- "$tests" --testing-library swift-testing --filter FabricConformanceTests "$@"
