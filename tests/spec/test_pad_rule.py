"""_pad honours padding_side, builds every field exactly, and is idempotent."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import check_padded_row
from strategies import prompt_texts

sides = st.sampled_from(["left", "right"])


def encode(tok, text, **kwargs):
    return dict(tok(text, return_special_tokens_mask=True, return_token_type_ids=True, **kwargs))


@given(text=prompt_texts(), extra=st.integers(0, 9), side=sides)
def test_pad_to_max_length_on_each_side(tok, text, extra, side):
    enc = encode(tok, text)
    n = len(enc["input_ids"])
    out = tok.pad(enc, padding="max_length", max_length=n + extra, padding_side=side)
    check_padded_row(out["input_ids"], out["attention_mask"], out["position_ids"], side, tok.pad_token_id)
    real = slice(extra, None) if side == "left" else slice(0, n)
    pads = slice(0, extra) if side == "left" else slice(n, None)
    assert out["input_ids"][real] == enc["input_ids"]
    assert out["special_tokens_mask"][real] == enc["special_tokens_mask"]
    assert out["special_tokens_mask"][pads] == [1] * extra
    assert out["token_type_ids"] == [0] * (n + extra)


@given(text=prompt_texts(), extra=st.integers(1, 9), side=sides)
def test_tokenizer_padding_side_is_the_default(tok, text, extra, side):
    before = tok.padding_side
    tok.padding_side = side
    try:
        enc = encode(tok, text)
        out = tok.pad(enc, padding="max_length", max_length=len(enc["input_ids"]) + extra)
    finally:
        tok.padding_side = before
    check_padded_row(out["input_ids"], out["attention_mask"], out["position_ids"], side, tok.pad_token_id)


@given(text=prompt_texts(), first=st.integers(0, 6), more=st.integers(0, 6), side=sides)
def test_pad_is_idempotent(tok, text, first, more, side):
    enc = encode(tok, text)
    n = len(enc["input_ids"])
    once = tok.pad(dict(enc), padding="max_length", max_length=n + first, padding_side=side)
    again = tok.pad(dict(once), padding="max_length", max_length=n + first, padding_side=side)
    assert dict(again) == dict(once)
    wider = tok.pad(dict(once), padding="max_length", max_length=n + first + more, padding_side=side)
    direct = tok.pad(dict(enc), padding="max_length", max_length=n + first + more, padding_side=side)
    assert dict(wider) == dict(direct)


@given(text=prompt_texts(), multiple=st.integers(1, 8), side=sides)
def test_pad_to_multiple_of(tok, text, multiple, side):
    enc = encode(tok, text)
    out = tok.pad(enc, padding=True, pad_to_multiple_of=multiple, padding_side=side)
    n = len(enc["input_ids"])
    assert len(out["input_ids"]) == -(-n // multiple) * multiple
    check_padded_row(out["input_ids"], out["attention_mask"], out["position_ids"], side, tok.pad_token_id)


def test_no_attention_mask_when_not_asked(tok):
    batch = tok(["a", "bbb ccc"], padding=True, return_attention_mask=False)
    assert "attention_mask" not in batch
    assert batch["position_ids"][0][0] == 0 and len(set(map(len, batch["input_ids"]))) == 1
    single = tok("a", return_attention_mask=False)
    assert "attention_mask" not in single


@pytest.mark.parametrize("bad", ["middle", "", "LEFT", 1])
def test_bad_padding_side_is_a_value_error(tok, bad):
    with pytest.raises(ValueError, match="padding_side"):
        tok._pad({"input_ids": [1, 2]}, max_length=4, padding_strategy="max_length", padding_side=bad)


@pytest.mark.parametrize("multiple", [0, -2])
def test_non_positive_multiple_is_a_value_error(tok, multiple):
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        tok(["a", "bb"], padding=True, pad_to_multiple_of=multiple)


def test_mismatched_mask_length_is_a_value_error(tok):
    with pytest.raises(ValueError, match="attention_mask"):
        tok.pad({"input_ids": [1, 2, 3], "attention_mask": [1, 1]}, padding="max_length", max_length=5)


def test_unknown_keyword_arguments_are_accepted(tok):
    out = tok._pad({"input_ids": [1, 2]}, max_length=4, padding_strategy="max_length", some_future_option=True)
    assert out["input_ids"] == [tok.pad_token_id] * 2 + [1, 2]


def test_existing_mask_zeros_are_kept_and_positions_follow(tok):
    pad = tok.pad_token_id
    enc = {"input_ids": [pad, 5, 6], "attention_mask": [0, 1, 1]}
    out = tok.pad(enc, padding="max_length", max_length=5, padding_side="left")
    assert out["input_ids"] == [pad, pad, pad, 5, 6]
    assert out["attention_mask"] == [0, 0, 0, 1, 1]
    assert out["position_ids"] == [0, 0, 0, 0, 1]


def test_pad_of_empty_batch(tok):
    out = tok.pad({"input_ids": []}, padding=True)
    assert out["input_ids"] == []


def test_batch_pad_of_a_list_of_encodings(tok):
    feats = [dict(tok(t)) for t in ["a", "hello world", "[gMASK]<sop>x"]]
    for side in ("left", "right"):
        out = tok.pad(feats, padding=True, padding_side=side)
        for i, f in enumerate(feats):
            row_ids, mask = out["input_ids"][i], out["attention_mask"][i]
            check_padded_row(row_ids, mask, out["position_ids"][i], side, tok.pad_token_id)
            assert [t for t, m in zip(row_ids, mask) if m] == f["input_ids"]


def test_bad_padding_side_through_call_is_a_value_error(tok):
    with pytest.raises(ValueError, match="padding_side"):
        tok(["a", "bb"], padding=True, padding_side="middle")
