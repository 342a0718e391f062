#!/usr/bin/env python3
"""Per-kernel time of one decode token from scripts/gpu/profile.sh's Nsight Compute CSV.

Tokens are delimited by the embedding kernel (the first kernel of every pass); only whole
passes count. Prints microseconds per token for each kernel name, and the total. With
BY_GRID=1 launches are told apart by grid size too (the products of one layer: Q|K|V, output,
gate|up, down); where the CSV has `dram__bytes_read.sum`, the DRAM bytes read per token and
the bandwidth each kernel reached are printed beside its time."""
import csv
import os
import sys
from collections import defaultdict


def number(r, key):
    v = r.get(key, "").replace(",", "")
    try:
        return float(v)
    except ValueError:
        return None


def main(path):
    with open(path) as f:
        lines = [l for l in f if l.startswith('"')]
    rows = list(csv.DictReader(lines))
    # (--print-units base: nanoseconds and bytes; the units row and any non-kernel rows drop
    # out here)
    rows = [r for r in rows if number(r, "gpu__time_duration.sum") is not None]
    names = [r["Kernel Name"].split("(")[0].split("<")[0].replace("void ", "") for r in rows]
    starts = [i for i, n in enumerate(names) if n.startswith("embed")]
    if len(starts) < 2:
        sys.exit(f"{path}: fewer than two whole passes profiled")
    by_grid = os.environ.get("BY_GRID") == "1"
    per = defaultdict(float)
    nbytes = defaultdict(float)
    count = defaultdict(int)
    tokens = len(starts) - 1
    for i in range(starts[0], starts[-1]):
        r = rows[i]
        key = r["Kernel Name"].split("(")[0].replace("void ", "")
        if by_grid:
            key = f"{key} grid {r.get('Grid Size', '?')}"
        per[key] += number(r, "gpu__time_duration.sum") / tokens
        b = number(r, "dram__bytes_read.sum")
        if b is not None:
            nbytes[key] += b / tokens
        count[key] += 1
    total = sum(per.values())
    print(f"{path}: {tokens} tokens, {sum(count.values()) // tokens} kernels per token")
    for k, v in sorted(per.items(), key=lambda kv: -kv[1]):
        bw = ""
        if k in nbytes and v > 0:
            bw = f"  {nbytes[k] / 1e6:8.2f} MB read  {nbytes[k] / v:7.1f} GB/s"
        print(f"{v / 1000:9.1f} us  {count[k] // tokens:4d}x{bw}  {k}")
    tb = sum(nbytes.values())
    tail = f", {tb / 1e6:.1f} MB read ({tb / total:.1f} GB/s)" if tb else ""
    print(f"{total / 1000:9.1f} us  per token, kernels serialised{tail}")


if __name__ == "__main__":
    for p in sys.argv[1:]:
        main(p)
