#!/usr/bin/env python3
"""Prints the GPU benchmark table: ours (tests/gpu_bench.rs JSON lines) next to llama-bench's
(-o jsonl) from the same run, with ratios and each engine's share of the decode ceiling.
Usage: ratios.py OURS.jsonl LLAMA.jsonl"""
import json
import os
import sys

ours = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
peer = {}
if os.path.exists(sys.argv[2]):
    for line in open(sys.argv[2]):
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        test = "pp512" if r["n_prompt"] else "tg128"
        peer[(os.path.basename(r["model_filename"]), test)] = (r["avg_ts"], r["stddev_ts"])

print(f"card: {ours[0]['card'] if ours else '?'}")
print(f"{'model':<14}{'test':<7}{'rocmforge':>11}{'llama.cpp':>17}{'ratio':>8}"
      f"{'ceiling':>9}{'ours':>6}{'peer':>6}")
for r in ours:
    for test, key in (("pp512", "pp512_tok_s"), ("tg128", "tg128_tok_s")):
        ts = r[key]
        p = peer.get((r["model"], test))
        peer_s = f"{p[0]:.1f} ± {p[1]:.1f}" if p else "-"
        ratio = f"{ts / p[0]:.2f}x" if p else "-"
        if test == "tg128":
            ceil = r["ceiling_tok_s"]
            shares = f"{ceil:>9.0f}{100 * ts / ceil:>5.0f}%" + (
                f"{100 * p[0] / ceil:>5.0f}%" if p else "     -")
        else:
            shares = ""
        print(f"{r['model']:<14}{test:<7}{ts:>11.1f}{peer_s:>17}{ratio:>8}{shares}")
