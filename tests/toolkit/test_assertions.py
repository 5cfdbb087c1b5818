"""glm4_tokfix.testing's assertion helpers: each fires on a broken GLM-4 tokenizer and stays quiet on the fixed one.

Broken tokenizers are the upstream stand-ins (loaded as remote code from temp
folders) and small mutants of the fixed class with exactly one bug each.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

import glm4_tokfix
from glm4_tokfix.testing import _format as fmt
from glm4_tokfix.testing import (
    assert_batch_matches_single,
    assert_chat_template_consistent,
    assert_decode_rejects_unknown_ids,
    assert_decode_round_trip,
    assert_encode_consistent,
    assert_pad_idempotent,
    assert_pair_encoding,
    assert_prefix_idempotent,
    assert_special_tokens_mask,
    assert_truncation_exact,
)
from locations import TINY_DIR
from strategies import batches, texts

CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "你好 <|user|> hi"}]

# (id, helper call, revisions it must fire on, fragment of the message). The mid-2024 revision raises
# TypeError from _pad on every encoding call with transformers >= 4.45, so every helper fires on it.
CASES = [
    ("batch-right", lambda t: assert_batch_matches_single(t, ["hi", "hello world"], padding=True, padding_side="right"),
     ("current", "mid2024"), r"row 0|raised TypeError"),
    ("batch-left", lambda t: assert_batch_matches_single(t, ["hi", "hello world"], padding=True, padding_side="left"),
     ("mid2024",), r"raised TypeError"),
    ("prefix", lambda t: assert_prefix_idempotent(t, "<|user|>\nhi"), ("current", "mid2024"),
     r"added a second time|raised TypeError"),
    ("pad", lambda t: assert_pad_idempotent(t, ["hi", "hello world"], padding_side="right"), ("current", "mid2024"),
     r"row 0|raised TypeError"),
    ("chat", lambda t: assert_chat_template_consistent(t, CHAT), ("current", "mid2024"),
     r"tokenizer\(rendered\) differs|raised TypeError"),
    ("decode", lambda t: assert_decode_round_trip(t, "a<|user|>b"), ("current", "mid2024"),
     r"does not give back the text|raised TypeError"),
    ("truncation", lambda t: assert_truncation_exact(t, "[gMASK]<sop>hello world", 4), ("current", "mid2024"),
     r"max_length=4|raised TypeError"),
    ("pair", lambda t: assert_pair_encoding(t, "a", "b"), ("current", "mid2024"),
     r"raised KeyError: '<eos>'|raised TypeError"),
    ("special-mask", lambda t: assert_special_tokens_mask(t, "hi"), ("current", "mid2024"),
     r"special_tokens_mask does not mark|raised TypeError"),
    ("unknown-ids", lambda t: assert_decode_rejects_unknown_ids(t, 3), ("current", "mid2024"),
     r"returned '' for an id outside|raised KeyError"),
    ("encode", lambda t: assert_encode_consistent(t, "hello 你好"), ("mid2024",), r"raised TypeError"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("revision", ["fixed-class", "fixed", "current", "mid2024"])
def test_helper_fires_on_upstream_and_not_on_the_fix(standin, tiny_tok, case, revision):
    _, call, broken_on, fragment = case
    tokenizer = tiny_tok if revision == "fixed-class" else standin(revision)
    if revision in broken_on:
        with pytest.raises(AssertionError, match=fragment):
            call(tokenizer)
    else:
        call(tokenizer)  # quiet: the fixed tokenizer (as a class or as remote code), or a bug this helper is not about


def test_batch_message_shows_row_sequences_and_options(standin):
    with pytest.raises(AssertionError) as info:
        assert_batch_matches_single(standin("current"), ["hi", "hello world"], padding=True, padding_side="right")
    message = str(info.value)
    assert "input_ids of row 0 is not its single encoding padded on the right to width 8" in message
    assert "first difference at position 0" in message
    # the two sequences around the difference, the difference marked
    assert re.search(r"batch row : \[»550«, 550, 550, 550, 552, 554", message), message
    assert re.search(r"expected  : \[»552«, 554, \d+, \d+, 550, 550", message), message
    assert "text      : 'hi'" in message
    assert "options   : padding=True, padding_side='right'" in message


def test_tokenizer_exceptions_become_violations_with_their_text(standin):
    with pytest.raises(AssertionError) as info:
        assert_batch_matches_single(standin("mid2024"), ["hi", "hello"], padding=True, padding_side="left")
    message = str(info.value)
    assert "tokenizer(texts, **options) raised TypeError" in message
    assert "unexpected keyword argument 'padding_side'" in message
    assert "options : padding=True, padding_side='left'" in message
    assert isinstance(info.value.__cause__, TypeError)

    with pytest.raises(AssertionError, match=r"tokenizer\(text, text_pair\) raised KeyError: '<eos>'") as info:
        assert_pair_encoding(standin("current"), "question", "answer")
    assert isinstance(info.value.__cause__, KeyError)


def test_prefix_message_names_the_double_prefix(standin):
    with pytest.raises(AssertionError) as info:
        assert_prefix_idempotent(standin("current"), "hello")
    message = str(info.value)
    assert "the prefix is added a second time" in message
    assert "with prefix : [552, 554, »552«, 554" in message
    assert "without     : [552, 554, »" in message


def test_decode_message_shows_the_characters_around_the_difference(standin):
    with pytest.raises(AssertionError) as info:
        assert_decode_round_trip(standin("current"), "ab<|user|>cd")
    message = str(info.value)
    assert "first difference at character 2" in message
    assert "text     : 'ab<|user|>cd'" in message
    assert "ids      : [" in message


# ------------------------------------------------------------------ mutants
class _Mutant(glm4_tokfix.ChatGLM4Tokenizer):
    """The fixed class on transformers' generic path (its fast path would bypass the injected ``_pad`` bugs)."""

    glm4_fast_path = False


