#!/usr/bin/env bash
# Multi-host MPI jobs in containers, the way a user runs them: from nothing
# (no image, no registry) to finished jobs over four containers, each a host
# of the job, with podman and podman-compose (docs/containers.md).
#
#   sudo bash scripts/containers.sh test     everything below, then the checks
#   sudo bash scripts/containers.sh images   the base image (debootstrap) and swiftfabric
#   sudo bash scripts/containers.sh up       the job's key, host file, seccomp profile; hosts up
#   sudo bash scripts/containers.sh run CMD  CMD in a launcher container (mpirun ...)
#   sudo bash scripts/containers.sh down     every container of the job removed
#   sudo bash scripts/containers.sh bench    mpibench in containers beside the host, and on a
#                                            shaped link (REPS, SCALE, SIZES, BENCH_LINK, OUT)
#
# Settings:
#   FABRIC_CONTAINER_BUILD=release|debug  which build's products the image carries
#       (default release; the test command uses the debug build it already made)
#   FABRIC_CONTAINER_FROM_SOURCE=1  build the products inside the build stage
#       instead, with /opt/swift and /opt/swift-packages mounted read-only
#   FABRIC_CONTAINER_ENV_FILE=FILE  compose settings (Docker/examples/*.env)
# Root only: podman runs rootful (on the machines this was made on it needs
# runc, lowered ulimits and iptables for the bridge network).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
[ "$(id -u)" -eq 0 ] || { echo "containers.sh needs root (rootful podman)" >&2; exit 1; }

job="$root/Docker/.job"
export FABRIC_JOB_DIR="$job"
export FABRIC_IMAGE="localhost/swiftfabric:latest"
base_image="debian:bookworm"
project="fabric-job"
compose_file="$root/Docker/compose.yaml"
build="${FABRIC_CONTAINER_BUILD:-release}"

say() { echo "containers: $*" >&2; }
now() { date +%s.%N; }
since() { awk -v start="$1" -v end="$(now)" 'BEGIN { printf "%.1f", end - start }'; }

# ------------------------------------------------------------ podman ----
# What podman needs on these machines, installed as a user would; a private
# containers.conf (runc, limits the sandbox allows) instead of the system's.
setup_podman() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    command -v iptables >/dev/null || missing+=(iptables)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    [ -x /usr/lib/podman/netavark ] || [ -x /usr/libexec/podman/netavark ] || missing+=(netavark)
    [ -x /usr/lib/podman/aardvark-dns ] || [ -x /usr/libexec/podman/aardvark-dns ] || missing+=(aardvark-dns)
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ! command -v podman-compose >/dev/null; then
        say "installing podman-compose (PyPI)"
        pip install -q podman-compose
    fi
    mkdir -p "$job"
    cat > "$job/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]
[engine]
runtime = "runc"
CONF
    export CONTAINERS_CONF="$job/containers.conf"
    # A container cannot get a higher memlock limit than the engine has.
    local memlock
    memlock=$(ulimit -Hl)
    if [ "$memlock" != unlimited ]; then export FABRIC_MEMLOCK=$((memlock * 1024)); fi
}

compose() {
    local env_file=()
    [ -n "${FABRIC_CONTAINER_ENV_FILE:-}" ] && env_file=(--env-file "$FABRIC_CONTAINER_ENV_FILE")
    podman-compose "${env_file[@]}" -f "$compose_file" "$@"
}

# ------------------------------------------------------------ images ----
# debian:bookworm from Debian's mirror when no registry can give it.
base_image() {
    if podman image exists "$base_image"; then return; fi
    local started folder
    started=$(now)
    folder=$(mktemp -d /tmp/fabric-rootfs.XXXXXX)
    say "making $base_image with debootstrap (no registry is reachable here)"
    debootstrap --variant=minbase bookworm "$folder" http://deb.debian.org/debian >/dev/null
    tar -C "$folder" -c . | podman import -q - "localhost/$base_image" >/dev/null
    rm -rf "$folder"
    say "$base_image made in $(since "$started") s"
}

images() {
    setup_podman
    base_image
    local started
    started=$(now)
    if [ "${FABRIC_CONTAINER_FROM_SOURCE:-0}" = 1 ]; then
        say "building swiftfabric from source in the build stage (toolchain and package mirror mounted)"
        podman build -q -f Docker/Dockerfile --target runtime -t "$FABRIC_IMAGE" \
            -v /opt/swift:/opt/swift:ro -v /opt/swift-packages:/opt/swift-packages:ro . >/dev/null
    else
        if [ "$build" = release ]; then swift build -c release >/dev/null; else swift build >/dev/null; fi
        sh Docker/collect-products.sh ".build/$build" Docker/.products
        say "building swiftfabric from the host's $build products"
        podman build -q -f Docker/Dockerfile --target runtime-prebuilt -t "$FABRIC_IMAGE" . >/dev/null
    fi
    say "image $FABRIC_IMAGE built in $(since "$started") s: $(podman image inspect --format '{{.Size}}' "$FABRIC_IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
}

