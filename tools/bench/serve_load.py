#!/usr/bin/env python3
"""Load benchmark of OpenAI-compatible servers on loopback (ours and llama.cpp's llama-server).

For each server URL and each concurrency C: C client threads stream completions (greedy,
ignore_eos, a fixed number of tokens) until a bounded number of requests is done; reports total
generated tokens/s, time to first token and inter-token latency (p50, p99). Then the prefix
check: a request with a ~500-token prefix, then another sharing that prefix; the second's time
to first token should be at most a fifth of the first's.

Usage: serve_load.py NAME=URL [NAME=URL ...] [--conc 1,8,32] [--tokens 32] [--requests-per-client 2]
Standard library only; nothing leaves 127.0.0.1.
"""
import argparse
import http.client
import json
import threading
import time
import urllib.parse

TOPICS = ["the sea", "a mountain", "bread", "trains", "a library", "winter", "a garden", "music",
          "the moon", "coffee", "a bridge", "rain", "chess", "a forest", "the desert", "bees"]


def stream(url, prompt, n_tokens):
    """(ttft, [inter-token gaps], tokens) of one streamed completion."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    body = {"prompt": prompt, "max_tokens": n_tokens, "temperature": 0, "stream": True,
            "ignore_eos": True}
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200, (resp.status, resp.read())
    ttft, last, gaps, tokens = None, None, [], 0
    for line in resp:
        line = line.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        ev = json.loads(line[6:])
        if not ev.get("choices") or ev["choices"][0].get("finish_reason"):
            continue
        now = time.perf_counter()
        tokens += 1
        if ttft is None:
            ttft = now - t0
        else:
            gaps.append(now - last)
        last = now
    conn.close()
    return ttft, gaps, tokens


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def load(url, conc, n_tokens, per_client):
    results, lock = [], threading.Lock()

    def client(c):
        for r in range(per_client):
            topic = TOPICS[(c * per_client + r) % len(TOPICS)]
            out = stream(url, f"Client {c}, request {r}: write a short essay about {topic}.", n_tokens)
            with lock:
                results.append(out)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttfts = [r[0] for r in results]
    gaps = [g for r in results for g in r[1]]
    tokens = sum(r[2] for r in results)
    return {"tok_s": tokens / wall, "ttft_p50": pct(ttfts, 50), "ttft_p99": pct(ttfts, 99),
            "itl_p50": pct(gaps, 50), "itl_p99": pct(gaps, 99), "requests": len(results)}


def prefix_check(url):
    prefix = "You are a careful assistant. " + " ".join(
        f"Rule {i}: answer briefly and cite rule {i}." for i in range(45))
    first, _, _ = stream(url, prefix + " Question: what is 2+2?", 4)
    second, _, _ = stream(url, prefix + " Question: what is 3+3?", 4)
    return first, second


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("servers", nargs="+", help="NAME=URL")
    ap.add_argument("--conc", default="1,8,32")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--requests-per-client", type=int, default=2)
    a = ap.parse_args()
    print("| server | clients | requests | tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in a.servers:
        name, url = spec.split("=", 1)
        stream(url, "Warm up.", 4)
        for c in map(int, a.conc.split(",")):
            r = load(url, c, a.tokens, a.requests_per_client)
            print(f"| {name} | {c} | {r['requests']} | {r['tok_s']:.1f} | {r['ttft_p50']*1e3:.0f} | "
                  f"{r['ttft_p99']*1e3:.0f} | {r['itl_p50']*1e3:.1f} | {r['itl_p99']*1e3:.1f} |", flush=True)
    for spec in a.servers:
        name, url = spec.split("=", 1)
        first, second = prefix_check(url)
        print(f"prefix check {name}: first TTFT {first*1e3:.0f} ms, second (shared ~500-token "
              f"prefix) {second*1e3:.0f} ms, ratio {second/first:.2f}")


if __name__ == "__main__":
    main()
