"""Save_pretrained folders load the fixed class without glm4_tokfix; pickling; threads."""

from __future__ import annotations

import json
import multiprocessing
import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest

import glm4_tokfix
from patch_helpers import load_saved_in_clean_process


def test_saved_folder_loads_the_fix_without_the_package(tok, tmp_path):
    pytest.importorskip("jinja2", reason="the clean process renders a chat with the chat template")
    folder = tmp_path / "saved"
    tok.save_pretrained(folder)
    from glm4_tokfix.remote_code import bundle_bytes

    bundle = bundle_bytes()
    assert (folder / "tokenization_glm4_tokfix.py").read_bytes() == bundle["tokenization_glm4_tokfix.py"]
    assert not (folder / "tokenization_chatglm.py").exists()
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["auto_map"]["AutoTokenizer"][0] == "tokenization_glm4_tokfix.ChatGLM4Tokenizer"

    got = load_saved_in_clean_process(folder, tmp_path)
    assert got["class"] == "ChatGLM4Tokenizer" and "GLM4FixMixin" in got["mro"]
    assert got["module"].startswith("transformers_modules")
    assert not got["glm4_tokfix_loaded"]
    texts = ["[gMASK]<sop><|user|>\nhi<|assistant|>", "<|user|>\na longer question<|assistant|>"]
    assert got["left"] == {k: list(v) for k, v in tok(texts, padding=True).items()}
    assert got["right"] == {k: list(v) for k, v in tok(texts, padding=True, padding_side="right").items()}
    assert got["decoded"] == texts[0]


def test_saved_folder_round_trips_in_process(tok, tmp_path):
    tok.save_pretrained(tmp_path / "again")
    loaded = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(tmp_path / "again")
    text = "<|user|>\n你好 there<|assistant|>"
    assert loaded(text).input_ids == tok(text).input_ids
    assert len(loaded) == len(tok) and loaded.padding_side == tok.padding_side


def test_pickles(tok):
    clone = pickle.loads(pickle.dumps(tok))
    texts = ["[gMASK]<sop>a", "b c d"]
    assert dict(clone(texts, padding=True)) == dict(tok(texts, padding=True))
    assert clone.decode(clone.encode("x<|user|>y")) == tok.decode(tok.encode("x<|user|>y"))


def _encode_in_worker(args):
    tokenizer, text = args
    return tokenizer(text).input_ids


def test_multiprocessing_spawn(tiny_tok):
    texts = ["[gMASK]<sop><|user|>\nhi", "plain", "你好<|assistant|>"]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        got = pool.map(_encode_in_worker, [(tiny_tok, t) for t in texts])
    assert got == [tiny_tok(t).input_ids for t in texts]


def test_threads_share_one_tokenizer(tok):
    batches = [[f"<|user|>\nquestion {i} " + "word " * (i % 7), f"[gMASK]<sop>{i}"] for i in range(64)]
    options = [dict(padding="max_length" if i % 3 else True, padding_side="right" if i % 2 else "left", truncation=bool(i % 3), max_length=9 if i % 3 else None)
               for i in range(64)]  # fmt: skip
    expected = [dict(tok(b, **o)) for b, o in zip(batches, options)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda bo: dict(tok(bo[0], **bo[1])), zip(batches, options)))
    assert got == expected


@pytest.mark.parametrize("text", ["[gMASK]<sop>[gMASK]<sop>x", "[gMASK]<sop>x"])
def test_threads_and_prefix_context(tok, text):
    """The 'prefix already stripped' state is per thread: concurrent encodes never leak it."""
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: tok(text).input_ids, range(200)))
    assert all(g == tok(text).input_ids for g in got)
    assert tok.build_inputs_with_special_tokens(tok.get_prefix_tokens()) == tok.get_prefix_tokens()
