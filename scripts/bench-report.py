#!/usr/bin/env python3
"""Turns benchmark results into a report: Markdown with plots of latency,
bandwidth and message rate against message size, and a table of medians
with their spread and ratios to raw TCP.

    python3 scripts/bench-report.py RESULTS... --output DIR [--title TEXT]

RESULTS are files or folders (every *.jsonl in a folder) of JSON lines as
the tools write them:
  - fabric-perf --json: the transport (its backend) and its raw-TCP
    reference, one object per test and size with the medians of its
    repetitions;
  - mpibench --json: this MPI, one object per test and size and run;
  - the peers' lines that scripts/bench-mpi.sh writes to peers.jsonl
    (Debian's MPICH and Open MPI running scripts/osu-style.c).
An mpibench row with a "label" (added by the script that ran it, such as
"this MPI (tcp, containers)") is plotted under that name.
Rows of the same series, test and size from several runs (bench-mpi.sh's
rounds) are pooled: the point is their median, the bar their range.

Plots are drawn with matplotlib (installed with pip if missing). DIR gets
report.md and one PNG per plot; docs/report/ holds one made this way.
"""
import argparse
import collections
import re
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys


def load_matplotlib():
    try:
        import matplotlib
    except ImportError:
        print("bench-report: installing matplotlib (pip)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"], check=True)
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    return pyplot


# What each tool's tests measure, and the kind of plot they belong to.
FABRIC_TESTS = {
    "lat-send": "latency", "lat-write": None, "lat-read": None, "lat-fadd": None, "lat-cas": None,
    "bw-write": "bandwidth", "bw-read": None, "bw-send": None, "rate-send": "rate",
}
MPI_TESTS = {"latency": "latency", "bw": "bandwidth", "bibw": "bidirectional", "mbw_mr": "rate"}
KINDS = {
    "latency": ("one-way latency", "µs (lower is better)", True),
    "bandwidth": ("bandwidth", "MB/s (higher is better)", False),
    "bidirectional": ("bidirectional bandwidth", "MB/s (higher is better)", False),
    "rate": ("message rate", "messages/s (higher is better)", False),
}


class Results:
    def __init__(self):
        # (kind, series) -> size -> [values]
        self.points = collections.defaultdict(lambda: collections.defaultdict(list))
        self.other = collections.defaultdict(list)   # rows that fit no plot: (series, test, ranks, size) -> values
        self.units = {}
        self.sources = []
        self.cache = []

    def add_file(self, path):
        self.sources.append(path)
        with open(path) as file:
            for number, line in enumerate(file, 1):
                line = line.strip()
                if not line or not line.startswith("{"):
                    continue
                try:
                    row = json.loads(line)
                except ValueError as error:
                    sys.exit(f"bench-report: {path}:{number}: not JSON: {error}")
                self.add(row, f"{path}:{number}")

    def add(self, row, where):
        if "label" in row and "copiedBytesPerMessage" in row:   # mpibench, named by the script that ran it
            self.add_mpi(row["label"], row, where)
        elif "mpi" in row:                        # a peer's line (bench-mpi.sh)
            self.add_mpi(f"{row['mpi']}", row, where)
        elif "copiedBytesPerMessage" in row:      # mpibench
            backend = row.get("backend", "?")
            self.add_mpi(f"this MPI ({backend})", row, where)
        elif "metric" in row:                     # fabric-perf
            self.add_fabric(row, where)
        else:
            sys.exit(f"bench-report: {where}: a row of no known tool (keys: {', '.join(sorted(row))})")

    def add_mpi(self, series, row, where):
        try:
            test, size, ranks = row["test"], int(row["size"]), int(row.get("ranks", 2))
            values = [float(v) for v in row.get("repetitionValues") or [row["median"]]]
        except (KeyError, ValueError) as error:
            sys.exit(f"bench-report: {where}: missing or bad field {error}")
        kind = MPI_TESTS.get(test)
        if kind and ranks == 2:
            self.points[(kind, series)][size].extend(values)
        else:
            self.other[(series, test, ranks, size)].extend(values)
            self.units[(series, test)] = row.get("unit", "")

    def add_fabric(self, row, where):
        try:
            test, size, backend = row["test"], int(row["size"]), row["backend"]
            values = [float(v) for v in row.get("repetitionMedians") or [row["median"]]]
        except (KeyError, ValueError) as error:
            sys.exit(f"bench-report: {where}: missing or bad field {error}")
        # One test per plot: lat-send, bw-write, rate-send; the others go
        # to the table of other rows.
        series = "raw TCP" if backend == "raw-tcp" else f"transport ({backend}, fabric-perf)"
        if "label" in row:
            series = row["label"]
        if row.get("queuePairs", 1) != 1 or row.get("postList", 1) != 1 or row.get("mode", "poll") != "poll":
            series += f" qp={row.get('queuePairs', 1)} list={row.get('postList', 1)} {row.get('mode', 'poll')}"
        kind = FABRIC_TESTS.get(test)
        if kind:
            self.points[(kind, series)][size].extend(values)
        else:
            self.other[(series, test, 2, size)].extend(values)
            self.units[(series, test)] = row.get("unit", "")


def median(values):
    return statistics.median(values) if values else None


def spread(values):
    middle = median(values)
    return (max(values) - min(values)) / middle * 100 if values and middle else 0.0


def size_label(size):
    if size >= 1 << 20 and size % (1 << 20) == 0:
        return f"{size >> 20} MiB"
    if size >= 1 << 10 and size % (1 << 10) == 0:
        return f"{size >> 10} KiB"
    return f"{size} B"


