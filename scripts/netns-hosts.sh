#!/usr/bin/env bash
# Three test hosts on this machine: network namespaces fabric-h1..h3 joined
# by a bridge (10.78.0.1-3/24), each running its own sshd on port 22 with
# keys made here, so that mpirun reaches the others through ssh as it
# would real hosts. Root only. Everything lives under one state folder.
#   scripts/netns-hosts.sh up STATE_DIR     prints the host file path
#   scripts/netns-hosts.sh down STATE_DIR
# The ssh command to give mpirun is in STATE_DIR/ssh-command.
set -euo pipefail
action="${1:?up or down}"
state="${2:?state folder}"
hosts=(fabric-h1 fabric-h2 fabric-h3)

down() {
    for index in 0 1 2; do
        pidfile="$state/sshd-${hosts[$index]}.pid"
        if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"; fi
    done
    for ns in "${hosts[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    # The host's ends of the links go with their namespaces, but not at once.
    for index in 0 1 2; do ip link del "fabric-v$index" 2>/dev/null || true; done
    ip link del fabric-br0 2>/dev/null || true
}

up() {
    [ "$(id -u)" -eq 0 ] || { echo "netns-hosts.sh needs root" >&2; exit 1; }
    command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || {
        apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null; }
    down
    mkdir -p "$state"
    chmod 700 "$state"
    rm -f "$state/host-key" "$state/host-key.pub" "$state/user-key" "$state/user-key.pub"
    ssh-keygen -q -t ed25519 -N "" -f "$state/host-key"
    ssh-keygen -q -t ed25519 -N "" -f "$state/user-key"
    cp "$state/user-key.pub" "$state/authorized_keys"
    chmod 600 "$state/authorized_keys"
    mkdir -p /run/sshd
    ip link add fabric-br0 type bridge
    ip link set fabric-br0 up
    : > "$state/hostfile"
    for index in 0 1 2; do
        ns="${hosts[$index]}"
        address="10.78.0.$((index + 1))"
        ip netns add "$ns"
        ip link add "fabric-v$index" type veth peer name eth0 netns "$ns"
        ip link set "fabric-v$index" master fabric-br0 up
        ip -n "$ns" addr add "$address/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
        cat > "$state/sshd-$ns.conf" <<CONF
ListenAddress $address
Port 22
HostKey $state/host-key
AuthorizedKeysFile $state/authorized_keys
PidFile $state/sshd-$ns.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitUserEnvironment no
AcceptEnv FABRIC_* PMI_*
LogLevel ERROR
CONF
        ip netns exec "$ns" /usr/sbin/sshd -f "$state/sshd-$ns.conf"
        echo "$address slots=2" >> "$state/hostfile"
    done
    echo "ssh -i $state/user-key -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR -o ConnectTimeout=5" > "$state/ssh-command"
    # Each sshd answers before the tests start.
    for index in 0 1 2; do
        for attempt in $(seq 50); do
            if ip netns exec fabric-h1 $(cat "$state/ssh-command") "10.78.0.$((index + 1))" true 2>/dev/null; then break; fi
            sleep 0.1
        done
    done
    echo "$state/hostfile"
}

case "$action" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down STATE_DIR" >&2; exit 2 ;;
esac
