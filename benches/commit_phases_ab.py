#!/usr/bin/env python3
"""A/B of `examples/commit_phases.rs` builds, alternated, with CPU time per transaction.

    python3 benches/commit_phases_ab.py PAIRS NAME=BINARY [NAME=BINARY ...]

Build each variant (`cargo build --release --example commit_phases`) and copy
`target/release/examples/commit_phases` away under a name of its own. Each workload runs every
binary once per pair, in an order reversed every other pair, under `perf stat -e task-clock`
(the process's CPU time: committers, the log's thread, the segment preparer). Prints, per
workload and binary, the median transactions/s, its range, and the median CPU µs per
transaction; then the ratio of the last binary's median to the first's. `WORK=0,2` picks
workloads by index. Used for `docs/bench/2core-ab.md`.
"""
import os
import re
import statistics
import subprocess
import sys
import tempfile

WORKLOADS = [
    ("50-put, 10 thr, Sync", "3 50 10 sync"),
    ("50-put, 1 thr, None", "2 50 1 none"),
    ("1-put, 1 thr, None", "2 1 1 none"),
    ("1-put, 64 thr, Sync", "3 1 64 sync"),
    ("1-put, 16 thr, Sync", "3 1 16 sync"),
    ("1-put, 1 thr, Sync", "3 1 1 sync"),
    ("1-put, 4 thr, Sync", "3 1 4 sync"),
]


def run(binary, args, stat_path):
    out = subprocess.run(
        ["perf", "stat", "-x,", "-e", "task-clock", "-o", stat_path, binary] + args.split(),
        capture_output=True, text=True, check=True,
    ).stdout
    rate = float(re.search(r": (\d+) txn/s", out).group(1))
    seconds = float(args.split()[0])
    lines = [l for l in open(stat_path).read().splitlines() if "task-clock" in l]
    task_clock_ms = float(lines[-1].split(",")[0])
    return rate, task_clock_ms * 1000 / (rate * seconds)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    pairs = int(sys.argv[1])
    variants = [a.split("=", 1) for a in sys.argv[2:]]
    picked = os.environ.get("WORK")
    work = [w for i, w in enumerate(WORKLOADS) if picked is None or str(i) in picked.split(",")]
    stat_path = os.path.join(tempfile.mkdtemp(), "perf-stat")
    for name, args in work:
        rates = {v: [] for v, _ in variants}
        cpu = {v: [] for v, _ in variants}
        for p in range(pairs):
            for v, binary in (variants if p % 2 == 0 else variants[::-1]):
                r, c = run(binary, args, stat_path)
                rates[v].append(r)
                cpu[v].append(c)
        cells = [
            f"{v} median {statistics.median(rates[v]):,.0f} txn/s "
            f"({min(rates[v]):,.0f}–{max(rates[v]):,.0f}), CPU {statistics.median(cpu[v]):.1f} µs/txn"
            for v, _ in variants
        ]
        first, last = variants[0][0], variants[-1][0]
        ratio = statistics.median(rates[last]) / statistics.median(rates[first])
        print(f"{name}: " + "; ".join(cells) + f"; ratio {ratio:.2f}", flush=True)


if __name__ == "__main__":
    main()
