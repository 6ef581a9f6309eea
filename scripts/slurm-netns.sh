#!/usr/bin/env bash
# Three network namespaces, one per node of scripts/slurm-cluster.sh
# (fabric-slurm-n1..n3), joined by a bridge that sits in a fourth
# (fabric-slurm-switch), so ranks started in them reach each other over
# 10.78.0.1-3 and see nothing of the host's network. Root only.
#
#   scripts/slurm-netns.sh up      create them (again, if they exist)
#   scripts/slurm-netns.sh down    delete them
#
# scripts/slurm-netns-task.sh is the task wrapper that moves each rank
# into its node's namespace: srun --mpi=pmi2 scripts/slurm-netns-task.sh PROGRAM.
set -euo pipefail

prefix=fabric-slurm-
switch="${prefix}switch"
nodes=(n1 n2 n3)

down() {
    local node
    for node in "${nodes[@]}" switch; do ip netns del "$prefix$node" 2>/dev/null || true; done
}

up() {
    [ "$(id -u)" -eq 0 ] || { echo "slurm-netns.sh needs root (network namespaces)" >&2; exit 1; }
    down
    ip netns add "$switch"
    ip -n "$switch" link add bridge type bridge
    ip -n "$switch" link set bridge up
    local index=1 node
    for node in "${nodes[@]}"; do
        ip netns add "$prefix$node"
        ip -n "$prefix$node" link set lo up
        # One veth per node: "eth0" inside the node, "to-NODE" on the bridge.
        ip -n "$switch" link add "to-$node" type veth peer name eth0 netns "$prefix$node"
        ip -n "$switch" link set "to-$node" master bridge up
        ip -n "$prefix$node" addr add "10.78.0.$index/24" dev eth0
        ip -n "$prefix$node" link set eth0 up
        index=$((index + 1))
    done
    echo "slurm namespaces: ${nodes[*]/#/$prefix} on 10.78.0.1-${#nodes[@]}, bridged in $switch"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
