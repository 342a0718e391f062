#!/usr/bin/env python3
"""Per-kernel time of one decode token from scripts/gpu/profile.sh's Nsight Compute CSV.

Tokens are delimited by the embedding kernel (the first kernel of every pass); only whole
passes count. Prints microseconds per token for each kernel name, and the total."""
import csv
import sys
from collections import defaultdict


def main(path):
    with open(path) as f:
        lines = [l for l in f if l.startswith('"')]
    rows = list(csv.DictReader(lines))
    # (--print-units base: nanoseconds; the units row and any non-kernel rows drop out here)
    def number(r):
        v = r.get("gpu__time_duration.sum", "").replace(",", "")
        try:
            return float(v)
        except ValueError:
            return None

    rows = [r for r in rows if number(r) is not None]
    names = [r["Kernel Name"].split("(")[0].split("<")[0].replace("void ", "") for r in rows]
    full = [r["Kernel Name"] for r in rows]
    ns = [number(r) for r in rows]
    starts = [i for i, n in enumerate(names) if n.startswith("embed")]
    if len(starts) < 2:
        sys.exit(f"{path}: fewer than two whole passes profiled")
    per = defaultdict(float)
    count = defaultdict(int)
    tokens = len(starts) - 1
    for i in range(starts[0], starts[-1]):
        key = full[i].split("(")[0].replace("void ", "")
        per[key] += ns[i] / tokens
        count[key] += 1
    total = sum(per.values())
    print(f"{path}: {tokens} tokens, {sum(count.values()) // tokens} kernels per token")
    for k, v in sorted(per.items(), key=lambda kv: -kv[1]):
        print(f"{v / 1000:9.1f} us  {count[k] // tokens:4d}x  {k}")
    print(f"{total / 1000:9.1f} us  per token, kernels serialised")


if __name__ == "__main__":
    for p in sys.argv[1:]:
        main(p)