# --------------------------------------------------------------- job ----
# The job's ssh key (one per job, as the MPI operator makes one per
# MPIJob), its host file and the seccomp profile.
job_files() {
    mkdir -p "$job/ssh"
    if [ ! -s "$job/ssh/id_ed25519" ]; then
        rm -f "$job/ssh/id_ed25519" "$job/ssh/id_ed25519.pub"
        ssh-keygen -q -t ed25519 -N "" -C "fabric-job" -f "$job/ssh/id_ed25519"
        cp "$job/ssh/id_ed25519.pub" "$job/ssh/authorized_keys"
    fi
    chmod 700 "$job/ssh"
    chmod 600 "$job/ssh/id_ed25519" "$job/ssh/authorized_keys"
    printf 'host1 slots=2\nhost2 slots=2\nhost3 slots=2\nhost4 slots=2\n' > "$job/hostfile"
    python3 Docker/seccomp-with-userfaultfd.py "$job/seccomp.json" >/dev/null
}

up() {
    setup_podman
    job_files
    compose up -d host1 host2 host3 host4 >/dev/null 2>&1 || { compose logs >&2 || true; say "the hosts did not start"; return 1; }
}

# A command in a launcher container; its status is the command's.
run() {
    setup_podman
    compose run --rm launcher "$@"
}

down() {
    setup_podman
    compose down -t 2 >/dev/null 2>&1 || true
    local left
    left=$(podman ps -a -q --filter "label=io.podman.compose.project=$project")
    if [ -n "$left" ]; then podman rm -f $left >/dev/null; fi
}

left_running() {
    podman ps -a -q --filter "label=io.podman.compose.project=$project" | wc -l
}

# ------------------------------------------------------------- tests ----
failures=0
check() {
    local what="$1" status="$2"
    if [ "$status" = 0 ]; then say "PASS $what"; else say "FAIL $what"; failures=$((failures + 1)); fi
}

# Runs a launcher container (the hosts are up; a stopped one stays down)
# with a time limit: launch SECONDS [-e NAME=VALUE]
# COMMAND...; sets $output and $status.
launch() {
    local limit="$1"; shift
    local options=()
    if [ "$1" = -e ]; then options=(-e "$2"); shift 2; fi
    set +e
    output=$(timeout -k 10 "$limit" podman-compose -f "$compose_file" run --rm --no-deps "${options[@]}" launcher "$@" 2>&1)
    status=$?
    set -e
}

# Whether a job failed (not by our time limit) with a message naming $1.
failed_naming() {
    [ "$status" != 0 ] && [ "$status" != 124 ] && [ "$status" != 137 ] && grep -q "$1" <<<"$output"
}

test_jobs() {
    local started
    started=$(now)
    launch 180 mpirun --timeout 120 -n 8 mpi-runtime-check all
    check "8 ranks on 4 containers from the operator's host-file variable: mpi-runtime-check all (status $status)" "$status"
    [ "$status" = 0 ] || echo "$output" | tail -20 >&2

    launch 180 mpirun --timeout 120 -n 8 mpi-p2p-check wildcards
    check "point-to-point across containers: wildcards over 8 ranks (status $status)" "$status"
    [ "$status" = 0 ] || echo "$output" | tail -20 >&2

    launch 180 mpirun --timeout 120 -n 2 -ppn 1 mpi-p2p-check pingpong
    check "every size up to 4 MiB between two containers (status $status)" "$status"
    [ "$status" = 0 ] || echo "$output" | tail -20 >&2

    # The cache inside containers: the seccomp profile lets the monitor
    # run, so rendezvous buffers hit and nothing is registered per use.
    launch 300 mpirun --timeout 240 -n 2 -ppn 1 mpibench --tests bw --sizes 1M --reps 3 --scale 0.2
    local cache
    cache=$(grep "^# registration cache" <<<"$output" || true)
    local hits per_use
    hits=$(sed -n 's/.*hits \([0-9]*\),.*/\1/p' <<<"$cache")
    per_use=$(sed -n 's/.*registered per use \([0-9]*\).*/\1/p' <<<"$cache")
    local cached=1
    if [ "$status" = 0 ] && [ "${hits:-0}" -gt 0 ] && [ "${per_use:-1}" = 0 ]; then cached=0; fi
    check "mpibench across containers with the cache on: ${cache:-no cache line} (status $status)" "$cached"
    [ "$status" = 0 ] || echo "$output" | tail -20 >&2
    # Without the profile, the engine's default seccomp filter refuses
    # userfaultfd and the cache could not run: the profile is what makes
    # the difference.
    local plain ours
    plain=$(podman run --rm --security-opt seccomp=/usr/share/containers/seccomp.json --entrypoint mpiinfo "$FABRIC_IMAGE" 2>&1 | grep -m1 "memory monitor" || true)
    ours=$(podman run --rm --security-opt seccomp="$job/seccomp.json" --entrypoint mpiinfo "$FABRIC_IMAGE" 2>&1 | grep -m1 "memory monitor" || true)
    if grep -q "not running.*seccomp" <<<"$plain" && grep -q "memory monitor: running" <<<"$ours"; then ok=0; else ok=1; fi
    check "the default seccomp profile stops the monitor ($plain); the job's lets it run ($ours)" "$ok"
    say "jobs: $(since "$started") s"
}

