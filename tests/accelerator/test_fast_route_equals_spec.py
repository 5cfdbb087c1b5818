"""The fast tokenizer's accelerator (``GLM4FastRouteMixin``) gives exactly what its spec (``GLM4FastSpecMixin``) gives.

The spec alone, over ``PreTrainedTokenizerFast``, is a complete fixed fast tokenizer; the full
``ChatGLM4TokenizerFast`` lays the fast route, the chat features and the padding rules over it. For every option of
``__call__`` -- texts and batches, pairs, words, padding, truncation, strides, tensors, every ``return_*`` field,
``split_special_tokens``, texts that already start with ``[gMASK]<sop>`` or hold other added tokens -- both give the
same keys, values, types and dtypes, or fail with the same exception class.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glm4_tokfix.remote_code.glm4_fast_spec import GLM4FastSpecMixin
from glm4_tokfix.remote_code.tokenization_glm4_tokfix_fast import ChatGLM4TokenizerFast
from glm4_tokfix.testing.strategies import available_tensor_types
from helpers import same, takes_fast_route
from strategies import PREFIX, SPECIAL_LITERALS, batches, encode_options, prompt_texts

VOCABS = ["tiny", pytest.param("real", marks=pytest.mark.real_vocab)]
STYLES = ["chat-hf", "0414"]
TENSORS = available_tensor_types()  # "pt" only with torch
SPEC_MODULE = Path(__file__).resolve().parents[2] / "src" / "glm4_tokfix" / "remote_code" / "glm4_fast_spec.py"


def spec_only_class():
    from transformers import PreTrainedTokenizerFast

    class SpecOnlyGLM4TokenizerFast(GLM4FastSpecMixin, PreTrainedTokenizerFast):
        """The fast spec alone: no fast route, chat mixin or padding mixin."""

        model_input_names = ChatGLM4TokenizerFast.model_input_names  # the same fields by default

    return SpecOnlyGLM4TokenizerFast


@pytest.fixture(scope="module")
def pair_cache():
    return {}


def tokenizers_of(fast_folder, pair_cache, vocab, style):
    """(the full fixed tokenizer, the spec-only one) loaded from the same folder."""
    key = (vocab, style)
    if key not in pair_cache:
        folder = str(fast_folder(vocab, style))
        full = ChatGLM4TokenizerFast.from_pretrained(folder)
        spec = spec_only_class().from_pretrained(folder)
        assert full.glm4_fast_route_reason() is None  # the route is on for this folder
        assert not hasattr(spec, "glm4_fast_route_reason") and not hasattr(spec, "_glm4_fast_batch")
        pair_cache[key] = (full, spec)
    return pair_cache[key]


# ---------------------------------------------------------------------------------------------- strategies
#: added tokens other than the prefix, and text around them
pieces = st.one_of(
    st.sampled_from([*SPECIAL_LITERALS, PREFIX, "[gMASK]", "<sop>", " ", "\n", "hi", " there", "123", "é", "你好"]),
    st.text(max_size=6),
)
other_texts = st.lists(pieces, max_size=6).map("".join)
any_texts = st.one_of(prompt_texts(), other_texts, st.just(""))


@st.composite
def inputs(draw):
    """(args, kwargs) of one ``__call__``: a text, a batch, a pair, a batch of pairs, or words (single or batch)."""
    kind = draw(st.sampled_from(["single", "batch", "batch", "pair", "pairs", "words", "word_batch"]))
    if kind == "single":
        return (draw(any_texts),), {}
    if kind == "batch":
        return (draw(st.lists(any_texts, min_size=1, max_size=5)),), {}
    if kind == "pair":
        return (draw(any_texts), draw(any_texts)), {}
    if kind == "pairs":
        n = draw(st.integers(1, 4))
        firsts = draw(st.lists(any_texts, min_size=n, max_size=n))
        return (firsts, draw(st.lists(any_texts, min_size=n, max_size=n))), {}
    words = st.lists(st.one_of(pieces, st.sampled_from(["a", "b c", PREFIX])), min_size=1, max_size=5)
    if kind == "words":
        return (draw(words),), {"is_split_into_words": True}
    return (draw(st.lists(words, min_size=1, max_size=4)),), {"is_split_into_words": True}


def maybe(draw, key, values, options):
    if draw(st.booleans()):
        options[key] = draw(st.sampled_from(values))


@st.composite
def call_options(draw):
    """Any keyword arguments of ``__call__`` (valid or not: both tokenizers must then fail alike)."""
    options = {}
    maybe(draw, "add_special_tokens", [True, False], options)
    maybe(draw, "padding", [False, True, "longest", "max_length", "do_not_pad"], options)
    maybe(draw, "truncation", [None, False, True, "longest_first", "only_first", "only_second", "do_not_truncate"],
          options)  # fmt: skip
    maybe(draw, "max_length", [None, *range(1, 13), 16, 24, 48], options)
    maybe(draw, "stride", [0, 0, 1, 2, 4], options)
    maybe(draw, "pad_to_multiple_of", [None, 1, 3, 4, 8], options)
    maybe(draw, "padding_side", ["left", "right"], options)
    maybe(draw, "return_tensors", [None, *TENSORS], options)
    for key in ("return_attention_mask", "return_token_type_ids"):
        maybe(draw, key, [None, True, False], options)
    for key in ("return_special_tokens_mask", "return_offsets_mapping", "return_length", "return_overflowing_tokens",
                "split_special_tokens"):  # fmt: skip
        maybe(draw, key, [True, False], options)
    return options


# ---------------------------------------------------------------------------------------------- comparison
def outcome(call):
    try:
        return call(), None
    except Exception as exc:  # any error: the class must match
        return None, exc
    except BaseException as exc:  # a Rust panic (pyo3's PanicException derives from BaseException)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return None, exc


def encoding_view(e):
    return (e.ids, e.type_ids, e.tokens, e.offsets, e.attention_mask, e.special_tokens_mask, e.word_ids,
            e.n_sequences, len(e.overflowing))  # fmt: skip


def assert_route_equals_spec(full, spec, args, options, tokenizer_sides):
    for tok in (full, spec):
        tok.padding_side, tok.truncation_side = tokenizer_sides
    try:
        got, got_error = outcome(lambda: full(*args, **options))
        want, want_error = outcome(lambda: spec(*args, **options))
    finally:
        for tok in (full, spec):
            tok.padding_side = tok.truncation_side = "right"
    assert type(got_error) is type(want_error), (got_error, want_error)
    if want_error is not None:
        return got
    assert type(want).__name__ == "BatchEncoding"
    same(got, want)  # keys in order; per key type, dtype, shape and values
    got_encodings, want_encodings = outcome(lambda: got.encodings), outcome(lambda: want.encodings)
    if want_encodings[0] is None:
        assert got_encodings[0] is None
    else:
        assert [encoding_view(e) for e in got_encodings[0]] == [encoding_view(e) for e in want_encodings[0]]
    return got


sides = st.tuples(st.sampled_from(["left", "right"]), st.sampled_from(["left", "right"]))


# ---------------------------------------------------------------------------------------------- properties
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("vocab", VOCABS)
@settings(deadline=None)
@given(call=inputs(), options=call_options(), tokenizer_sides=sides)
def test_every_call_equals_the_spec(fast_folder, pair_cache, vocab, style, call, options, tokenizer_sides):
    full, spec = tokenizers_of(fast_folder, pair_cache, vocab, style)
    args, extra = call
    assert_route_equals_spec(full, spec, args, {**extra, **options}, tokenizer_sides)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("vocab", VOCABS)
@settings(deadline=None)
@given(texts=batches(), options=encode_options(outputs=True, tensor_types=TENSORS),
       split=st.sampled_from([None, None, True]), single=st.booleans())  # fmt: skip
def test_plain_texts_take_the_route_and_equal_the_spec(fast_folder, pair_cache, vocab, style, texts, options, split,
                                                       single):  # fmt: skip
    """The property above is not vacuous: plain-text calls do take the fast route (``takes_fast_route``)."""
    full, spec = tokenizers_of(fast_folder, pair_cache, vocab, style)
    if split is not None:
        options = dict(options, split_special_tokens=split)
    args = (texts[0],) if single else (texts,)
    got = assert_route_equals_spec(full, spec, args, options, ("right", "right"))
    if got is not None and not single:  # (a single text's batch may be rebuilt by transformers: 4.x with tensors)
        expected = "fast" if takes_fast_route(options, texts, style, split) else "rust"
        assert getattr(got, "glm4_route", "rust") == expected


def test_the_route_is_switched_off_by_glm4_fast_path(fast_folder, pair_cache):
    full, spec = tokenizers_of(fast_folder, pair_cache, "tiny", "chat-hf")
    off = copy.deepcopy(full)
    off.glm4_fast_path = False
    texts = [PREFIX + "<|user|>\nhi", "plain text", ""]
    assert full(texts, padding=True).glm4_route == "fast"
    assert not hasattr(off(texts, padding=True), "glm4_route")
    same(off(texts, padding=True, return_tensors="np"), spec(texts, padding=True, return_tensors="np"))


def test_the_spec_module_knows_nothing_of_the_route():
    """``glm4_fast_spec`` imports no accelerator module (only the prefix rule's encoder, the shared spec, state and
    facts) and names none of the route's switches."""
    source = SPEC_MODULE.read_text(encoding="utf-8")
    tree = ast.parse(source)
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
    assert imported <= {"glm4_fast_encoder", "glm4_spec", "glm4_state", "glm4_tokens"}
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not names & {"glm4_fast_path", "_CALL_ROUTE", "_glm4_fast_route_takes", "_glm4_fast_batch", "_FastRoute"}


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_torch_tensors_equal_the_spec(fast_folder, pair_cache):
    full, spec = tokenizers_of(fast_folder, pair_cache, "tiny", "chat-hf")
    texts = [PREFIX + "x", "a longer text, 12345", ""]
    for options in ({"padding": True}, {"padding": "max_length", "max_length": 8, "truncation": True},
                    {"padding": True, "return_special_tokens_mask": True, "return_offsets_mapping": True}):  # fmt: skip
        got = assert_route_equals_spec(full, spec, (texts,), {**options, "return_tensors": "pt"}, ("left", "right"))
        # a text's own [gMASK]<sop> is text (mask 0) to the spec: the route leaves such a mask to it
        assert getattr(got, "glm4_route", "rust") == ("rust" if "return_special_tokens_mask" in options else "fast")
