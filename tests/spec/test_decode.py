"""Decode is exact around special tokens; bad ids are a ValueError."""

from __future__ import annotations

import re

import pytest
from hypothesis import given

from strategies import SPECIAL_LITERALS, prompt_texts, texts


@given(text=texts())
def test_decode_round_trip(tok, text):
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


LITERALS = re.compile("|".join(re.escape(t) for t in sorted(SPECIAL_LITERALS, key=len, reverse=True)))


@given(text=texts())
def test_skip_special_tokens_drops_them(tok, text):
    """With skip_special_tokens=True the text comes back with every special-token literal (and the prefix) removed."""
    assert tok.decode(tok.encode(text), skip_special_tokens=True) == LITERALS.sub("", text)


@given(text=prompt_texts())
def test_batch_decode_matches_decode(tok, text):
    ids = [tok.encode(text), tok.encode(text + "x")]
    assert tok.batch_decode(ids) == [tok.decode(i) for i in ids]


def test_decode_known_sequence(tok):
    text = "[gMASK]<sop><|user|>\n你好 world<|assistant|>ok<|endoftext|>"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special_tokens=True) == "\n你好 worldok"
    assert tok.decode(ids[0]) == "[gMASK]"


def test_decode_accepts_tensors_and_arrays(tok):
    np = pytest.importorskip("numpy")
    ids = tok.encode("hello <|user|>")
    assert tok.decode(np.array(ids)) == tok.decode(ids)


@pytest.mark.parametrize("bad", [-1, 10**9])
def test_id_outside_the_vocabulary_is_a_value_error(tok, bad):
    with pytest.raises(ValueError, match=str(bad)):
        tok.decode([tok.get_prefix_tokens()[0], bad])
    with pytest.raises(ValueError, match=str(bad)):
        tok.convert_ids_to_tokens([bad])


def test_unknown_token_is_a_value_error(tok):
    with pytest.raises(ValueError, match="<eos>"):
        tok.convert_tokens_to_ids("<eos>")