# Settings per container reach the ranks that sshd starts there: four
# hosts as Docker/examples/connectx5-25g-lossy.env describes them.
test_settings() {
    local started
    started=$(now)
    down
    FABRIC_CONTAINER_ENV_FILE="$root/Docker/examples/connectx5-25g-lossy.env" up
    launch 60 mpirun -n 4 -ppn 1 sh -c 'echo "settings on $(hostname): $FABRIC_TCP_PROFILE|$FABRIC_TCP_LINK|${FABRIC_TCP_FAULTS:-none}"'
    if [ "$status" = 0 ] \
        && grep -q "settings on host4: connectx-5|rate=25Gbit/s,latency=2us|loss rate=0.1% seed=4" <<<"$output" \
        && grep -q "settings on host1: connectx-5|rate=25Gbit/s,latency=2us|none" <<<"$output"; then ok=0; else ok=1; fi
    check "each container's settings reach its ranks (host4 alone loses packets): $(grep -c "settings on" <<<"$output") hosts answered" "$ok"
    [ "$ok" = 0 ] || echo "$output" | tail -8 >&2
    launch 180 mpirun --timeout 120 -n 2 --host host1,host4 mpi-p2p-check pingpong
    check "every size up to 4 MiB over the shaped link, host4's packets lost at 0.1 % (status $status)" "$status"
    [ "$status" = 0 ] || echo "$output" | tail -20 >&2
    down
    up
    say "settings: $(since "$started") s"
}

test_faults() {
    local started
    started=$(now)
    # A host killed mid-job: the job ends with an error naming its host and
    # a non-zero status, in bounded time.
    ( sleep 4; podman kill "${project}_host3_1" >/dev/null 2>&1 ) &
    launch 90 mpirun --timeout 60 -n 8 sh -c 'sleep 40'
    wait
    if failed_naming host3; then ok=0; else ok=1; fi
    check "a container killed mid-job: status $status: $(grep -m1 "host3" <<<"$output" || echo "no message names host3")" "$ok"
    compose up -d host3 >/dev/null 2>&1

    # A host that never comes up: the launcher waits FABRIC_WAIT_FOR_HOSTS
    # seconds for its ssh, then names it.
    compose stop -t 1 host4 >/dev/null 2>&1
    launch 60 -e FABRIC_WAIT_FOR_HOSTS=5 mpirun --timeout 60 -n 8 mpi-runtime-check ring
    if failed_naming host4; then ok=0; else ok=1; fi
    check "a host that never answers: status $status: $(grep -m1 "host4" <<<"$output" || echo "no message names host4")" "$ok"

    # The same host file given to mpirun itself, without the wait.
    launch 60 -e FABRIC_WAIT_FOR_HOSTS=0 mpirun --timeout 60 -n 8 mpi-runtime-check ring
    if failed_naming host4; then ok=0; else ok=1; fi
    check "mpirun with a host file naming a stopped container: status $status: $(grep -m1 "host4" <<<"$output" || echo "no message names host4")" "$ok"
    compose up -d host4 >/dev/null 2>&1

    # A host's network cut mid-job.
    ( sleep 4; podman network disconnect "${project}_fabric" "${project}_host2_1" >/dev/null 2>&1 ) &
    launch 120 mpirun --timeout 90 -n 8 sh -c 'sleep 40'
    wait
    if failed_naming host2; then ok=0; else ok=1; fi
    check "a container's network cut mid-job: status $status: $(grep -m1 "host2" <<<"$output" || echo "no message names host2")" "$ok"
    say "faults: $(since "$started") s"
}