# Series order and colours: ours first, then the transport, raw TCP, peers.
def series_order(name):
    for rank, prefix in enumerate(["this MPI", "transport", "raw TCP", "mpich", "openmpi"]):
        if name.startswith(prefix):
            return (rank, name)
    return (9, name)


def plot(pyplot, results, kind, path):
    title, axis, logarithmic = KINDS[kind]
    series = sorted({name for (k, name) in results.points if k == kind}, key=series_order)
    if not series:
        return False
    figure, axes = pyplot.subplots(figsize=(7.5, 4.5), dpi=110)
    for name in series:
        by_size = results.points[(kind, name)]
        sizes = sorted(by_size)
        middles = [median(by_size[s]) for s in sizes]
        low = [m - min(by_size[s]) for s, m in zip(sizes, middles)]
        high = [max(by_size[s]) - m for s, m in zip(sizes, middles)]
        style = "-o" if name.startswith("this MPI") else ("--s" if name.startswith("raw") else "-.^")
        axes.errorbar(sizes, middles, yerr=[low, high], fmt=style, capsize=3, markersize=4, linewidth=1.4, label=name)
    # A series measured on an emulated link named in its label ("link
    # rate=10Gbit/s,..."): its rate as a line on the bandwidth plots.
    if kind in ("bandwidth", "bidirectional"):
        for name in series:
            match = re.search(r"rate=([0-9.]+)Gbit/s", name)
            if match:
                megabytes = float(match.group(1)) * 1e9 / 8 / 1e6
                axes.axhline(megabytes, linestyle=":", color="grey", linewidth=1)
                axes.annotate(f"link rate {match.group(1)} Gbit/s", (min(results.points[(kind, name)]), megabytes),
                              textcoords="offset points", xytext=(0, 4), fontsize=8, color="grey")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    sizes = sorted({s for name in series for s in results.points[(kind, name)]})
    axes.set_xticks(sizes)
    axes.set_xticklabels([size_label(s) for s in sizes], rotation=30)
    axes.set_xlabel("message size")
    axes.set_ylabel(axis)
    axes.set_title(f"{title} (median over repetitions, bars: range)")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
    return True


def table(results, kind):
    title, axis, lower_is_better = KINDS[kind]
    series = sorted({name for (k, name) in results.points if k == kind}, key=series_order)
    raw = results.points.get((kind, "raw TCP"), {})
    sizes = sorted({s for name in series for s in results.points[(kind, name)]})
    lines = [f"| {title} | " + " | ".join(size_label(s) for s in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for name in series:
        cells = []
        for size in sizes:
            values = results.points[(kind, name)].get(size)
            if not values:
                cells.append("-")
                continue
            text = f"{median(values):.4g} ({spread(values):.0f}%, n={len(values)})"
            if name != "raw TCP" and raw.get(size):
                text += f" **{median(values) / median(raw[size]):.2f}×**"
            cells.append(text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description="Benchmark results (JSON lines) to a Markdown report with plots.")
    parser.add_argument("results", nargs="+", help="files or folders of JSON lines")
    parser.add_argument("--output", required=True, help="folder for report.md and the plots")
    parser.add_argument("--title", default="Benchmark report")
    parser.add_argument("--note", action="append", default=[], help="a line for the report's header (how it was made)")
    arguments = parser.parse_args()

    results = Results()
    for item in arguments.results:
        if os.path.isdir(item):
            files = sorted(os.path.join(item, name) for name in os.listdir(item) if name.endswith(".jsonl"))
            if not files:
                sys.exit(f"bench-report: {item} holds no *.jsonl files")
            for path in files:
                results.add_file(path)
        elif os.path.isfile(item):
            results.add_file(item)
        else:
            sys.exit(f"bench-report: {item}: no such file or folder")
    if not results.points and not results.other:
        sys.exit("bench-report: the results hold no rows")

    pyplot = load_matplotlib()
    os.makedirs(arguments.output, exist_ok=True)
    out = [f"# {arguments.title}", ""]
    out.append(f"Made {datetime.date.today().isoformat()} by `scripts/bench-report.py` on {platform.node() or 'this machine'} "
               f"({os.cpu_count()} CPUs, Linux {platform.release()}) from: "
               + ", ".join(f"`{path}`" for path in results.sources) + ".")
    for note in arguments.note:
        out += ["", note]
    out += ["", "Each point is the median over the repetitions (runs pooled), the bar or the percentage its range; "
            "**bold** is the ratio to raw TCP at that size (latency: below 1 is faster; bandwidth and rate: above 1 is faster). "
            "Raw TCP is fabric-perf's reference in the same run, with the same waiting style: one send(2) per message and the "
            "same window, so an MPI that packs small messages into fewer frames can exceed it at small sizes.", ""]
    for kind in KINDS:
        name = f"{kind}.png"
        if plot(pyplot, results, kind, os.path.join(arguments.output, name)):
            out += [f"## {KINDS[kind][0].capitalize()}", "", f"![{KINDS[kind][0]}]({name})", "", table(results, kind), ""]
    if results.other:
        out += ["## Other rows", "", "| series | test | ranks | size | median | spread |", "|---|---|---|---|---|---|"]
        for (series, test, ranks, size), values in sorted(results.other.items(), key=lambda item: (series_order(item[0][0]), item[0][1:])):
            unit = results.units.get((series, test), "")
            out.append(f"| {series} | {test} | {ranks} | {size_label(size)} | {median(values):.4g} {unit} | {spread(values):.0f}% |")
        out.append("")
    with open(os.path.join(arguments.output, "report.md"), "w") as file:
        file.write("\n".join(out))
    print(f"bench-report: {os.path.join(arguments.output, 'report.md')} and its plots")


if __name__ == "__main__":
    main()
