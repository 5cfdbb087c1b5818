"""vLLM's OpenAI server on each GLM-4 tokenizer variant: /v1/completions and /v1/chat/completions, streamed and not.

One server per variant (127.0.0.1, a free port, ready within 4 minutes, each request bounded, always killed);
the requests are sent once per variant and every test reads their answers. With ``return_token_ids`` the server
gives the prompt's ids and the generated ids: the prompt carries exactly one ``[gMASK]<sop>`` (plain text gets
one too), the text equals ``decode`` of the ids, and the streamed answer equals the non-streamed one. Then the
same server takes the load of tests/clients/vllm_engine/test_vllm_load.py (300 mixed requests from 32 threads): every
prompt's ids equal the reference tokenizer's single-threaded ids.
"""

from __future__ import annotations

import pytest
from test_vllm_load import REQUESTS, THREADS, assert_rows_exact, load_rows
from vllm_support import FIXED_VARIANTS, VARIANTS, Server, needs_plugin

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "Hello! 你好, what is 2+2?"}]
PLAIN = "The capital of France is"
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
GREEDY = {"max_tokens": 4, "temperature": 0.0, "ignore_eos": True, "return_token_ids": True}


def completion(answer):
    choice = answer["choices"][0]
    return {"prompt_ids": choice["prompt_token_ids"], "ids": choice["token_ids"], "text": choice["text"]}


def chat_completion(answer):
    choice = answer["choices"][0]
    return {"prompt_ids": answer["prompt_token_ids"], "ids": choice["token_ids"], "text": choice["message"]["content"]}


def streamed_completion(chunks):
    prompt, ids, text = None, [], ""
    for chunk in chunks:
        for choice in chunk["choices"]:
            if choice.get("prompt_token_ids") is not None:
                assert prompt is None, "prompt_token_ids came twice"
                prompt = choice["prompt_token_ids"]
            ids += choice.get("token_ids") or []
            text += choice.get("text") or ""
    return {"prompt_ids": prompt, "ids": ids, "text": text}


def streamed_chat(chunks):
    prompt, ids, text = None, [], ""
    for chunk in chunks:
        if chunk.get("prompt_token_ids") is not None:
            assert prompt is None, "prompt_token_ids came twice"
            prompt = chunk["prompt_token_ids"]
        for choice in chunk["choices"]:
            ids += choice.get("token_ids") or []
            text += (choice.get("delta") or {}).get("content") or ""
    return {"prompt_ids": prompt, "ids": ids, "text": text}


@pytest.fixture(scope="module", params=FIXED_VARIANTS)
def answers(request, variant_folder, reference, tmp_path_factory):
    spec = VARIANTS[request.param]
    needs_plugin(spec)
    folder = variant_folder(request.param)
    rendered = reference.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    server = Server(
        folder,
        trust=spec["trust"],
        plugin=spec["plugin"],
        log_path=tmp_path_factory.mktemp(f"server-{request.param}") / "server.log",
    )
    try:
        server.wait_ready()
        got = {"variant": request.param}
        for name, prompt in (("completion_chat", rendered), ("completion_plain", PLAIN)):
            body = {"prompt": prompt, **GREEDY}
            got[name] = completion(server.post("/v1/completions", body))
            got[name + "_stream"] = streamed_completion(server.stream("/v1/completions", body))
        body = {"messages": MESSAGES, **GREEDY}
        got["chat"] = chat_completion(server.post("/v1/chat/completions", body))
        got["chat_stream"] = streamed_chat(server.stream("/v1/chat/completions", body))
        got["chat_add_special"] = chat_completion(
            server.post("/v1/chat/completions", {**body, "add_special_tokens": True})
        )
        structured = {
            "messages": MESSAGES,
            "max_tokens": 8,
            "temperature": 0.0,
            "return_token_ids": True,
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}},
        }
        got["structured"] = chat_completion(server.post("/v1/chat/completions", structured))
        got["load"] = load_rows(server, reference)  # last: the answers above come from an idle server
        got["log"] = server.log()
        return got
    finally:
        server.close()


NAMES = ("completion_chat", "completion_plain", "chat", "chat_add_special")


@pytest.mark.parametrize("name", NAMES + ("completion_chat_stream", "completion_plain_stream", "chat_stream"))
def test_one_prefix(answers, name, reference):
    ids = answers[name]["prompt_ids"]
    prefix = reference.convert_tokens_to_ids(["[gMASK]", "<sop>"])
    assert ids[:2] == prefix, (answers["variant"], name, ids[:8])
    assert (ids.count(prefix[0]), ids.count(prefix[1])) == (1, 1), (answers["variant"], name, ids[:8])


@pytest.mark.parametrize(
    "name", NAMES + ("completion_chat_stream", "completion_plain_stream", "chat_stream", "structured")
)
def test_text_is_decode_of_ids(answers, name, reference):
    result = answers[name]
    assert result["ids"], "the server generated nothing"
    assert result["text"] == reference.decode(result["ids"], skip_special_tokens=True), (answers["variant"], result)


@pytest.mark.parametrize("name", ("completion_chat", "completion_plain", "chat"))
def test_streamed_equals_non_streamed(answers, name):
    assert answers[name + "_stream"] == answers[name]


def test_chat_prompt_equals_rendered_completion(answers):
    assert answers["chat"]["prompt_ids"] == answers["completion_chat"]["prompt_ids"]
    assert answers["chat_add_special"]["prompt_ids"] == answers["chat"]["prompt_ids"]


def test_no_detokenizer_errors(answers):
    assert "Encountered invalid token id" not in answers["log"]


def test_load_every_prompt_exact(answers, reference):
    rows = answers["load"]
    assert len(rows) == REQUESTS and THREADS > 1
    assert_rows_exact(rows, reference)
