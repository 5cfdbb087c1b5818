"""[gMASK]<sop> exactly as needed; pairs end in <|endoftext|>."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from strategies import PREFIX, prompt_texts, texts


def body_ids(tok, text):
    return tok(text, add_special_tokens=False).input_ids


@given(text=texts())
def test_prefix_added_when_missing(tok, text):
    prefix = tok.get_prefix_tokens()
    body = body_ids(tok, text)
    expected = body if body[:2] == prefix else prefix + body
    assert tok(text).input_ids == expected


@given(text=texts())
def test_rendered_text_gets_no_second_prefix(tok, text):
    """A text that starts with the prefix encodes the same with or without add_special_tokens."""
    rendered = PREFIX + text
    assert body_ids(tok, rendered)[:2] == tok.get_prefix_tokens()
    assert tok(rendered).input_ids == body_ids(tok, rendered)


def test_rendered_and_plain_give_one_prefix(tok):
    prefix = tok.get_prefix_tokens()
    plain = tok("<|user|>\nhi<|assistant|>").input_ids
    rendered = tok("[gMASK]<sop><|user|>\nhi<|assistant|>").input_ids
    assert plain == rendered
    assert plain[:2] == prefix and plain[2:4] != prefix
    assert plain.count(prefix[0]) == 1


def test_text_holding_the_prefix_twice_keeps_both(tok):
    prefix = tok.get_prefix_tokens()
    ids = tok(PREFIX + PREFIX + "x").input_ids
    assert ids[:4] == prefix + prefix
    assert ids == body_ids(tok, PREFIX + PREFIX + "x")


@given(ids=st.lists(st.integers(0, 500)), with_prefix=st.booleans())
def test_build_inputs_is_idempotent(tok, ids, with_prefix):
    prefix = tok.get_prefix_tokens()
    if with_prefix:
        ids = prefix + ids
    once = tok.build_inputs_with_special_tokens(ids)
    assert once[:2] == prefix
    assert tok.build_inputs_with_special_tokens(once) == once
    assert once == (ids if with_prefix else prefix + ids)
    assert len(tok.get_special_tokens_mask(ids)) == len(once)
    assert len(tok.create_token_type_ids_from_sequences(ids)) == len(once)


def test_build_inputs_takes_empty_lists(tok):
    prefix = tok.get_prefix_tokens()
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    assert tok.build_inputs_with_special_tokens([]) == prefix
    assert tok.build_inputs_with_special_tokens([], []) == prefix + [eos]
    assert tok.num_special_tokens_to_add() == 2
    assert tok.num_special_tokens_to_add(pair=True) == 3


@given(a=prompt_texts(), b=texts())
def test_pairs(tok, a, b):
    prefix = tok.get_prefix_tokens()
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    a_ids = body_ids(tok, a)
    if a_ids[:2] == prefix:
        a_ids = a_ids[2:]
    enc = tok(a, b, return_special_tokens_mask=True)
    assert enc.input_ids == prefix + a_ids + body_ids(tok, b) + [eos]
    assert enc.special_tokens_mask == [1, 1] + [0] * (len(enc.input_ids) - 3) + [1]
    batch = tok([a, a], [b, b], padding=True)
    assert [real for real in batch.input_ids] == [enc.input_ids, enc.input_ids]


@given(text=prompt_texts())
def test_special_tokens_mask_and_token_type_ids(tok, text):
    enc = tok(text, return_special_tokens_mask=True, return_token_type_ids=True)
    n = len(enc.input_ids)
    assert enc.special_tokens_mask == [1, 1] + [0] * (n - 2)
    assert enc.token_type_ids == [0] * n
