"""Truncation returns exactly max_length tokens and keeps the prefix, on both sides."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import prompt_texts

sides = st.sampled_from(["right", "left"])


@contextlib.contextmanager
def truncating_on(tok, side):
    before = tok.truncation_side
    tok.truncation_side = side
    try:
        yield
    finally:
        tok.truncation_side = before


@given(text=prompt_texts(), max_length=st.integers(2, 40), side=sides)
def test_truncation_is_exact(tok, side, text, max_length):
    full = tok(text).input_ids
    prefix = tok.get_prefix_tokens()
    with truncating_on(tok, side):
        got = tok(text, truncation=True, max_length=max_length).input_ids
    if len(full) <= max_length:
        assert got == full
        return
    assert len(got) == max_length
    assert got[:2] == prefix
    if side == "right":
        assert got == full[:max_length]
    else:
        assert got == prefix + full[len(full) - (max_length - 2) :]


@given(text=prompt_texts(), max_length=st.integers(2, 40), side=sides)
def test_batch_truncation_matches_single(tok, side, text, max_length):
    with truncating_on(tok, side):
        batch = tok([text, text + " more"], truncation=True, max_length=max_length)
        for row, t in zip(batch.input_ids, [text, text + " more"]):
            assert row == tok(t, truncation=True, max_length=max_length).input_ids
            assert len(row) <= max_length


@pytest.mark.parametrize("side", ["right", "left"])
def test_truncation_without_special_tokens(tok, side):
    ids = tok("hello world, this is long", add_special_tokens=False).input_ids
    with truncating_on(tok, side):
        got = tok("hello world, this is long", add_special_tokens=False, truncation=True, max_length=3).input_ids
    assert got == (ids[:3] if side == "right" else ids[-3:])


def test_max_length_smaller_than_the_prefix_is_an_error(tok):
    with pytest.raises(ValueError, match="max_length"):
        tok("hello world", truncation=True, max_length=1)


@pytest.mark.parametrize("side", ["right", "left"])
def test_max_length_two_keeps_only_the_prefix(tok, side):
    with truncating_on(tok, side):
        assert tok("hello world", truncation=True, max_length=2).input_ids == tok.get_prefix_tokens()
