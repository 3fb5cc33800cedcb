#!/usr/bin/env python3
"""Pools harness runs and compares one target with others round by round.

Reads the `raw.tsv` of each result directory that bench/compare.sh (the harness's run.sh)
wrote, pairs each round's figure for TARGET with the same round's figure for every other
proxy target, and prints per test and metric the median of TARGET's figure over the
other's, with the number of rounds in which TARGET was the better (higher for cps and
gbps, lower for everything else). Rounds are paired within their own run, so the drift of
the machine between runs falls on both sides alike; pooling runs gives more rounds than
the harness's time limit allows in one.

    bench/paired.py /tmp/pbench/results/P16 /tmp/pbench/results/P17
    TARGET=portcullis TESTS="lat rate" bench/paired.py DIR...
"""

import os
import statistics
import sys
from collections import defaultdict

HIGHER_IS_BETTER = {"cps", "gbps"}
METRICS = ["cps", "gbps", "p50_us", "p99_us", "proxy_cpu_us_per_conn", "proxy_cpu_s_per_GB",
           "proxy_rss_bytes_per_conn"]
REFERENCES = ["haproxy", "haproxy-splice", "nginx"]


def rounds(dirs):
    """{(test, metric): [{target: value} per round]} over every run."""
    found = defaultdict(lambda: defaultdict(dict))
    for run, path in enumerate(dirs):
        with open(os.path.join(path, "raw.tsv")) as raw:
            for line in raw:
                fields = line.rstrip("\n").split("\t")
                if len(fields) < 5:
                    continue
                test, rnd, target, metric, value = fields[:5]
                try:
                    found[(test, metric)][(run, rnd)][target] = float(value)
                except ValueError:
                    continue
    return {key: list(by_round.values()) for key, by_round in found.items()}


def main():
    dirs = sys.argv[1:]
    if not dirs:
        sys.exit(__doc__)
    target = os.environ.get("TARGET", "portcullis")
    tests = os.environ.get("TESTS", "").split()
    pooled = rounds(dirs)
    present = {t for by_round in pooled.values() for r in by_round for t in r}
    refs = [r for r in REFERENCES if r in present]
    print(f"{target} against each reference, paired by round over {len(dirs)} run(s):")
    print("median ratio (rounds in which it was the better / rounds)\n")
    print("| test | metric | " + " | ".join(f"against {r}" for r in refs) + " |")
    print("|---|---|" + "---|" * len(refs))
    for (test, metric), by_round in sorted(pooled.items()):
        if metric not in METRICS or (tests and test not in tests):
            continue
        cells = []
        for ref in refs:
            ratios = [r[target] / r[ref] for r in by_round if target in r and r.get(ref)]
            if not ratios:
                cells.append("-")
                continue
            if metric in HIGHER_IS_BETTER:
                better = sum(x > 1 for x in ratios)
            else:
                better = sum(x < 1 for x in ratios)
            cells.append(f"{statistics.median(ratios):.3f} ({better}/{len(ratios)})")
        if any(c != "-" for c in cells):
            print(f"| {test} | {metric} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