class PositionsCountPads(_Mutant):
    """position_ids run 0..width-1 over the pads too."""

    def _pad(self, encoded_inputs, *args, **kwargs):
        out = super()._pad(encoded_inputs, *args, **kwargs)
        out["position_ids"] = list(range(len(out["input_ids"])))
        return out


class IgnoresPadToMultipleOf(_Mutant):
    def _pad(self, encoded_inputs, max_length=None, padding_strategy="do_not_pad", pad_to_multiple_of=None, **kwargs):
        return super()._pad(encoded_inputs, max_length, padding_strategy, None, **kwargs)


class SpecialMaskPadsWithZero(_Mutant):
    def _pad(self, encoded_inputs, *args, **kwargs):
        out = super()._pad(encoded_inputs, *args, **kwargs)
        if "special_tokens_mask" in out and "attention_mask" in out:
            pairs = zip(out["special_tokens_mask"], out["attention_mask"])
            out["special_tokens_mask"] = [s if m else 0 for s, m in pairs]
        return out


class ForgetsEarlierPads(_Mutant):
    """Re-padding treats every token as real: old pads get mask 1."""

    def _pad(self, encoded_inputs, *args, **kwargs):
        encoded_inputs.pop("attention_mask", None)
        return super()._pad(encoded_inputs, *args, **kwargs)


class EncodeDropsLastToken(_Mutant):
    def encode(self, *args, **kwargs):
        return super().encode(*args, **kwargs)[:-1]


class DecodeStrips(_Mutant):
    def _decode(self, *args, **kwargs):
        return super()._decode(*args, **kwargs).strip()


class IgnoresReturnAttentionMask(_Mutant):
    def _pad(self, encoded_inputs, *args, return_attention_mask=None, **kwargs):
        return super()._pad(encoded_inputs, *args, return_attention_mask=True, **kwargs)


MUTANTS = [
    (PositionsCountPads, lambda t: assert_batch_matches_single(t, ["hi", "hello world"], padding=True),
     r"position_ids of row 0 is not its single encoding"),
    (IgnoresPadToMultipleOf, lambda t: assert_batch_matches_single(t, ["hi"], padding=True, pad_to_multiple_of=8),
     r"input_ids of row 0 is not its single encoding padded on the left to width 8"),
    (SpecialMaskPadsWithZero,
     lambda t: assert_batch_matches_single(t, ["hi", "hello world"], padding=True, return_special_tokens_mask=True),
     r"special_tokens_mask of row 0"),
    (IgnoresReturnAttentionMask,
     lambda t: assert_batch_matches_single(t, ["hi", "hello world"], padding=True, return_attention_mask=False),
     r"returned an attention_mask although return_attention_mask=False"),
    (ForgetsEarlierPads, lambda t: assert_pad_idempotent(t, ["hi", "hello world"]),
     r"attention_mask of row 0: padding the padded batch"),
    (EncodeDropsLastToken, lambda t: assert_encode_consistent(t, "hello"), r"tokenizer.encode\(text\) differs"),
    (DecodeStrips, lambda t: assert_decode_round_trip(t, " hello "), r"first difference at character 0"),
]  # fmt: skip


