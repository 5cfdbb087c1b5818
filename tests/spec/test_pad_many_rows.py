"""Pad() of a batch equals transformers' row-by-row pad with our _pad rules.

The reference is ``PreTrainedTokenizerBase.pad`` -- transformers' own loop, which calls ``tok._pad`` for
each row -- on a deep copy of the same input. Collators call ``tok.pad(list_of_features, ...)``.
"""

from __future__ import annotations

import copy
import importlib.util
from types import MethodType

import pytest
from hypothesis import given
from hypothesis import strategies as st
from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding, PreTrainedTokenizerBase

import glm4_tokfix
from glm4_tokfix.remote_code import glm4_padding
from helpers import check_padded_row, deep, outcome, same
from strategies import batches

HAVE_TORCH = importlib.util.find_spec("torch") is not None
KINDS = [None, "np", "pt"] if HAVE_TORCH else [None, "np"]


ERRORS = (ValueError, TypeError, KeyError)


def generic_pad(tok, inputs, **options):
    """transformers' pad (row by row through tok._pad), on a copy: it writes into what it is given."""
    return PreTrainedTokenizerBase.pad(tok, copy.deepcopy(inputs), **options)


# ---------------------------------------------------------------- strategies
@st.composite
def features(draw, tok):
    """A collator's features: rows of tok(texts) -- sometimes of an already padded batch (mask zeros) --
    with some of the optional keys dropped and extra keys (labels per example or per token) added."""
    texts = draw(batches(min_size=1, max_size=5))
    kwargs = dict(return_special_tokens_mask=draw(st.booleans()), return_token_type_ids=draw(st.booleans()))
    if draw(st.booleans()):
        encoded = tok(texts, padding=True, padding_side=draw(st.sampled_from(["left", "right"])), **kwargs)
        rows = [{key: list(value[i]) for key, value in encoded.items()} for i in range(len(texts))]
    else:
        rows = [dict(tok(text, **kwargs)) for text in texts]
    for key in ("attention_mask", "position_ids"):
        if draw(st.booleans()):
            for row in rows:
                row.pop(key, None)
    labels = draw(st.sampled_from([None, "per-example", "per-token", "float"]))
    for i, row in enumerate(rows):
        if labels == "per-example":
            row["labels"] = i
        elif labels == "per-token":
            row["labels"] = [-100] * len(row["input_ids"])
        elif labels == "float":
            row["score"] = 0.5 * i
    return rows


@st.composite
def pad_options(draw):
    options = {"padding_side": draw(st.sampled_from(["left", "right", None]))}
    padding = draw(st.sampled_from([True, "longest", "max_length", False]))
    options["padding"] = padding
    if padding == "max_length":
        options["max_length"] = draw(st.integers(0, 40))
    if draw(st.booleans()):
        options["pad_to_multiple_of"] = draw(st.integers(1, 8))
    options["return_attention_mask"] = draw(st.sampled_from([None, True, False]))
    options["return_tensors"] = draw(st.sampled_from(KINDS))
    return options


def as_input(rows, form: str):
    """The same features in each form pad() takes."""
    if form == "list":
        return rows
    if form == "dict":
        return {key: [row[key] for row in rows] for key in rows[0]}
    import numpy as np

    if form == "numpy-rows":
        return [{key: np.asarray(value) for key, value in row.items()} for row in rows]
    import torch

    return [{key: torch.tensor(value) for key, value in row.items()} for row in rows]


FORMS = ["list", "dict", "numpy-rows"] + (["torch-rows"] if HAVE_TORCH else [])


# ---------------------------------------------------------------- properties
@given(data=st.data(), options=pad_options(), form=st.sampled_from(FORMS))
def test_batched_pad_equals_row_by_row_pad(tok, data, options, form):
    rows = data.draw(features(tok))
    inputs = as_input(rows, form)
    before = copy.deepcopy(inputs)
    expected = outcome(lambda: generic_pad(tok, inputs, **options), ERRORS)
    got = outcome(lambda: tok.pad(inputs, **options), ERRORS)
    assert got[0] == expected[0], (got, expected)
    if got[0] == "ok":
        same(got[1], expected[1], same_container=True)
    else:
        assert got[1] == expected[1]
    assert deep(as_plain(inputs)) == deep(as_plain(before)), "pad() changed what it was given"


def as_plain(inputs):
    if isinstance(inputs, dict):
        return [inputs[key] for key in inputs]
    return [[row[key] for key in row] for row in inputs]


