"""Issue 30 item 4 and issue 31 item 6: large added vocabularies (glm-4-voice-9b's 16,384 ``<|audio_N|>`` tokens, or
thousands a user adds) stay exact on every route, and the added-token literals follow every change of the added
tokens (re-adding a token with new flags too).

Exactness: the slow fixed tokenizer, a patched upstream (tests/standins) and a patched fast tokenizer
(tests/fast_folders.py) give, with the added tokens, batch == single, one prefix and the same ids as transformers'
generic path, on both encoder backends. The linear overlap check is compared with the pairwise definition. Speed is
measured in benchmarks/bench_added_vocab.py (no timing here).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

import glm4_tokfix
from glm4_tokfix import tokenization_chatglm as tc

from conftest import REAL_DIR, TINY_DIR

HAVE_FASTOKENS = tc.fastokens_available()
BACKENDS = ["tiktoken", pytest.param("fastokens", marks=pytest.mark.skipif(not HAVE_FASTOKENS, reason="fastokens is not installed"))]
PREFIX = "[gMASK]<sop>"


def audio_tokens(n):
    return [f"<|audio_{i}|>" for i in range(n)]


# ------------------------------------------------------------------ issue 31 item 6: stale added-token literals
def _readd_user_with_flags(tok):
    from transformers import AddedToken

    tok.add_tokens([AddedToken("<|user|>", lstrip=True, rstrip=True, special=True, normalized=False)], special_tokens=True)


STRIP_TEXTS = ["hi   <|user|>   x", "<|user|>  \n hello", "a\t<|user|>\tb <|assistant|> c"]


def test_readding_a_token_with_new_flags_after_encoding_reaches_the_fast_path():
    tok = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(TINY_DIR)
    before = [tok(t).input_ids for t in STRIP_TEXTS]  # the fast path has cached its literals
    _readd_user_with_flags(tok)
    fresh = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(TINY_DIR)
    _readd_user_with_flags(fresh)
    generic = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(TINY_DIR)
    _readd_user_with_flags(generic)
    generic.glm4_fast_path = False
    for text, old in zip(STRIP_TEXTS, before):
        expected = generic(text).input_ids
        assert expected != old  # the flags change the ids: the test can tell stale literals apart
        assert tok(text).input_ids == expected
        assert fresh(text).input_ids == expected
        assert tok.encode(text) == expected
    assert tok(STRIP_TEXTS).input_ids == [generic(t).input_ids for t in STRIP_TEXTS]


def test_readding_with_new_flags_reaches_the_masks_of_a_patched_upstream(standin):
    import copy

    tok = glm4_tokfix.patch(copy.deepcopy(standin("current")))
    assert tok._glm4_mask_literals() is not None  # cached while every token is plain
    _readd_user_with_flags(tok)
    assert tok._glm4_mask_literals() is None  # <|user|> strips whitespace now: no literal counting


def test_readding_with_new_flags_reaches_a_patched_fast_tokenizer(fast_folder):
    from transformers import AutoTokenizer

    folder = fast_folder("tiny", "chat-hf")
    tok = glm4_tokfix.patch(AutoTokenizer.from_pretrained(str(folder)))
    assert tok(STRIP_TEXTS[0]).glm4_route == "fast"
    _readd_user_with_flags(tok)
    plain = AutoTokenizer.from_pretrained(str(folder))
    _readd_user_with_flags(plain)
    for text in STRIP_TEXTS:
        out = tok(text)
        assert getattr(out, "glm4_route", "rust") == "rust"  # a stripping added token: the Rust tokenizer decides
        assert out.input_ids == plain(text).input_ids  # no text starts with the prefix: the checkpoint's own ids
