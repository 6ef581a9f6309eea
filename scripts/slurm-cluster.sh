#!/usr/bin/env bash
# A Slurm cluster on this one machine for the bootstrap tests: a munge
# daemon, slurmctld and three slurmd nodes n1..n3 (Debian's build runs
# several slurmd on one host, each on its own 127.0.0.1 port), every file
# under a folder of its own.
#
#   scripts/slurm-cluster.sh up [DIR]      start it (root); prints the time it took
#   scripts/slurm-cluster.sh down [DIR]    stop every daemon it started, and
#                                          whatever runs under its jobs
#   scripts/slurm-cluster.sh status [DIR]  which daemons run, sinfo
#   scripts/slurm-cluster.sh env [DIR]     the line to source: export SLURM_CONF=...
#
# DIR defaults to $FABRIC_SLURM_DIR, else ${TMPDIR:-/tmp}/fabric-slurm. The
# controller listens on $FABRIC_SLURM_PORT (default 16817) and the nodes on
# the three ports after it. Installs slurm-wlm, munge, libpmix2 and
# libpmix-dev with apt-get if they are missing (Slurm's pmix plugin opens
# libpmix.so, which only the -dev package provides). Running `up` twice
# leaves the cluster as it was; `down` on a stopped cluster does nothing.
# Clients find the cluster through SLURM_CONF (see `env`).
set -euo pipefail

command="${1:-}"
dir="${2:-${FABRIC_SLURM_DIR:-${TMPDIR:-/tmp}/fabric-slurm}}"
port="${FABRIC_SLURM_PORT:-16817}"
nodes=(n1 n2 n3)
conf="$dir/etc/slurm.conf"
# Only the Slurm commands see SLURM_CONF (through `slurm`): the cluster's
# processes are found by it, and this script's own helpers must not count.
export -n SLURM_CONF 2>/dev/null || true
slurm() { SLURM_CONF="$conf" "$@"; }

usage() {
    echo "usage: $0 up|down|status|env [DIR]" >&2
    exit 2
}

