#!/usr/bin/env bash
# Cross-host RoCE between two qemu VMs, for correctness only (not in CI).
#
#   scripts/test-verbs-two-hosts.sh
#
# VM A (10.78.0.1) runs `fabric-perf server`, VM B (10.78.0.2) runs
# `fabric-perf client` against it, both over the verbs backend on their own
# rxe0. The VMs' virtio NICs are joined by one TCP connection on the host's
# loopback (scripts/vm/run-in-vm.sh --link), so every RDMA operation crosses
# a real (emulated) wire between two kernels. fabric-perf throws on any
# failed completion, so its exit status is the verdict; its figures are the
# emulator's (tens of milliseconds per round trip) and mean nothing.
#
# Uses the existing build (.build/release, else .build/debug) and builds
# nothing. Exit status: 0 when both ends succeeded; otherwise the client's
# status, or the server's if only the server failed (124: a VM ran out of
# time, 125: the harness failed). See docs/verbs-vm.md.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly server_addr=10.78.0.1
readonly client_addr=10.78.0.2
readonly prefix=24
readonly control_port=18515
readonly tests=lat-send,lat-write,lat-read,lat-fadd,lat-cas,bw-write,bw-send
readonly sizes=8,4K,1M

# Time limits in seconds. The server VM has to outlive its own boot, the
# client VM's boot and the whole run, so its limit is the sum of the others.
readonly server_ready_limit=240     # start of VM A until its server listens
readonly client_limit=${FABRIC_VM_TIMEOUT:-600}
readonly server_exit_grace=60       # after the client's end, for the server's
readonly server_limit=$((server_ready_limit + client_limit + server_exit_grace))

work=""
server_pid=""
client_pid=""
viewer_pids=()

log() { printf 'two-hosts: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 125; }

now_us() { echo "${EPOCHREALTIME//[.,]/}"; }
seconds_since() { local d=$(($(now_us) - $1)); printf '%d.%d' $((d / 1000000)) $((d % 1000000 / 100000)); }

# Sets perf to the newest kind of build there is; building is left to
# scripts/test.sh or swift build -c release.
choose_binary() {
    local config
    for config in release debug; do
        if [ -x ".build/$config/fabric-perf" ]; then
            perf=.build/$config/fabric-perf
            log "using $perf (built $(date -r "$perf" '+%F %T'))"
            return
        fi
    done
    die "no .build/release/fabric-perf or .build/debug/fabric-perf: build first (swift build -c release --product fabric-perf)"
}

# A TCP port on 127.0.0.1 that nothing listens on now, for the link between
# the two qemu processes. FABRIC_VM_LINK_PORT chooses one by hand.
free_loopback_port() {
    if [ -n "${FABRIC_VM_LINK_PORT:-}" ]; then echo "$FABRIC_VM_LINK_PORT"; return; fi
    local port busy
    busy=$(ss -Htln 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }')
    for _ in {1..100}; do
        port=$((20000 + RANDOM % 40000))
        grep -qx "$port" <<<"$busy" || { echo "$port"; return; }
    done
    die "found no free port on 127.0.0.1"
}

# start_vm NAME RUN-IN-VM-ARGS...: starts one VM in the background. Its
# output (the command's and the harness's own lines) goes to $work/NAME.log
# and, each line prefixed with NAME, to stdout. Sets vm_pid.
start_vm() {
    local name=$1
    shift
    # Created first, or tail could start before the VM's redirection and give up.
    : >"$work/$name.log"
    scripts/vm/run-in-vm.sh "$@" >"$work/$name.log" 2>&1 &
    vm_pid=$!
    tail -n +1 -f --pid="$vm_pid" "$work/$name.log" | sed -u "s/^/[$name] /" &
    viewer_pids+=($!)
}

# The server prints "control port N" once it listens. Only then may VM B
# start: its qemu connects to VM A's qemu at once (and fails if nobody
# listens), and the client retries its control connection for a few seconds
# only, too short to cover a boot.
wait_for_server() {
    local waited=0
    until grep -q "^control port $control_port\$" "$work/server.log"; do
        kill -0 "$server_pid" 2>/dev/null || return 1
        [ "$waited" -lt "$server_ready_limit" ] || return 1
        sleep 1
        waited=$((waited + 1))
    done
}

# Waits for a VM that should end by itself within SECONDS, and ends it with
# SIGTERM (status 143) if it does not: e.g. a server whose client vanished
# without closing the control connection. Sets vm_status.
wait_or_stop() {
    local pid=$1 seconds=$2 waited=0
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt "$seconds" ]; do
        sleep 1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "VM process $pid did not end by itself; stopping it"
        kill -TERM "$pid" 2>/dev/null || true
    fi
    vm_status=0
    wait "$pid" || vm_status=$?
}

# Stops whatever still runs (run-in-vm.sh ends its qemu on SIGTERM), lets the
# viewers print the last lines, and removes the logs.
cleanup() {
    local pid
    for pid in "$client_pid" "$server_pid"; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${viewer_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "$work" ]; then rm -rf "$work"; fi
}

main() {
    local start port server_status client_status
    start=$(now_us)
    choose_binary
    port=$(free_loopback_port)
    work=$(mktemp -d "${TMPDIR:-/tmp}/fabric-two-hosts.XXXXXX")
    trap cleanup EXIT
    trap 'log "interrupted"; exit 130' INT
    trap 'log "terminated"; exit 143' TERM
    # Both ends must prove the same job secret; run-in-vm.sh passes it in
    # from the environment (never on a command line).
    FABRIC_JOB_SECRET=${FABRIC_JOB_SECRET:-two-hosts-$(od -An -tx8 -N16 /dev/urandom | tr -d ' \n')}
    export FABRIC_JOB_SECRET

    log "VM A ($server_addr) listens on 127.0.0.1:$port for VM B ($client_addr)"
    start_vm server --timeout "$server_limit" --env FABRIC_BACKEND=verbs \
        --link "listen:$port" --address "$server_addr/$prefix" \
        -- "$perf" server --host "$server_addr" --port "$control_port"
    server_pid=$vm_pid
    if ! wait_for_server; then
        wait_or_stop "$server_pid" 0
        server_pid=""
        log "FAILED: the server did not listen within $server_ready_limit s (VM A status $vm_status)"
        exit $((vm_status == 0 ? 125 : vm_status))
    fi
    log "server listening after $(seconds_since "$start") s; starting VM B"

    start_vm client --timeout "$client_limit" --env FABRIC_BACKEND=verbs \
        --link "connect:$port" --address "$client_addr/$prefix" \
        -- "$perf" client --host "$server_addr" --port "$control_port" \
        --tests "$tests" --sizes "$sizes" --reps 1 --scale 0.05 --no-raw
    client_pid=$vm_pid
    client_status=0
    wait "$client_pid" || client_status=$?
    client_pid=""
    wait_or_stop "$server_pid" "$server_exit_grace"
    server_status=$vm_status
    server_pid=""

    log "client status $client_status, server status $server_status, $(seconds_since "$start") s in all"
    if [ "$client_status" -ne 0 ]; then log "FAILED (client)"; exit "$client_status"; fi
    if [ "$server_status" -ne 0 ]; then log "FAILED (server)"; exit "$server_status"; fi
    log "passed"
}

main "$@"