@pytest.mark.parametrize("mutant, call, fragment", MUTANTS, ids=[m[0].__name__ for m in MUTANTS])
def test_helper_fires_on_a_single_injected_bug(tiny_tok, mutant, call, fragment):
    call(tiny_tok)  # the fixed tokenizer passes the same call, on its fast path and on the generic one
    call(_Mutant.from_pretrained(TINY_DIR))
    with pytest.raises(AssertionError, match=fragment):
        call(mutant.from_pretrained(TINY_DIR))


# ------------------------------------------------------- quiet on the fix
@given(texts=batches(), side=st.sampled_from(["left", "right"]), multiple=st.sampled_from([None, 1, 3, 8]))
def test_batch_and_pad_helpers_hold_on_the_fix(tok, texts, side, multiple):
    assert_batch_matches_single(tok, texts, padding=True, padding_side=side, pad_to_multiple_of=multiple)
    assert_pad_idempotent(tok, texts, padding_side=side, pad_to_multiple_of=multiple)


@given(text=texts(), max_length=st.integers(2, 20), side=st.sampled_from(["left", "right"]))
def test_text_helpers_hold_on_the_fix(tok, text, max_length, side):
    assert_prefix_idempotent(tok, text)
    assert_prefix_idempotent(tok, "[gMASK]<sop>" + text, truncation=True, max_length=max_length)
    assert_decode_round_trip(tok, text)
    assert_truncation_exact(tok, text, max_length, side)
    assert_special_tokens_mask(tok, text)
    assert_encode_consistent(tok, text)
    assert tok.truncation_side == "right"  # restored by assert_truncation_exact


def test_batch_helper_takes_pairs(tiny_tok, standin):
    assert_batch_matches_single(tiny_tok, [("q", "a"), ("question", "answer")], padding=True, padding_side="right")
    with pytest.raises(AssertionError, match="raised KeyError"):
        assert_batch_matches_single(standin("current"), [("q", "a")], padding=True)


def test_chat_helper_takes_one_chat_or_a_batch(tiny_tok):
    assert_chat_template_consistent(tiny_tok, CHAT)
    assert_chat_template_consistent(tiny_tok, [CHAT, [{"role": "user", "content": "x"}]], add_generation_prompt=False)


# ------------------------------------------------------------- bad usage
@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda t: assert_truncation_exact(t, "x", 1), "max_length must be an int >= 2"),
        (lambda t: assert_truncation_exact(t, "x", 4, "middle"), "truncation_side must be"),
        (lambda t: assert_prefix_idempotent(t, "x", add_special_tokens=False), "do not pass add_special_tokens"),
        (lambda t: assert_batch_matches_single(t, ["x"], padding="sideways"), "is not a padding mode"),
        (lambda t: assert_pad_idempotent(t, ["x"], extra=-1), "extra must be >= 0"),
        (lambda t: assert_decode_rejects_unknown_ids(t, -2), "beyond must be an int >= 0"),
    ],
)
def test_bad_helper_arguments_are_value_errors(tiny_tok, call, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        call(tiny_tok)


# ---------------------------------------------------------------- format
def test_first_difference_and_window():
    assert fmt.first_difference([1, 2, 3], [1, 2, 3]) is None
    assert fmt.first_difference([1, 2, 3], [1, 9, 3]) == 1
    assert fmt.first_difference([1, 2], [1, 2, 3]) == 2
    assert fmt.window(list(range(20)), 10, radius=2) == "[... 8, 9, »10«, 11, 12 ...] (20 ids)"
    assert fmt.window([1, 2], 2) == "[1, 2, »«] (2 ids)"
    assert fmt.options({"padding": True, "padding_side": "left"}) == "padding=True, padding_side='left'"
    assert fmt.options({}) == "(none)"
    assert fmt.short("x" * 500).endswith("(502 chars)")
    assert fmt.text_window("hello world", 6, radius=3) == "...'lo ' »'w'« 'orl'... (11 chars)"
    assert fmt.text_window("ab", 2) == "'ab' »end« '' (2 chars)"
