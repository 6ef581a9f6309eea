#!/usr/bin/env bash
# Calls and instructions per 8 B send/recv iteration of fabric-perf over the
# verbs backend, counted by callgrind inside the qemu VM of scripts/vm/ on
# its soft-RoCE device. Under the VM's emulation a call costs several plain
# instructions' time, so the calls of the busy-polling path decide much of
# the latency figure against ib_send_lat (docs/benchmarks.md).
#
#   scripts/count-verbs.sh
#
# Server and client each run under valgrind (the loopback mode cannot start
# its server process under valgrind), once with 110 iterations and once with
# 550 (--scale 0.05 and 0.25, warm-up included); the difference over 440
# iterations is printed per callee for the client's main thread, with the
# instruction totals of both sides. Needs valgrind and python3 on the host
# (the VM runs the host's root file system). The binary is stripped of
# debug information first: valgrind cannot read this toolchain's.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--inside" ]; then
    source scripts/setup.sh
    command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
    swift build -c release --product fabric-perf
    mkdir -p .build/count-verbs
    cp .build/release/fabric-perf .build/count-verbs/fabric-perf
    strip -g .build/count-verbs/fabric-perf
    exec bash scripts/vm/run-in-vm.sh --timeout "${FABRIC_VM_TIMEOUT:-1500}" -- bash scripts/count-verbs.sh --inside
fi

export FABRIC_BACKEND=verbs
perf=.build/count-verbs/fabric-perf
work=$(mktemp -d)
for scale in 0.05 0.25; do
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$work/server.$scale" \
        "$perf" server --host 10.77.0.1 --port 18515 --capacity 4096 >"$work/server.log" 2>&1 &
    server=$!
    # The server is listening once it has printed its port.
    for _ in $(seq 120); do grep -q "^control port" "$work/server.log" 2>/dev/null && break; sleep 1; done
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$work/client.$scale" \
        "$perf" client --host 10.77.0.1 --port 18515 --tests lat-send --sizes 8 --reps 1 --scale "$scale" --no-raw >/dev/null 2>&1
    wait "$server"
done
instructions() { awk '/^(summary|totals):/ { print $2; exit }' "$1"; }
for side in client server; do
    echo "$side: $(( ($(instructions "$work/$side.0.25-01") - $(instructions "$work/$side.0.05-01")) / 440 )) instructions per iteration (busy-polling included)"
done
python3 scripts/vm/callsum.py "$work/client.0.05-01" "$work/client.0.25-01" 440
