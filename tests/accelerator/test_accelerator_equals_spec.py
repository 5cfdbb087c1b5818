"""The accelerator never changes an answer: the fixed tokenizer equals the spec layer alone, option by option.

``spec`` is ``GLM4SpecMixin`` over the GLM-4 vocabulary and nothing else: transformers' generic path calling the
spec's hooks, with no fast path, no batched ``pad`` and no chat layer in its class (checked below). The fixed
tokenizer (``ChatGLM4Tokenizer``: spec + accelerator + offsets + chat) must give exactly the same fields, types,
dtypes and values, or the same error, for every option of ``__call__``, ``encode``, ``pad`` and ``decode``. Offsets
are not compared here: the spec has none (transformers' slow tokenizers raise ``NotImplementedError``); the
offsets layer is held to the byte arithmetic in ``test_offsets.py``.
"""

from __future__ import annotations

import importlib.util

import pytest
from hypothesis import given
from hypothesis import strategies as st

import glm4_tokfix
from glm4_tokfix.remote_code.glm4_spec import GLM4SpecMixin
from glm4_tokfix.remote_code.glm4_vocab import _ChatGLM4Vocab
from helpers import outcome, same
from strategies import PREFIX, batches, encode_options, prompt_texts

HAVE_TORCH = importlib.util.find_spec("torch") is not None
ACCELERATOR_MODULES = ("glm4_rows", "glm4_padding", "glm4_offset_mixin", "glm4_chat", "glm4_encoders")


class SpecOnlyTokenizer(GLM4SpecMixin, _ChatGLM4Vocab):
    """The spec layer over the vocabulary, and nothing else of the fix."""


@pytest.fixture(scope="module")
def spec(tok):
    return SpecOnlyTokenizer.from_pretrained(tok.name_or_path)


def test_the_spec_class_holds_no_accelerator():
    modules = {k.__module__.rsplit(".", 1)[-1] for k in SpecOnlyTokenizer.__mro__}
    assert "glm4_spec" in modules
    assert not modules & set(ACCELERATOR_MODULES), modules
    assert not hasattr(SpecOnlyTokenizer, "_glm4_fast_encode")


def test_the_fixed_class_is_the_spec_plus_layers():
    mro = glm4_tokfix.ChatGLM4Tokenizer.__mro__
    assert mro.index(GLM4SpecMixin) > max(
        i for i, k in enumerate(mro) if k.__module__.rsplit(".", 1)[-1] in ACCELERATOR_MODULES
    ), "every accelerator and feature layer must sit above the spec, so what it does not take reaches the spec"


@st.composite
def call_options(draw):
    """Every option of ``__call__`` the two can be asked: encode_options plus outputs, overflow, splitting."""
    options = draw(encode_options(outputs=True, tensor_types=("np", "pt") if HAVE_TORCH else ("np",)))
    if draw(st.booleans()):
        options["return_length"] = draw(st.booleans())
    if draw(st.booleans()):
        options["split_special_tokens"] = draw(st.booleans())
    if options.get("truncation") and draw(st.booleans()):
        options["truncation"] = draw(st.sampled_from(["longest_first", "only_first", "only_second"]))
        if draw(st.booleans()):
            options["return_overflowing_tokens"] = True
            options["stride"] = draw(st.integers(0, 3))
    return options


def both(tok, spec, call, side):
    """``call`` on each tokenizer, with ``truncation_side`` set on both; (fixed outcome, spec outcome)."""
    for t in (tok, spec):
        t.truncation_side = side
    try:
        return outcome(lambda: call(tok)), outcome(lambda: call(spec))
    finally:
        tok.truncation_side = spec.truncation_side = "right"


def check(got, expected):
    assert got[0] == expected[0], (got, expected)
    if got[0] == "ok":
        same(got[1], expected[1])
    else:
        assert got[1] == expected[1]


sides = st.sampled_from(["left", "right"])


@given(texts=batches(), options=call_options(), side=sides)
def test_batches(tok, spec, texts, options, side):
    check(*both(tok, spec, lambda t: t(texts, **options), side))


@given(text=prompt_texts(), options=call_options(), side=sides)
def test_single_texts(tok, spec, text, options, side):
    check(*both(tok, spec, lambda t: t(text, **options), side))


@given(firsts=batches(min_size=1, max_size=4), seconds=batches(min_size=4, max_size=4), options=call_options(),
       side=sides)  # fmt: skip
def test_pairs(tok, spec, firsts, seconds, options, side):
    seconds = seconds[: len(firsts)]
    check(*both(tok, spec, lambda t: t(firsts, seconds, **options), side))
    check(*both(tok, spec, lambda t: t(firsts[0], seconds[0], **options), side))


@given(words=st.lists(batches(min_size=1, max_size=4), min_size=1, max_size=3), options=call_options(), side=sides)
def test_pretokenized_words(tok, spec, words, options, side):
    check(*both(tok, spec, lambda t: t(words, is_split_into_words=True, **options), side))
    check(*both(tok, spec, lambda t: t(words[0], is_split_into_words=True, **options), side))


@given(text=prompt_texts(), add=st.booleans(), split=st.sampled_from([None, False, True]),
       limit=st.sampled_from([None, 3, 9]), side=sides)  # fmt: skip
def test_encode(tok, spec, text, add, split, limit, side):
    kwargs = {} if split is None else {"split_special_tokens": split}
    if limit is not None:
        kwargs.update(truncation=True, max_length=limit)
    got, expected = both(tok, spec, lambda t: {"ids": t.encode(text, add_special_tokens=add, **kwargs)}, side)
    check(got, expected)


@given(texts=batches(min_size=1), options=call_options(), pad=st.sampled_from(["longest", "max_length"]),
       multiple=st.sampled_from([None, 4]), side=sides, tensors=st.sampled_from([None, "np"]))  # fmt: skip
def test_pad(tok, spec, texts, options, pad, multiple, side, tensors):
    """``pad()`` of unpadded rows (what collators do): the batched pad against transformers' per-row ``_pad``."""
    options.update(padding=False, return_tensors=None, return_overflowing_tokens=False)
    options.pop("stride", None)
    encoded = outcome(lambda: tok(texts, **options))
    if encoded[0] != "ok":
        return
    features = [{key: value[i] for key, value in encoded[1].items()} for i in range(len(texts))]
    width = max(len(f["input_ids"]) for f in features) + 2

    def call(t):
        return t.pad(features, padding=pad, max_length=width, pad_to_multiple_of=multiple, padding_side=side,
                     return_tensors=tensors)  # fmt: skip

    check(outcome(lambda: call(tok)), outcome(lambda: call(spec)))


@given(text=prompt_texts(), skip=st.booleans())
def test_decode(tok, spec, text, skip):
    ids = spec.encode(text)
    assert tok.decode(ids, skip_special_tokens=skip) == spec.decode(ids, skip_special_tokens=skip)
    assert tok.batch_decode([ids, ids[2:]]) == spec.batch_decode([ids, ids[2:]])


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_the_tokenizer_padding_side_counts_on_both(tok, spec, padding_side):
    texts = [PREFIX + "<|user|>\nhi", "a longer text, with more words in it"]
    for t in (tok, spec):
        t.padding_side = padding_side
    try:
        check(outcome(lambda: tok(texts, padding=True)), outcome(lambda: spec(texts, padding=True)))
    finally:
        tok.padding_side = spec.padding_side = "left"
