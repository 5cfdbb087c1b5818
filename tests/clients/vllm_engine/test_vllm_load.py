"""vLLM's OpenAI server under load: 300 mixed requests from 32 threads per tokenizer variant, every prompt's ids exact.

Per variant one server (127.0.0.1 only, a free port, the server's lifetime and every request bounded). The requests
mix completions of rendered chats and of plain texts, chat completions, streamed and not, over texts with
special-token literals, Chinese and emoji. Each answer's ``prompt_token_ids`` must equal the ids the reference
tokenizer (``glm4_tokfix.ChatGLM4Tokenizer`` on the real vocabulary) gives single-threaded in this process: one
``[gMASK]<sop>``, nothing lost or mixed between concurrent requests. The baseline variant without the fix
(``hf-unpatched``) runs the same load here and counts its doubled rows: the test can fail. The fixed variants get
the load on the servers tests/clients/vllm_engine/test_vllm_server.py starts anyway (``test_load_every_prompt_exact``
there): a server start costs a minute or more on CPU, the 300 requests a few seconds.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from vllm_support import VARIANTS, Server, needs_plugin

pytestmark = pytest.mark.slow

REQUESTS = 300
THREADS = 32
TEXTS = [
    "The capital of France is",
    "你好，请介绍一下你自己。",
    "emoji 😀🎉 and more 👍🏽",
    "literal specials: [gMASK]<sop><|user|> not a turn <|assistant|>",
    "<|endoftext|> at the start",
    "mixed 中文 and English with numbers 12345 and 😀",
    "  spaces\tand tabs\n",
    "[gMASK]<sop><|user|>\nalready rendered<|assistant|>",
]
GREEDY = {"max_tokens": 1, "temperature": 0.0, "ignore_eos": True, "return_token_ids": True}
KINDS = ("completion_chat", "completion_plain", "chat")


def messages_of(text):
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text or "hi"}]


def plan():
    """(kind, text index, streamed) for each of the REQUESTS requests, mixed."""
    return [(KINDS[i % 3], (i // 3) % len(TEXTS), (i // 2) % 2 == 1) for i in range(REQUESTS)]


def prompt_ids(server, kind, text, streamed, reference):
    if kind == "chat":
        body = {"messages": messages_of(text), **GREEDY}
        if not streamed:
            return server.post("/v1/chat/completions", body, timeout=120)["prompt_token_ids"]
        chunks = server.stream("/v1/chat/completions", body, timeout=120)
        return next(c["prompt_token_ids"] for c in chunks if c.get("prompt_token_ids") is not None)
    prompt = text if kind == "completion_plain" else render(reference, text)
    body = {"prompt": prompt, **GREEDY}
    if not streamed:
        return server.post("/v1/completions", body, timeout=120)["choices"][0]["prompt_token_ids"]
    chunks = server.stream("/v1/completions", body, timeout=120)
    return next(ch["prompt_token_ids"] for c in chunks for ch in c["choices"] if ch.get("prompt_token_ids") is not None)


def render(reference, text):
    return reference.apply_chat_template(messages_of(text), tokenize=False, add_generation_prompt=True)


def expected_ids(reference, kind, text):
    """The reference tokenizer's ids, single-threaded: what the server must answer for this request."""
    if kind == "completion_plain":
        return reference(text)["input_ids"]
    return reference(render(reference, text))["input_ids"]


def load_rows(server, reference):
    """Send the REQUESTS mixed requests from THREADS threads to a ready ``server``: (request, ids, expected ids)."""
    requests = plan()
    start = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        got = list(pool.map(lambda r: prompt_ids(server, r[0], TEXTS[r[1]], r[2], reference), requests))
    print(f"{REQUESTS} requests from {THREADS} threads in {time.monotonic() - start:.1f} s")
    expected = {(kind, i): expected_ids(reference, kind, TEXTS[i]) for kind in KINDS for i in range(len(TEXTS))}
    return [(r, ids, expected[r[0], r[1]]) for r, ids in zip(requests, got)]


def assert_rows_exact(rows, reference):
    """Every prompt's ids are the reference's, with one leading ``[gMASK]<sop>``."""
    prefix = reference.convert_tokens_to_ids(["[gMASK]", "<sop>"])
    wrong = [(r, ids[:8], want[:8]) for r, ids, want in rows if ids != want]
    assert not wrong, f"{len(wrong)} of {len(rows)} prompts differ, e.g. {wrong[:3]}"
    assert all(ids[:2] == prefix and ids[2:4] != prefix for _r, ids, _want in rows)  # one leading prefix


def load(variant, variant_folder, reference, log_dir):
    """Start ``variant``'s server, send the load, always stop it."""
    spec = VARIANTS[variant]
    needs_plugin(spec)
    server = Server(
        variant_folder(variant), trust=spec["trust"], plugin=spec["plugin"], log_path=log_dir / "server.log"
    )
    try:
        server.wait_ready()
        return load_rows(server, reference)
    finally:
        server.close()


def test_load_without_the_fix_counts_doubled_rows(variant_folder, reference, tmp_path):
    rows = load("hf-unpatched", variant_folder, reference, tmp_path)
    prefix = reference.convert_tokens_to_ids(["[gMASK]", "<sop>"])
    doubled = [r for r, ids, _want in rows if ids[:4] == prefix + prefix]
    print(f"hf-unpatched: {len(doubled)} of {len(rows)} prompts start with [gMASK]<sop> twice")
    # every completion of a rendered chat doubles (and a plain text that starts with the prefix); each wrong row
    # is the right one with the prefix once more in front
    assert {r for r, _ids, _want in rows if r[0] == "completion_chat"} <= set(doubled)
    for r, ids, want in rows:
        assert ids == want or ids == prefix + want, (r, ids[:8], want[:8])
