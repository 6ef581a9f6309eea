#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs every test suite
# on the host, a 20 s soak (FABRIC_SOAK_SECONDS), the fuzz targets for 30 s
# each (FABRIC_FUZZ_SECONDS; 0 skips them), the network fault tests between
# two namespaces and the MPI jobs across three namespace hosts with sshd
# when run as root (FABRIC_SKIP_NETNS=1 skips them), MPI jobs across four
# podman containers as root (FABRIC_SKIP_CONTAINERS=1 skips them), the
# bootstrap under Slurm on a three-node cluster of this machine when run as
# root (FABRIC_SKIP_SLURM=1 skips it; about two minutes on a fresh machine,
# most of it installing slurm-wlm, munge and libpmix), the suites again
# under a sanitizer if FABRIC_SANITIZE names one (address or thread; off by
# default), the benchmarks' allocation gates if FABRIC_BENCH_GATES=1 (off by
# default: building the Benchmarks package costs more than CI's time allows,
# docs/benchmarks.md), then the conformance suite, the registration
# cache's cases and the window tests over the verbs backend on a real
# soft-RoCE device inside a qemu VM (FABRIC_SKIP_VM=1 skips them).
set -euo pipefail
cd "$(dirname "$0")/.."
FABRIC_SETUP_TEST_PACKAGES=1 source scripts/setup.sh
# Tests use their own job secret; never touch the user's key file.
export FABRIC_JOB_SECRET="${FABRIC_JOB_SECRET:-test-secret-$(od -An -tx8 -N16 /dev/urandom | tr -d ' \n')}"
swift build --build-tests
swift test --skip-build "$@"
# The software NIC behaving like a card: the conformance suite under the
# soft-RoCE profile (smaller limits, which the suite checks are enforced).
FABRIC_TCP_PROFILE=rxe swift test --skip-build --filter FabricConformanceTests
# A short soak (scripts/soak.sh runs the long one): random checked
# operations over connections that come and go.
FABRIC_BACKEND=tcp .build/debug/fabric-perf soak --seconds "${FABRIC_SOAK_SECONDS:-20}"
if [ "${FABRIC_FUZZ_SECONDS:-30}" != 0 ]; then
    bash scripts/fuzz.sh "${FABRIC_FUZZ_SECONDS:-30}"
fi
# Network faults between two namespace hosts (root only; FABRIC_SKIP_NETNS=1 skips).
if [ "$(id -u)" -eq 0 ] && [ "${FABRIC_SKIP_NETNS:-0}" != 1 ]; then
    bash scripts/test-netns.sh
    # MPI jobs across three namespace hosts, each with its own sshd.
    bash scripts/test-multihost.sh
fi
# MPI jobs across four podman containers made from nothing, with the debug
# build's tools, and their fault scenarios (root only, about 4 minutes on a
# fresh machine; FABRIC_SKIP_CONTAINERS=1 skips them; docs/containers.md).
if [ "$(id -u)" -eq 0 ] && [ "${FABRIC_SKIP_CONTAINERS:-0}" != 1 ]; then
    FABRIC_CONTAINER_BUILD=debug bash scripts/containers.sh test
fi
# The bootstrap under Slurm: scripts/slurm-cluster.sh's controller and three
# nodes (root only; FABRIC_SKIP_SLURM=1 skips it). A cluster already up is
# used and left running; one started here is stopped, also on failure.
if [ "$(id -u)" -eq 0 ] && [ "${FABRIC_SKIP_SLURM:-0}" != 1 ]; then
    slurm_started=$SECONDS
    if ! bash scripts/slurm-cluster.sh status >/dev/null 2>&1; then
        trap 'bash scripts/slurm-cluster.sh down' EXIT
    fi
    bash scripts/slurm-cluster.sh up
    eval "$(bash scripts/slurm-cluster.sh env)"
    FABRIC_TEST_SLURM=1 swift test --skip-build --filter SlurmTests
    if trap -p EXIT | grep -q slurm-cluster; then
        bash scripts/slurm-cluster.sh down
        trap - EXIT
    fi
    echo "slurm: $((SECONDS - slurm_started)) s (packages, cluster up and down, tests)"
fi
if [ -n "${FABRIC_SANITIZE:-}" ]; then
    bash scripts/sanitize.sh "$FABRIC_SANITIZE"
fi
if [ "${FABRIC_BENCH_GATES:-0}" = 1 ]; then
    bash scripts/bench-gates.sh
fi
if [ "${FABRIC_SKIP_VM:-0}" != 1 ]; then
    bash scripts/test-verbs.sh
    # The registration cache over verbs, where stale registrations send
    # stale bytes: every case passes, and fails with invalidation off.
    bash scripts/test-regcache-verbs.sh
    # One-sided windows over verbs: the card serves the passive target.
    bash scripts/test-windows-verbs.sh
fi
