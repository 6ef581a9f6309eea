#!/usr/bin/env bash
# MPI jobs across three hosts made of network namespaces, each with its own
# sshd (scripts/netns-hosts.sh): the suite MultiHostTests runs mpirun in
# the first host, which reaches the others through ssh. Root only; the
# test command runs it when it runs as root (FABRIC_SKIP_NETNS=1 skips).
#   sudo bash scripts/test-multihost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "test-multihost.sh needs root (network namespaces)" >&2; exit 1; }
if ! ip netns add "fabric-probe$$" 2>/dev/null; then
    echo "network namespaces cannot be created here (no CAP_NET_ADMIN?): the multi-host tests are skipped"
    exit 0
fi
ip netns del "fabric-probe$$"
state="$(mktemp -d /tmp/fabric-hosts.XXXXXX)"
cleanup() { bash scripts/netns-hosts.sh down "$state"; rm -rf "$state"; }
trap cleanup EXIT
bash scripts/netns-hosts.sh up "$state" >/dev/null
FABRIC_TEST_HOSTS_STATE="$state" swift test --skip-build --filter MultiHostTests
