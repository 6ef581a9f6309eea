#!/usr/bin/env python3
"""Calls per iteration between two callgrind profiles of the same program.

    callsum.py SHORT.out LONG.out ITERATIONS

SHORT and LONG are callgrind output files of one thread that ran the same
code for two numbers of iterations; ITERATIONS is their difference. Prints
the calls per iteration in total and per callee, largest first: under the
VM's emulation every call costs several plain instructions' time, so this
is the count to keep small on a busy-polling path (scripts/count-verbs.sh).
"""
import collections
import re
import sys


def calls_by_callee(path):
    names, calls, callee = {}, collections.Counter(), None
    with open(path, errors="replace") as lines:
        for line in lines:
            named = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line)
            if named:
                kind, number, name = named.groups()
                if name:
                    names[number] = name.strip()
                if kind == "cfn":
                    callee = names.get(number, number)
                continue
            counted = re.match(r"calls=(\d+)", line)
            if counted and callee:
                calls[callee] += int(counted.group(1))
    return calls


def main():
    short, long, iterations = calls_by_callee(sys.argv[1]), calls_by_callee(sys.argv[2]), float(sys.argv[3])
    total = (sum(long.values()) - sum(short.values())) / iterations
    print(f"calls per iteration: {total:.1f}")
    rows = sorted(((long[name] - short.get(name, 0)) / iterations, name) for name in long)
    for per_iteration, name in reversed(rows[-40:]):
        if per_iteration >= 0.5:
            print(f"{per_iteration:7.1f}  {name[:140]}")


if __name__ == "__main__":
    main()
