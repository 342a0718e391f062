#!/usr/bin/env python3
"""Merges dump_logits `vary` outputs (one per prompt) into one JSON document: per variant,
the worst case over all prompts plus the per-prompt rows, and prints a Markdown table of the
worst cases to stderr (pasted into tests/fixtures/README.md)."""
import json
import sys

runs = [json.load(open(p)) for p in sys.argv[1:]]
variants = {}
for run in runs:
    for v in run["variants"]:
        row = {k: v[k] for k in v if k not in ("name", "settings")}
        row["prompt_file"] = run["prompt_file"]
        row.setdefault("n_positions", run["n_positions"])
        e = variants.setdefault(v["name"], {"name": v["name"], "settings": v["settings"], "per_prompt": []})
        e["per_prompt"].append(row)

out = {"llama_cpp": runs[0]["llama_cpp"], "base": runs[0]["base"], "variants": []}
for e in variants.values():
    rows = e["per_prompt"]
    margins = rows[0]["top1_flips_with_margin_over"].keys()
    worst = {
        "n_positions": sum(r["n_positions"] for r in rows),
        "max_abs_dlogit_top5": max(r["max_abs_dlogit_top5"] for r in rows),
        "mean_abs_dlogit_top5": sum(r["mean_abs_dlogit_top5"] * r["n_positions"] for r in rows)
        / sum(r["n_positions"] for r in rows),
        "max_abs_dlogit_all": max(r["max_abs_dlogit_all"] for r in rows),
        "top1_flips": sum(r["top1_flips"] for r in rows),
        "max_base_margin_at_flip": max(r["max_base_margin_at_flip"] for r in rows),
        "top1_flips_with_margin_over": {
            m: sum(r["top1_flips_with_margin_over"][m] for r in rows) for m in margins
        },
    }
    out["variants"].append({"name": e["name"], "settings": e["settings"], "all_prompts": worst, "per_prompt": rows})

json.dump(out, sys.stdout, indent=1)
sys.stdout.write("\n")

err = sys.stderr
err.write("| variant (vs base) | positions | max abs dlogit top-5 | mean abs dlogit top-5 | max abs dlogit all | top-1 flips | largest base margin at a flip |\n")
err.write("|---|---|---|---|---|---|---|\n")
for v in out["variants"]:
    w = v["all_prompts"]
    margin = "-" if w["top1_flips"] == 0 else f"{w['max_base_margin_at_flip']:.4f}"
    err.write(
        f"| {v['name']} | {w['n_positions']} | {w['max_abs_dlogit_top5']:.4f} | {w['mean_abs_dlogit_top5']:.4f} "
        f"| {w['max_abs_dlogit_all']:.4f} | {w['top1_flips']} | {margin} |\n"
    )
