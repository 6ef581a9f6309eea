#!/usr/bin/env bash
# Checks, in one VM, that the harness gives a working soft-RoCE device:
# verbs sees rxe0, RC queue pairs carry traffic through librdmacm (perftest,
# rping), and the project's own fabric-info runs there and sees rxe0.
#
#   scripts/vm/selftest.sh [run-in-vm.sh options]
#
# On the host it starts the VM with itself inside (--inside); each step is
# timed, and it exits non-zero if any step fails. Inside, the same steps run
# as they would on any host that has rxe0 on the address in FABRIC_VM_ADDR.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$script_dir/../.." && pwd)
readonly script_dir repo_dir

if [ "${1:-}" != --inside ]; then
    exec "$script_dir/run-in-vm.sh" "$@" -- "$script_dir/selftest.sh" --inside
fi

readonly device=${FABRIC_VM_DEVICE:-rxe0}
readonly addr=${FABRIC_VM_ADDR:-10.77.0.1}
# Bounds every program, so that a hung queue pair fails a step, not the VM.
readonly step_limit=60
passed=0
failed=0
skipped=0
logs=$(mktemp -d)

now_us() { echo "${EPOCHREALTIME//[.,]/}"; }
us_diff() { local d=$(($2 - $1)); printf '%d.%02d' $((d / 1000000)) $((d % 1000000 / 10000)); }

# step NAME FUNCTION: runs FUNCTION, reports ok/FAILED/skipped with its time.
# A function returns 2 to say it was skipped.
step() {
    local name=$1 start status=0
    shift
    echo "=== $name"
    start=$(now_us)
    "$@" || status=$?
    local took
    took=$(us_diff "$start" "$(now_us)")
    case $status in
        0) passed=$((passed + 1)); echo "--- $name: ok ($took s)" ;;
        2) skipped=$((skipped + 1)); echo "--- $name: skipped ($took s)" ;;
        *) failed=$((failed + 1)); echo "--- $name: FAILED, status $status ($took s)" ;;
    esac
}

# Waits until the server process PID has an rdma_cm listener on PORT, for
# at most SECONDS. The kernel's resource list says so exactly; the servers'
# own output is buffered.
wait_for_listener() {
    local pid=$1 port=$2 seconds=$3 i
    for ((i = 0; i < seconds * 10; i++)); do
        rdma res show cm_id 2>/dev/null | grep -q "state LISTEN .*src-addr [^ ]*:$port " && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "the server exited before listening on port $port"
            return 1
        fi
        sleep 0.1
    done
    echo "no rdma_cm listener on port $port after $seconds s"
    return 1
}

# Waits for a background server; kills it if the client already failed.
finish_server() {
    local pid=$1 client_ok=$2 log=$3 status=0
    if [ "$client_ok" != 0 ]; then kill "$pid" 2>/dev/null || true; fi
    wait "$pid" || status=$?
    if [ "$status" != 0 ]; then
        echo "server exited with status $status:"
        cat "$log"
    fi
    [ "$client_ok" = 0 ] && [ "$status" = 0 ]
}

check_devinfo() {
    local out
    out=$(timeout "$step_limit" ibv_devinfo -d "$device")
    echo "$out"
    grep -q PORT_ACTIVE <<<"$out"
}

check_rdma_link() {
    local out
    out=$(timeout "$step_limit" rdma link show)
    echo "$out"
    grep -q "$device/1 state ACTIVE" <<<"$out"
}

# A perftest pair over rdma_cm (-R): server in the background, client to addr.
# -F: no warning about the emulated CPU's frequency.
perftest_pair() {
    local program=$1 port=$2
    shift 2
    local server_log="$logs/$program.server"
    timeout "$step_limit" "$program" -R -F -d "$device" -p "$port" "$@" >"$server_log" 2>&1 &
    local server=$!
    local client_ok=0
    wait_for_listener "$server" "$port" 20 || client_ok=1
    if [ "$client_ok" = 0 ]; then
        timeout "$step_limit" "$program" -R -F -d "$device" -p "$port" "$@" "$addr" || client_ok=$?
    fi
    finish_server "$server" "$client_ok" "$server_log"
}

check_send_lat() { perftest_pair ib_send_lat 18515 -s 8 -n 1000; }
check_write_bw() { perftest_pair ib_write_bw 18516 -s 1048576 -n 100; }

check_rping() {
    local server_log="$logs/rping.server" port=18517 out=""
    timeout "$step_limit" rping -s -a "$addr" -p "$port" -C 3 -v >"$server_log" 2>&1 &
    local server=$!
    local client_ok=0
    wait_for_listener "$server" "$port" 20 || client_ok=1
    if [ "$client_ok" = 0 ]; then
        out=$(timeout "$step_limit" rping -c -a "$addr" -p "$port" -C 3 -v) || client_ok=$?
    fi
    echo "$out"
    if [ "$client_ok" = 0 ] && [ "$(grep -c 'ping data' <<<"$out")" != 3 ]; then
        echo "expected 3 pings"
        client_ok=1
    fi
    finish_server "$server" "$client_ok" "$server_log"
}

# The project's own binary, if it has been built: it must run here and
# report the verbs backend available, with rxe0.
check_fabric_info() {
    local binary="$repo_dir/.build/debug/fabric-info" out
    if [ ! -x "$binary" ]; then
        echo "$binary not built"
        return 2
    fi
    out=$(timeout "$step_limit" "$binary" 2>&1)
    echo "$out"
    grep -q "verbs: available" <<<"$out" && grep -q "$device" <<<"$out"
}

main() {
    echo "selftest: device $device, address $addr, kernel $(uname -r)"
    step "ibv_devinfo" check_devinfo
    step "rdma link" check_rdma_link
    step "ib_send_lat 8 B" check_send_lat
    step "ib_write_bw 1 MiB" check_write_bw
    step "rping" check_rping
    step "fabric-info" check_fabric_info
    rm -rf "$logs"
    echo "selftest: $passed passed, $failed failed, $skipped skipped"
    [ "$failed" = 0 ]
}

main