@given(data=st.data(), kind=st.sampled_from(KINDS), side=st.sampled_from(["left", "right"]))
def test_single_encoding_pad_equals_transformers_pad(tok, data, kind, side):
    row = data.draw(features(tok))[0]
    width = len(row["input_ids"]) + data.draw(st.integers(0, 5))
    options = dict(padding="max_length", max_length=width, padding_side=side, return_tensors=kind)
    got = outcome(lambda: tok.pad(row, **options), ERRORS)
    expected = outcome(lambda: generic_pad(tok, row, **options), ERRORS)
    assert got[0] == expected[0], (got, expected)
    if got[0] == "ok":
        same(got[1], expected[1], same_container=True)
    else:  # e.g. a scalar extra key with return_tensors: transformers' conversion refuses it either way
        assert got[1] == expected[1]


# ------------------------------------------------------- nothing given changes
@pytest.mark.parametrize("kind", [k for k in KINDS if k])
def test_pad_of_a_tensor_batch_leaves_it_as_it_was(tok, kind):
    """Issue 13, item 11: transformers' pad turns the caller's BatchEncoding of tensors into lists in place."""
    batch = tok(["a", "hello world", "[gMASK]<sop>x"], padding=True, return_tensors=kind)
    snapshot = {key: value.copy() if kind == "np" else value.clone() for key, value in batch.items()}
    out = tok.pad(batch, padding="max_length", max_length=12, padding_side="right")
    for key, value in batch.items():
        assert type(value) is type(snapshot[key]) and deep(value) == deep(snapshot[key]), key
    assert type(out["input_ids"]) is type(batch["input_ids"]) and tuple(out["input_ids"].shape) == (3, 12)
    # transformers' own pad does change it: the regression this guards against
    generic = copy.copy(batch)
    PreTrainedTokenizerBase.pad(tok, generic, padding="max_length", max_length=12)
    assert isinstance(generic["input_ids"], list)


def test_pad_of_an_empty_encoding_returns_a_copy(tok):
    given = {"input_ids": []}
    out = tok.pad(given, return_attention_mask=True)
    assert out == {"input_ids": [], "attention_mask": []} and given == {"input_ids": []}


def test_rows_of_different_batch_sizes_are_a_value_error(tok):
    with pytest.raises(ValueError, match="input_ids has 2 rows but attention_mask has 1"):
        tok.pad({"input_ids": [[1], [2, 3]], "attention_mask": [[1]]})


def test_batches_take_the_direct_path(tok, monkeypatch):
    """Guard against the batched path silently switching off (the equality tests would still pass)."""
    calls = []
    original = glm4_padding.GLM4PaddingMixin._glm4_pad_rows

    def spy(self, *args, **kwargs):
        calls.append(args[-1])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(glm4_padding.GLM4PaddingMixin, "_glm4_pad_rows", spy)
    arrays = []
    original_arrays = glm4_padding._padded_arrays
    monkeypatch.setattr(glm4_padding, "_padded_arrays", lambda *a, **k: arrays.append(a[6]) or original_arrays(*a, **k))
    rows = [dict(tok(t)) for t in ["a", "hello world"]]
    for kind in KINDS:
        DataCollatorWithPadding(tok, return_tensors=kind or "np")(rows) if kind else tok.pad(rows)
    assert calls == [k or None for k in KINDS] and arrays == [k for k in KINDS if k]


# ---------------------------------------------------------------- _pad swaps
def llamafactory_patch_tokenizer(tokenizer):
    """The ``_pad`` swap of LLaMA-Factory's ``patch_tokenizer`` (llamafactory/model/patcher.py), in our words.

    Any tokenizer whose ``_pad`` is not transformers' generic one gets that generic one bound on the instance.
    """
    if getattr(tokenizer._pad, "__func__", None) is not PreTrainedTokenizerBase._pad:
        tokenizer._pad = MethodType(PreTrainedTokenizerBase._pad, tokenizer)


@pytest.fixture
def swapped(tok):
    twin = copy.deepcopy(tok)
    twin.padding_side = "right"
    llamafactory_patch_tokenizer(twin)
    assert twin.__dict__["_pad"].__func__ is PreTrainedTokenizerBase._pad  # the swap did happen
    return twin


