"""Drives a running rocmforge-server with the official openai package (run by openai_client.rs).

Environment: ROCMFORGE_URL (http://127.0.0.1:PORT), ROCMFORGE_FULL_URL (a server with a queue of
one), ROCMFORGE_EXPECTED (JSON: prompt -> the library's greedy text), ROCMFORGE_MODEL_ID.
"""
import json
import os
import threading
import urllib.error
import urllib.request

import openai

URL = os.environ["ROCMFORGE_URL"]
MODEL = os.environ["ROCMFORGE_MODEL_ID"]
EXPECTED = json.loads(os.environ["ROCMFORGE_EXPECTED"])
client = openai.OpenAI(base_url=URL + "/v1", api_key="unused", max_retries=0, timeout=60)


def raw(path, body=None, data=None):
    """(status, parsed JSON or text) of a plain HTTP call."""
    if body is not None:
        data = json.dumps(body).encode()
    req = urllib.request.Request(URL + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            text = r.read().decode()
            status = r.status
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        status = e.code
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def greedy(prompt, n=16, **kw):
    r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=n, temperature=0, **kw)
    return r.choices[0].text


def streamed(prompt, n=16, **kw):
    parts = []
    for chunk in client.completions.create(
        model=MODEL, prompt=prompt, max_tokens=n, temperature=0, stream=True, **kw
    ):
        if chunk.choices:
            parts.append(chunk.choices[0].text)
    return "".join(parts)


# Greedy over HTTP is the library's greedy text, whole and streamed.
for prompt, text in EXPECTED.items():
    assert greedy(prompt) == text, (prompt, greedy(prompt), text)
    assert streamed(prompt) == text, (prompt, streamed(prompt), text)

# Chat, whole and streamed, with usage; the second identical chat reuses cached prompt cells.
msgs = [{"role": "user", "content": "What is the capital of France?"}]
c1 = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=12, temperature=0)
assert c1.choices[0].message.role == "assistant" and c1.choices[0].message.content
assert c1.usage.prompt_tokens > 10 and 0 < c1.usage.completion_tokens <= 12
c2 = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=12, temperature=0)
assert c2.choices[0].message.content == c1.choices[0].message.content
assert c2.usage.prompt_tokens_details.cached_tokens == c2.usage.prompt_tokens - 1, c2.usage
chunks = list(client.chat.completions.create(
    model=MODEL, messages=msgs, max_tokens=12, temperature=0, stream=True,
    stream_options={"include_usage": True}))
assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == c1.choices[0].message.content
assert chunks[-1].usage.completion_tokens == c1.usage.completion_tokens

# Stop strings: the text ends before the stop string.
prompt, text = next(iter(EXPECTED.items()))
stop = text[len(text) // 2:][:3]
r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=16, temperature=0, stop=[stop])
assert r.choices[0].text == text[: text.index(stop)] and r.choices[0].finish_reason == "stop", r
assert streamed(prompt, stop=[stop]) == text[: text.index(stop)]

# Seeded sampling is reproducible; n = 2 gives two choices; logprobs come back.
def sampled(seed, n=1):
    r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, temperature=1.0, seed=seed, n=n)
    return [c.text for c in r.choices]
assert sampled(11) == sampled(11)
two = sampled(11, n=2)
assert len(two) == 2 and two[0] == sampled(11)[0]
r = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=4, temperature=0,
                                   logprobs=True, top_logprobs=3)
lp = r.choices[0].logprobs.content
assert len(lp) == r.usage.completion_tokens and all(len(t.top_logprobs) == 3 for t in lp)
assert all(t.logprob <= 0 and t.logprob == t.top_logprobs[0].logprob for t in lp)

# 16 concurrent streaming clients each get exactly what they get alone.
prompts = list(EXPECTED)
alone = {p: streamed(p, n=20) for p in prompts}
results = {}
def worker(i):
    p = prompts[i % len(prompts)]
    results[i] = (p, streamed(p, n=20))
threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert len(results) == 16
for i, (p, text) in results.items():
    assert text == alone[p], (i, p, text, alone[p])

# A client that disconnects mid-stream frees its cells (visible in /metrics).
def metric(name):
    _, text = raw("/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(name + " missing")
import time
before = metric("rocmforge_kv_cells_used")
s = client.completions.create(model=MODEL, prompt="Write a long story about a dragon.",
                              max_tokens=400, temperature=0, stream=True,
                              extra_body={"ignore_eos": True})
it = iter(s)
for _ in range(3):
    next(it)
assert metric("rocmforge_running_sequences") == 1
s.close()
deadline = time.time() + 20
while metric("rocmforge_running_sequences") != 0 or metric("rocmforge_kv_cells_used") > before + 40:
    assert time.time() < deadline, "cells of a disconnected stream were not freed"
    time.sleep(0.05)
assert metric('rocmforge_requests_total{outcome="cancelled"}') >= 1

# Bad requests: the right 4xx in OpenAI's shape, and the server still serving.
for body, status in [
    (None, 400),
    ({"model": "nope", "prompt": "x"}, 400),
    ({"prompt": "x", "temperature": 7}, 400),
    ({"prompt": "x", "max_tokens": 0}, 400),
    ({"prompt": "x", "n": "two"}, 400),
    ({"prompt": "word " * 5000}, 400),
    ({"messages": []}, 400),
]:
    path = "/v1/chat/completions" if body and "messages" in body else "/v1/completions"
    got, err = raw(path, body, data=b"{not json" if body is None else None)
    assert got == status and isinstance(err, dict) and err["error"]["message"], (body, got, err)
got, err = raw("/v1/completions", data=b'{"prompt": "' + b"x" * (2 << 20) + b'"}')
assert got == 413 and err["error"]["type"] == "request_too_large", got
try:
    client.completions.create(model=MODEL, prompt="x", temperature=9)
    raise AssertionError("accepted temperature 9")
except openai.BadRequestError:
    pass
assert greedy(prompt) == EXPECTED[prompt]

# Other endpoints.
assert [m.id for m in client.models.list().data] == [MODEL]
assert raw("/health") == (200, {"status": "ok"}) and raw("/health/live")[0] == 200
status, toks = raw("/tokenize", {"content": "Hello world", "add_special": False})
assert status == 200 and len(toks["tokens"]) >= 2
assert raw("/detokenize", {"tokens": toks["tokens"]}) == (200, {"content": "Hello world"})

# /metrics parses as Prometheus text: every sample line is NAME{labels} VALUE of a declared family.
_, text = raw("/metrics")
families = {l.split()[2] for l in text.splitlines() if l.startswith("# TYPE")}
for line in text.splitlines():
    if line.startswith("#") or not line:
        continue
    name, value = line.rsplit(" ", 1)
    float(value)
    base = name.split("{")[0]
    assert any(base == f or base.startswith(f + "_") for f in families), line
assert metric("rocmforge_time_to_first_token_seconds_count") > 0
assert metric("rocmforge_prefix_cache_hits_total") > 0

# A full queue answers 429 with Retry-After (a server with one slot and a queue of one).
full = openai.OpenAI(base_url=os.environ["ROCMFORGE_FULL_URL"] + "/v1", api_key="k", max_retries=0)
statuses = []
def hammer():
    try:
        full.completions.create(model=MODEL, prompt="Count to fifty:", max_tokens=24, temperature=0)
        statuses.append(200)
    except openai.RateLimitError as e:
        assert e.response.headers.get("retry-after") == "1"
        statuses.append(429)
threads = [threading.Thread(target=hammer) for _ in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert 200 in statuses and 429 in statuses, statuses
# That server wants an API key: a wrong one is 401.
try:
    openai.OpenAI(base_url=os.environ["ROCMFORGE_FULL_URL"] + "/v1", api_key="bad", max_retries=0).models.list()
    raise AssertionError("wrong key accepted")
except openai.AuthenticationError:
    pass
print("openai client checks passed")
