#!/usr/bin/env python3
"""The MPI jobs issue's figures, measured side by side in one run.

- Start-up: wall time from launch until every rank has passed the first
  barrier (each rank prints the CLOCK_REALTIME at which its initialisation,
  whose last step is the first fence, returned; the launch time is taken
  just before the launcher starts), for 1, 2, 4, 8 ranks under our mpirun
  and under MPICH's Hydra (our ranks), MPICH's own hello (MPI_Init) under
  mpiexec.hydra as the reference, and, where set up, 3 hosts through ssh
  (FABRIC_BENCH_HOSTS_STATE, scripts/netns-hosts.sh) and Slurm
  (SLURM_CONF, scripts/slurm-cluster.sh). Repetitions interleaved.
- First message to a new peer (the connection made on first use) p50/p99,
  beside the transport's connect time (fabric-perf setup, one at a time).
- Resident memory of mpirun and of a proxy, per rank.

usage: scripts/bench-mpi-startup.py [REPETITIONS] (default 10); run from the
package root after `swift build -c release` (BUILD=.build/release).
"""
import os, re, statistics, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
build = os.path.join(root, os.environ.get("BUILD", ".build/release"))
mpirun = os.path.join(build, "mpirun")
check = os.path.join(build, "mpi-runtime-check")
reps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
hydra = "/usr/bin/mpiexec.hydra" if os.path.exists("/usr/bin/mpiexec.hydra") else None
mpicc = "/usr/bin/mpicc.mpich" if os.path.exists("/usr/bin/mpicc.mpich") else None
hosts_state = os.environ.get("FABRIC_BENCH_HOSTS_STATE")
slurm = os.environ.get("SLURM_CONF")
environment = {k: v for k, v in os.environ.items() if k != "FABRIC_JOB_SECRET"}

reference = None
if mpicc:
    directory = tempfile.mkdtemp(prefix="mpich-startup-")
    source = os.path.join(directory, "startup.c")
    with open(source, "w") as f:
        f.write("""#include <mpi.h>
#include <stdio.h>
#include <time.h>
int main(int argc, char **argv) {
    struct timespec now;
    int rank;
    MPI_Init(&argc, &argv);
    clock_gettime(CLOCK_REALTIME, &now);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    printf("rank %d passed the first barrier at %lld ns\\n", rank, (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
    MPI_Finalize();
    return 0;
}
""")
    reference = os.path.join(directory, "startup")
    subprocess.run([mpicc, "-O2", source, "-o", reference], check=True)

configs = []
for n in (1, 2, 4, 8):
    configs.append((f"mpirun, {n} ranks", [mpirun, "-n", str(n), check, "startup"], n, {}))
    if hydra:
        configs.append((f"Hydra, {n} ranks (ours)", [hydra, "-n", str(n), check, "startup"], n, {}))
    if reference:
        configs.append((f"Hydra, {n} ranks (MPICH hello)", [hydra, "-n", str(n), reference], n, {}))
if hosts_state:
    ssh = open(os.path.join(hosts_state, "ssh-command")).read().strip()
    for n in (3, 6):
        configs.append((f"mpirun, 3 hosts, {n} ranks", ["ip", "netns", "exec", "fabric-h1", mpirun, "--launcher-exec", ssh,
                        "-f", os.path.join(hosts_state, "hostfile"), "-ppn", str(n // 3), "-n", str(n), check, "startup"], n, {}))
if slurm:
    # The one-machine cluster has 3 nodes of 2 CPUs: 6 tasks at most.
    for n in (1, 2, 4, 6):
        configs.append((f"srun --mpi=pmi2, {n} ranks", ["srun", "-N", str(min(n, 3)), "-n", str(n), "--mpi=pmi2", check, "startup"], n, {}))

def start_up(command, n, extra):
    launched = time.time_ns()
    result = subprocess.run(command, capture_output=True, text=True, env={**environment, **extra}, timeout=120)
    times = [int(t) for t in re.findall(r"passed the first barrier at (\d+) ns", result.stdout)]
    if result.returncode != 0 or len(times) != n:
        raise RuntimeError(f"{command}: status {result.returncode}, {len(times)} of {n} ranks: {result.stdout[-500:]} {result.stderr[-500:]}")
    return (max(times) - launched) / 1e6

samples = {name: [] for name, _, _, _ in configs}
for rep in range(reps):
    for name, command, n, extra in configs:
        samples[name].append(start_up(command, n, extra))

print(f"start-up: launch until every rank passed the first barrier, ms ({reps} interleaved repetitions; load average {os.getloadavg()[0]:.1f})")
print(f"{'configuration':40} {'median':>8} {'min':>8} {'max':>8}")
for name, _, _, _ in configs:
    values = samples[name]
    print(f"{name:40} {statistics.median(values):8.1f} {min(values):8.1f} {max(values):8.1f}")

# First message to a new peer.
first, second = [], []
for rep in range(reps):
    result = subprocess.run([mpirun, "-n", "8", check, "first-contact"], capture_output=True, text=True, env=environment, timeout=120)
    for a, b in re.findall(r"first-contact-us ([\d,]+) second-us ([\d,]+)", result.stdout):
        first += [int(x) for x in a.split(",")]
        second += [int(x) for x in b.split(",")]
def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]
print()
print(f"first runtime message to a new peer (8 ranks, each to the 7 others in turn, {len(first)} samples), us:")
print(f"  first message (connection made on first use): p50 {percentile(first, 50)}, p99 {percentile(first, 99)}")
print(f"  second message to the same peer:               p50 {percentile(second, 50)}, p99 {percentile(second, 99)}")
setup = subprocess.run([os.path.join(build, "fabric-perf"), "setup", "--in-flight", "8", "--rounds", str(reps), "--hold", "0"],
                       capture_output=True, text=True, env=environment, timeout=300)
print("  transport's set-up (fabric-perf setup, same run):")
for line in setup.stdout.splitlines():
    if "p50" in line or "alone" in line or "flight" in line:
        print("    " + line.strip())

# Resident memory of mpirun and of a proxy.
def resident_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

def sample_memory(command, find_proxy=False):
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    time.sleep(1.5)
    target = process.pid
    if find_proxy:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    cmd = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
                except OSError:
                    continue
                if len(cmd) >= 2 and cmd[0].endswith(b"mpirun") and cmd[1] == b"--proxy":
                    target = int(entry)
    kib = resident_kib(target)
    process.wait()
    return kib

shell = os.path.join(tempfile.mkdtemp(prefix="here-shell-"), "here")
with open(shell, "w") as f:
    f.write('#!/bin/sh\nshift\nexec sh -c "$*"\n')
os.chmod(shell, 0o755)
print()
print("resident memory (VmRSS) while the ranks run, KiB:")
for label, proxy in (("mpirun", False), ("proxy (mpirun --proxy)", True)):
    values = {}
    for n in (1, 16):
        if proxy:
            command = [mpirun, "--launcher-exec", shell, "-H", f"far-host:{n}", "-n", str(n), "sleep", "3"]
        else:
            command = [mpirun, "-n", str(n), "sleep", "3"]
        values[n] = statistics.median([sample_memory(command, proxy) for _ in range(3)])
    per_rank = (values[16] - values[1]) / 15
    print(f"  {label:24} 1 rank {values[1]}, 16 ranks {values[16]}: {per_rank:.0f} KiB per rank")