@pytest.mark.parametrize("kind", [k for k in KINDS if k])
def test_collators_stay_exact_under_llamafactorys_pad_swap(tok, swapped, kind):
    """Issue 13, item 12: features from tok(text) carry position_ids, which transformers' _pad leaves unpadded."""
    reference = copy.deepcopy(tok)
    reference.padding_side = "right"
    texts = ["a", "hello world", "[gMASK]<sop><|user|>\nhi there, how are you?"]
    features = [dict(tok(t)) for t in texts]
    # the bug: transformers' pad with the swapped _pad leaves position_ids unpadded ("pt": an error;
    # "np": an object array of ragged rows)
    if kind == "pt":
        with pytest.raises(ValueError, match="position_ids"):
            PreTrainedTokenizerBase.pad(swapped, copy.deepcopy(features), return_tensors=kind)
    else:
        assert (
            PreTrainedTokenizerBase.pad(swapped, copy.deepcopy(features), return_tensors=kind)["position_ids"].dtype
            == object
        )

    batch = DataCollatorWithPadding(swapped, return_tensors=kind)(copy.deepcopy(features))
    same(batch, DataCollatorWithPadding(reference, return_tensors=kind)(copy.deepcopy(features)), same_container=True)
    for i, f in enumerate(features):
        ids, mask, positions = (deep(batch[key][i]) for key in ("input_ids", "attention_mask", "position_ids"))
        check_padded_row(ids, mask, positions, "right", tok.pad_token_id)
        assert [t for t, m in zip(ids, mask) if m] == f["input_ids"]

    labelled = [dict(f, labels=f["input_ids"][:]) for f in features]
    seq2seq = DataCollatorForSeq2Seq(swapped, return_tensors=kind)(copy.deepcopy(labelled))
    same(seq2seq, DataCollatorForSeq2Seq(reference, return_tensors=kind)(copy.deepcopy(labelled)), same_container=True)


def test_encoding_stays_exact_under_llamafactorys_pad_swap(tok, swapped):
    texts = ["a", "hello world", "[gMASK]<sop>x"]
    for options in (
        {"padding": True},
        {"padding": "max_length", "max_length": 12},
        {"padding": True, "return_tensors": "np"},
    ):
        same(swapped(texts, **options), tok(texts, padding_side="right", **options), same_container=True)
        same(swapped(texts[1], **options), tok(texts[1], padding_side="right", **options), same_container=True)
    for slow in (swapped, tok):
        slow.glm4_fast_path = False
    try:
        same(swapped(texts, padding=True), tok(texts, padding=True, padding_side="right"), same_container=True)
    finally:
        swapped.glm4_fast_path = tok.glm4_fast_path = True


def test_another_pad_is_still_called(tiny_tok):
    """A _pad of someone else's (a subclass's, an instance's own) is honoured, on every path."""

    class CountsPads(glm4_tokfix.ChatGLM4Tokenizer):
        def _pad(self, encoded_inputs, *args, **kwargs):
            out = super()._pad(encoded_inputs, *args, **kwargs)
            out["pads"] = out["attention_mask"].count(0)
            return out

    sub = CountsPads.from_pretrained(glm4_tokfix.TINY_GLM4_DIR)
    assert sub(["a", "hello world"], padding=True)["pads"][0] > 0
    assert sub.pad([dict(sub("a")), dict(sub("hello world"))])["pads"][0] > 0

    own = copy.deepcopy(tiny_tok)
    seen = []

    def noted(self, encoded_inputs, *args, **kwargs):
        seen.append(len(encoded_inputs["input_ids"]))
        return glm4_padding.GLM4PaddingMixin._pad(self, encoded_inputs, *args, **kwargs)

    own._pad = MethodType(noted, own)
    out = own.pad([dict(own("a")), dict(own("hello world"))])
    assert seen and out["input_ids"] == tiny_tok.pad([dict(own("a")), dict(own("hello world"))])["input_ids"]
    seen.clear()
    own(["a", "hello world"], padding=True)
    assert seen  # the fast path stepped aside so transformers could call it


# ------------------------------------------------------- over a fast tokenizer
@pytest.mark.parametrize("kind", KINDS)
def test_the_padding_mixin_works_over_a_fast_tokenizer(fast_folder, tiny_tok, kind):
    """GLM4PaddingMixin relies on generic tokenizer attributes only: laid over transformers' fast GLM-4
    tokenizer (built from the same vocabulary), collators pad exactly as with ChatGLM4Tokenizer."""
    from transformers import AutoTokenizer

    folder = str(fast_folder("tiny", "0414"))
    fast_class = type(AutoTokenizer.from_pretrained(folder))
    padded_fast = type("PaddedFast", (glm4_padding.GLM4PaddingMixin, fast_class), {})
    fast = padded_fast.from_pretrained(folder, padding_side="right")
    fast.model_input_names = [*fast.model_input_names, "position_ids"]
    ours = copy.deepcopy(tiny_tok)
    ours.padding_side = "right"
    features = [dict(ours(t)) for t in ["a", "hello world", "[gMASK]<sop><|user|>\nhi"]]
    collated = DataCollatorWithPadding(fast, return_tensors=kind)(copy.deepcopy(features))
    same(collated, DataCollatorWithPadding(ours, return_tensors=kind)(copy.deepcopy(features)), same_container=True)
    same(fast.pad(features, padding_side="left"), generic_pad(fast, features, padding_side="left"), same_container=True)