# The pid in a pid file, if that process is alive.
live_pid() {
    local file="$1" pid
    [ -s "$file" ] || return 1
    pid="$(cat "$file")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

daemon_pid_files() {
    local node
    for node in "${nodes[@]}"; do echo "$dir/run/slurmd-$node.pid"; done
    echo "$dir/run/slurmctld.pid"
    echo "$dir/run/munged.pid"
}

# Processes that carry this cluster's SLURM_CONF in their environment: the
# daemons, the slurmstepd of each job step and the tasks under them (they
# inherit it from the slurmd that started them), and clients such as srun.
cluster_processes() {
    grep -lzxF "SLURM_CONF=$conf" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | grep -vxF "$$" || true
}

# What jobs left running: the cluster's step daemons (slurmstepd) and the
# tasks under them. Not srun or the shells that ran it: they carry
# SLURM_CONF too but belong to whoever started them.
job_processes() {
    local pid ancestor comm
    for pid in $(cluster_processes); do
        ancestor="$pid"
        while [ -n "$ancestor" ] && [ "$ancestor" -gt 1 ]; do
            comm="$(cat "/proc/$ancestor/comm" 2>/dev/null)" || break
            if [ "$comm" = slurmstepd ]; then
                echo "$pid"
                break
            fi
            # The parent is the second field after the command name, which
            # sits in parentheses and may hold spaces.
            ancestor="$(sed -E 's/.*\) [A-Za-z] ([0-9]+) .*/\1/' "/proc/$ancestor/stat" 2>/dev/null)" || break
        done
    done
}

# Sends TERM, waits up to 5 s, then KILL.
stop_pids() {
    [ $# -gt 0 ] || return 0
    kill "$@" 2>/dev/null || true
    local waited=0 pid alive
    while [ $waited -lt 50 ]; do
        alive=()
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
        [ ${#alive[@]} -eq 0 ] && return 0
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -KILL "${alive[@]}" 2>/dev/null || true
}

controller_up() {
    slurm scontrol ping 2>/dev/null | grep -q 'is UP'
}

is_up() {
    local file
    for file in $(daemon_pid_files); do live_pid "$file" >/dev/null || return 1; done
    controller_up
}

install_packages() {
    local need=() package
    for package in slurm-wlm munge libpmix2 libpmix-dev; do
        dpkg -s "$package" >/dev/null 2>&1 || need+=("$package")
    done
    [ ${#need[@]} -eq 0 ] && return 0
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}

write_config() {
    local host first last
    host="$(hostname)"
    first=$((port + 1))
    last=$((port + ${#nodes[@]}))
    cat >"$conf" <<EOF
# Written by scripts/slurm-cluster.sh: a controller and three nodes on this
# machine, everything under $dir.
ClusterName=fabric
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
SlurmUser=root
SlurmdUser=root
# No cgroups: the tests need neither limits nor accounting, and this
# machine may not offer a writable cgroup tree.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
# A killed step goes quickly (the abort test waits for it).
KillWait=2
InactiveLimit=0
MinJobAge=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
# One temporary folder per node: PMIx's server puts its rendezvous files
# there, and two nodes sharing one fail with "File exists".
TmpFS=$dir/tmp/%n
NodeName=n[1-${#nodes[@]}] NodeHostname=$host NodeAddr=127.0.0.1 Port=[$first-$last] CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES State=UP MaxTime=INFINITE
EOF
}

start_munge() {
    if [ ! -s "$dir/munge/munge.key" ]; then
        dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    fi
    chmod 600 "$dir/munge/munge.key"
    # munged checks that no one else can write where its socket and key
    # live.
    chmod 700 "$dir/munge"
    munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/munged.seed"
    munge --socket="$dir/munge/munge.socket" -n | unmunge --socket="$dir/munge/munge.socket" >/dev/null
}

wait_until() {
    local what="$1" deadline=$(( $(date +%s) + 30 ))
    shift
    until "$@"; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "slurm cluster: $what not reached within 30 s; logs in $dir/log" >&2
            return 1
        fi
        sleep 0.02
    done
}

all_idle() {
    local states
    states="$(slurm sinfo -h -N -o %T 2>/dev/null | sort -u)" || return 1
    [ "$states" = idle ] && [ "$(slurm sinfo -h -N -o %N 2>/dev/null | wc -l)" -eq ${#nodes[@]} ]
}

up() {
    [ "$(id -u)" -eq 0 ] || { echo "slurm cluster: up needs root (slurmd runs as root)" >&2; exit 1; }
    install_packages
    if is_up; then
        echo "slurm cluster: already up (SLURM_CONF=$conf)"
        return 0
    fi
    # A half-started or crashed cluster: clear it out first.
    down >/dev/null
    local started node pid
    started="$(date +%s%N)"
    mkdir -p "$dir"/{etc,munge,run,log,state}
    for node in "${nodes[@]}"; do mkdir -p "$dir/spool/$node" "$dir/tmp/$node"; done
    write_config
    start_munge
    # -c: start from an empty state rather than jobs of an earlier run.
    slurm slurmctld -c
    wait_until "slurmctld answering" controller_up
    # Each slurmd takes a few hundred ms to daemonize: start them together.
    local starters=()
    for node in "${nodes[@]}"; do
        slurm slurmd -N "$node" &
        starters+=($!)
    done
    for pid in "${starters[@]}"; do
        wait "$pid" || { echo "slurm cluster: a slurmd did not start; logs in $dir/log" >&2; exit 1; }
    done
    if ! wait_until "three idle nodes" all_idle; then
        slurm sinfo -N >&2 || true
        exit 1
    fi
    local elapsed=$(( ($(date +%s%N) - started) / 1000000 ))
    printf 'slurm cluster: up in %d.%03d s (munged, slurmctld, slurmd %s); SLURM_CONF=%s\n' \
        $((elapsed / 1000)) $((elapsed % 1000)) "${nodes[*]}" "$conf"
}

down() {
    [ -d "$dir" ] || return 0
    local file pid
    # Jobs first, while munge and the controller still run: a step daemon
    # that cannot report its end to slurmctld lingers for minutes.
    if [ -f "$conf" ] && controller_up; then
        slurm scancel --quiet $(slurm squeue -h -o %i 2>/dev/null) 2>/dev/null || true
    fi
    local jobs deadline=$((SECONDS + 10))
    while :; do
        mapfile -t jobs < <(job_processes)
        [ ${#jobs[@]} -eq 0 ] && break
        if [ $SECONDS -ge $deadline ]; then
            kill -KILL "${jobs[@]}" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    # Then the Slurm daemons, and munge last (they authenticate their
    # goodbyes through it).
    local slurm_daemons=()
    for file in $(daemon_pid_files | grep -v munged); do
        if pid="$(live_pid "$file")"; then slurm_daemons+=("$pid"); fi
    done
    stop_pids "${slurm_daemons[@]}"
    if pid="$(live_pid "$dir/run/munged.pid")"; then stop_pids "$pid"; fi
    mapfile -t jobs < <(job_processes)
    stop_pids "${jobs[@]}"
    rm -f "$dir"/run/*.pid
    echo "slurm cluster: down"
}

status() {
    local file pid name
    for file in $(daemon_pid_files); do
        name="$(basename "$file" .pid)"
        if pid="$(live_pid "$file")"; then echo "$name: running (pid $pid)"; else echo "$name: not running"; fi
    done
    if is_up; then
        slurm sinfo -N
    else
        echo "slurm cluster: not up (state in $dir)"
        return 1
    fi
}

case "$command" in
    up) up ;;
    down) down ;;
    status) status ;;
    env) echo "export SLURM_CONF=$conf" ;;
    *) usage ;;
esac
