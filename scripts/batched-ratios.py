#!/usr/bin/env python3
"""Prints the batched benchmark side by side: `rocmforge_bench batched --jsonl` next to
llama.cpp's `llama-batched-bench --output-format jsonl` from the same run, per (PP, TG, B):
prefill (S_PP), generation (S_TG) and total (S) tokens/s of each and their ratios. When a file
holds several runs of the same row (rounds), each engine's rows are averaged and the spread
(min..max of the per-round ratio) shown.
Usage: batched-ratios.py OURS.jsonl LLAMA.jsonl [LABEL]"""
import json
import sys
from collections import defaultdict


def rows(path):
    out = []
    for line in open(path, errors="replace"):
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


ours_all = rows(sys.argv[1])
peer_all = rows(sys.argv[2])
label = sys.argv[3] if len(sys.argv) > 3 else ""
for r in ours_all:
    if "cpu" in r:
        print(f"cpu: {r['cpu']}   flags: {r['flags']}")
        print(f"rocmforge ISA: {r['isa']}   kernels: {', '.join(r['kernels'])}")
        break
ours = defaultdict(list)
peer = defaultdict(list)
for r in ours_all:
    if r.get("test") == "batched":
        ours[(r["pp"], r["tg"], r["pl"])].append(r)
for r in peer_all:
    if "speed_tg" in r:
        peer[(r["pp"], r["tg"], r["pl"])].append(r)
first = next(iter(ours.values()), [{}])[0]
pfirst = next(iter(peer.values()), [{}])[0]
print(f"{label}rocmforge: device {first.get('device', '?')}, layout {first.get('layout', '?')}, "
      f"threads {first.get('n_threads', '?')}, n_batch {first.get('n_batch', '?')}   "
      f"llama.cpp: threads {pfirst.get('n_threads', '?')}, n_batch {pfirst.get('n_batch', '?')}, "
      f"n_ubatch {pfirst.get('n_ubatch', '?')}, flash_attn {pfirst.get('flash_attn', '?')}, "
      f"rounds {max((len(v) for v in ours.values()), default=0)}")
print(f"{'PP':>5}{'TG':>5}{'B':>4} | {'S_PP ours':>10}{'llama':>9}{'ratio':>7} | "
      f"{'S_TG ours':>10}{'llama':>9}{'ratio':>7}{'spread':>12} | {'S ours':>8}{'llama':>9}{'ratio':>7}")


def mean(xs):
    return sum(xs) / len(xs)


for key in sorted(ours):
    o, p = ours[key], peer.get(key, [])
    line = f"{key[0]:>5}{key[1]:>5}{key[2]:>4} |"
    for field, width in (("speed_pp", 10), ("speed_tg", 10), ("speed", 8)):
        mo = mean([r[field] for r in o])
        if p:
            mp = mean([r[field] for r in p])
            line += f"{mo:>{width}.1f}{mp:>9.1f}{mo / mp:>6.2f}x"
            if field == "speed_tg":
                per_round = [a[field] / b[field] for a, b in zip(o, p)]
                line += f"{min(per_round):>6.2f}..{max(per_round):.2f}" if len(per_round) > 1 else f"{'':>12}"
        else:
            line += f"{mo:>{width}.1f}{'-':>9}{'-':>7}" + (f"{'':>12}" if field == "speed_tg" else "")
        line += " |" if field != "speed" else ""
    print(line)
