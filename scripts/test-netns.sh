#!/usr/bin/env bash
# Network faults between two hosts (not in CI by default: needs root):
# two network namespaces joined by a veth pair, the test process in the
# first, the peer process in the second; the suite NetworkFaultTests then
# cuts the link, drops 20 % of the packets (nftables) and limits the rate
# (tbf) on the second's side, and checks every byte and every error.
#   sudo bash scripts/test-netns.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
[ "$(id -u)" -eq 0 ] || { echo "test-netns.sh needs root (network namespaces)" >&2; exit 1; }
if ! ip netns add "fabric-probe$$" 2>/dev/null; then
    echo "network namespaces cannot be created here (no CAP_NET_ADMIN?): the network fault tests are skipped"
    exit 0
fi
ip netns del "fabric-probe$$"
command -v nft >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null; }
export FABRIC_JOB_SECRET="${FABRIC_JOB_SECRET:-test-secret-$(od -An -tx8 -N16 /dev/urandom | tr -d ' \n')}"
swift build --build-tests
a=fabric-a$$
b=fabric-b$$
cleanup() { ip netns del "$a" 2>/dev/null || true; ip netns del "$b" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$a"
ip netns add "$b"
ip link add va netns "$a" type veth peer name vb netns "$b"
ip -n "$a" addr add 10.77.0.1/24 dev va
ip -n "$b" addr add 10.77.0.2/24 dev vb
for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
ip -n "$a" link set va up
ip -n "$b" link set vb up
FABRIC_TEST_NETNS="$b" FABRIC_TEST_NETNS_HOST=10.77.0.1 FABRIC_TEST_NETNS_PEER_IF=vb \
    ip netns exec "$a" swift test --skip-build --filter NetworkFaultTests