test_all() {
    local started
    started=$(now)
    trap down EXIT
    images
    down
    local up_started
    up_started=$(now)
    up
    say "four hosts up in $(since "$up_started") s"
    test_jobs
    test_faults
    test_settings
    down
    trap - EXIT
    local left
    left=$(left_running)
    check "no container of the job left (found $left)" "$([ "$left" = 0 ] && echo 0 || echo 1)"
    say "from nothing to finished jobs: $(since "$started") s, $failures failure(s)"
    [ "$failures" = 0 ]
}

# mpibench between two containers beside the same job on the host,
# interleaved round by round, then between two containers on an emulated
# link (BENCH_LINK) to set its figures beside its settings; JSON lines and
# a report with plots in OUT (default Docker/.job/bench).
bench() {
    local out="${OUT:-$job/bench}" reps="${REPS:-10}" scale="${SCALE:-0.3}" sizes="${SIZES:-8,1K,64K,1M,4M}"
    local link="${BENCH_LINK:-rate=10Gbit/s,latency=20us}"
    local tests="latency,bw,bibw,mbw_mr"
    build=release
    images
    mkdir -p "$out"
    rm -f "$out"/*.jsonl
    local bin
    bin=$(swift build -c release --show-bin-path)
    # Names the rows of a run for the report: LABEL, and for fabric-perf's
    # raw-TCP reference RAW_LABEL.
    label() { python3 -c 'import json, sys
for line in sys.stdin:
    if line.startswith("{"):
        row = json.loads(line)
        row["label"] = sys.argv[2] if row.get("backend") == "raw-tcp" and len(sys.argv) > 2 else sys.argv[1]
        print(json.dumps(row))' "$@"; }
    down
    up
    for round in $(seq 1 "$reps"); do
        say "round $round of $reps (load $(cut -d' ' -f1-3 /proc/loadavg))"
        "$bin/mpirun" -n 2 "$bin/mpibench" --tests "$tests" --sizes "$sizes" --reps 1 --scale "$scale" --json \
            | label "this MPI (tcp, host)" >>"$out/host.jsonl"
        compose run --rm --no-deps launcher mpirun -n 2 -ppn 1 mpibench --tests "$tests" --sizes "$sizes" --reps 1 --scale "$scale" --json 2>/dev/null \
            | label "this MPI (tcp, 2 containers)" >>"$out/containers.jsonl"
    done
    down
    FABRIC_TCP_LINK="$link" up
    for round in $(seq 1 "$reps"); do
        compose run --rm --no-deps launcher mpirun -n 2 -ppn 1 mpibench --tests latency,bw --sizes "$sizes" --reps 1 --scale "$scale" --json 2>/dev/null \
            | label "this MPI (tcp, 2 containers, link $link)" >>"$out/containers-shaped.jsonl"
    done
    # The transport alone on the same link, between two containers
    # (fabric-perf's server in host1, its client in the launcher), beside
    # raw TCP across the bridge (which no emulator shapes).
    local secret
    secret="perf-$(od -An -tx8 -N16 /dev/urandom | tr -d ' \n')"
    podman exec -d -e FABRIC_JOB_SECRET="$secret" "${project}_host1_1" fabric-perf server --port 18515
    sleep 1
    compose run --rm --no-deps -e FABRIC_JOB_SECRET="$secret" -e FABRIC_TCP_LINK="$link" launcher \
        fabric-perf client --host host1 --port 18515 --tests lat-send,bw-write --sizes "$sizes" --reps "$reps" --scale "$scale" --json 2>/dev/null \
        | label "transport (tcp, 2 containers, link $link)" "raw TCP (2 containers, unshaped)" >>"$out/transport-shaped.jsonl"
    down
    python3 scripts/bench-report.py "$out" --output "$out/report" --title "mpibench in containers and on the host" \
        --note "Made by \`REPS=$reps SCALE=$scale SIZES=$sizes BENCH_LINK=$link scripts/containers.sh bench\`: host and container runs interleaved round by round; the shaped runs after them."
}

case "${1:-test}" in
    test) test_all ;;
    bench) bench ;;
    images) images ;;
    up) up ;;
    run) shift; run "$@" ;;
    down) down ;;
    *) echo "usage: containers.sh [test|bench|images|up|run CMD...|down]" >&2; exit 2 ;;
esac
