"""return_offsets_mapping: character offsets equal to the HF fast tokenizer of the same vocabulary.

The reference is transformers' own fast tokenizer built at test time from the same ``tokenizer.model``
("0414" style: byte-level, ``trim_offsets=False``, no post-processor prefix). On the text tokens ours must
give its offsets exactly; an added ``[gMASK]<sop>`` and pads get ``(0, 0)``; a literal prefix in the text
keeps its own characters. Checked on the fast path and transformers' generic path, single and batched,
padded on both sides, truncated on both sides, for pairs, and on patched upstream stand-ins.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import glm4_tokfix
from glm4_tokfix.remote_code.glm4_offsets import token_char_offsets
from helpers import as_lists
from strategies import PREFIX, batches, prompt_texts, texts


@pytest.fixture(scope="session")
def reference(vocab_dir, fast_folder, tiny_tok):
    from transformers import AutoTokenizer

    vocab = "tiny" if vocab_dir.name == "tiny-glm4" else "real"
    return AutoTokenizer.from_pretrained(str(fast_folder(vocab, "0414")))


def offsets(encoding):
    return [tuple(pair) for pair in as_lists(encoding["offset_mapping"])]


def expected_offsets(tok, reference, text, add_special_tokens=True):
    """The reference's offsets, with our prefix rule: added -> (0, 0), literal -> its characters."""
    ref = reference(text, add_special_tokens=False, return_offsets_mapping=True)
    got = [tuple(p) for p in ref["offset_mapping"]]
    if add_special_tokens and not text.startswith(PREFIX):
        got = [(0, 0), (0, 0)] + got
    return ref["input_ids"], got


def without_surrogates(text: str) -> str:
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


@given(text=prompt_texts(), add_special_tokens=st.booleans())
def test_single_matches_the_fast_reference(tok, reference, text, add_special_tokens):
    text = without_surrogates(text)  # the Rust tokenizer refuses lone surrogates
    enc = tok(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    _ref_ids, expected = expected_offsets(tok, reference, text, add_special_tokens)
    assert offsets(enc) == expected
    assert len(enc["input_ids"]) == len(expected)


@given(text=texts())
def test_every_token_covers_its_own_characters(tok, text):
    """Decoding a token's characters gives back that token's bytes (whole characters, when split)."""
    text = without_surrogates(text)
    ids = tok(text, add_special_tokens=False).input_ids
    spans = offsets(tok(text, add_special_tokens=False, return_offsets_mapping=True))
    for token_id, (start, end) in zip(ids, spans):
        piece = tok.decoder.get(token_id) or tok.convert_ids_to_tokens(token_id).encode()
        assert piece in text[start:end].encode("utf-8")


def test_tokens_inside_one_character_share_it():
    assert token_char_offsets([b"\xf0\x9f\x98", b"\x80", b"x"]) == [(0, 1), (0, 1), (1, 2)]
    assert token_char_offsets([b"a", b"\xe4\xbd", b"\xa0", b" b"]) == [(0, 1), (1, 2), (1, 2), (2, 4)]
    assert token_char_offsets([]) == []


def test_lone_surrogates_count_as_one_character(tok):
    enc = tok("a\ud800b", add_special_tokens=False, return_offsets_mapping=True)
    assert offsets(enc)[0][0] == 0 and offsets(enc)[-1][1] == 3


@given(batch=batches(), side=st.sampled_from(["left", "right"]), fast=st.booleans())
def test_batch_rows_equal_single_rows(tok, batch, side, fast):
    tok.glm4_fast_path = fast
    try:
        enc = tok(batch, padding=True, padding_side=side, return_offsets_mapping=True)
        for i, text in enumerate(batch):
            single = offsets(tok(text, return_offsets_mapping=True))
            row = [tuple(p) for p in enc["offset_mapping"][i]]
            mask = enc["attention_mask"][i]
            assert [p for p, m in zip(row, mask) if m] == single
            assert all(p == (0, 0) for p, m in zip(row, mask) if not m)
            assert len(row) == len(enc["input_ids"][i])
    finally:
        tok.glm4_fast_path = True


@given(
    text=prompt_texts(),
    max_length=st.integers(2, 12),
    side=st.sampled_from(["left", "right"]),
    padding=st.sampled_from([False, "max_length"]),
)
def test_truncation_cuts_offsets_with_the_ids(tok, text, max_length, side, padding):
    tok.truncation_side = side
    try:
        kwargs = dict(truncation=True, max_length=max_length, padding=padding, return_offsets_mapping=True)
        fast = tok(text, **kwargs)
        tok.glm4_fast_path = False
        generic = tok(text, **kwargs)
    finally:
        tok.truncation_side = "right"
        tok.glm4_fast_path = True
    assert dict(fast) == dict(generic)
    full = offsets(tok(text, return_offsets_mapping=True))
    body, head = full[2:], full[:2]
    kept = [p for p, m in zip(offsets(fast), fast["attention_mask"]) if m]
    n = len(kept) - 2
    assert kept == head + (body[len(body) - n :] if side == "left" else body[:n])


@given(batch=batches(max_size=4), tensors=st.sampled_from([None, "np"]))
def test_generic_path_equals_fast_path(tok, batch, tensors):
    fast = tok(batch, padding=True, return_offsets_mapping=True, return_tensors=tensors)
    tok.glm4_fast_path = False
    try:
        generic = tok(batch, padding=True, return_offsets_mapping=True, return_tensors=tensors)
    finally:
        tok.glm4_fast_path = True
    assert set(fast) == set(generic)
    for key in fast:
        assert as_lists(fast[key]) == as_lists(generic[key]), key
        if tensors is not None:
            assert (fast[key].dtype, fast[key].shape) == (generic[key].dtype, generic[key].shape), key


def test_offsets_of_empty_rows_as_arrays_are_ints(tok):
    fast = tok([""], padding=True, add_special_tokens=False, return_offsets_mapping=True, return_tensors="np")
    tok.glm4_fast_path = False
    try:
        generic = tok([""], padding=True, add_special_tokens=False, return_offsets_mapping=True, return_tensors="np")
    finally:
        tok.glm4_fast_path = True
    assert fast["offset_mapping"].dtype == generic["offset_mapping"].dtype == "int64"
    assert fast["offset_mapping"].shape == generic["offset_mapping"].shape


def test_pairs_map_into_each_text(tok):
    enc = tok("hello 你好", "world", return_offsets_mapping=True)
    first = offsets(tok("hello 你好", add_special_tokens=False, return_offsets_mapping=True))
    second = offsets(tok("world", add_special_tokens=False, return_offsets_mapping=True))
    assert offsets(enc) == [(0, 0), (0, 0)] + first + second + [(0, 0)]
    batch = tok(["hello 你好", "a"], ["world", "bb b"], padding=True, return_offsets_mapping=True)
    assert [tuple(p) for p in batch["offset_mapping"][0]] == offsets(enc)


def test_pair_truncation_and_overflow(tok):
    text, pair = "one two three four five six", "seven eight nine"
    for strategy in ("only_first", "only_second", "longest_first"):
        target = len(tok(text, pair).input_ids) - 2
        enc = tok(text, pair, truncation=strategy, max_length=target, return_offsets_mapping=True)
        ids = enc["input_ids"]
        assert len(enc["offset_mapping"]) == len(ids) == target
        n_pair = len(tok(pair, add_special_tokens=False).input_ids)
        first = ids[2 : len(ids) - 1 - n_pair] if strategy == "only_first" else None
        for k, (token_id, (start, end)) in enumerate(zip(ids, offsets(enc))):
            if 2 <= k < len(ids) - 1:
                piece = tok.decode([token_id])
                assert piece in (text[start:end], pair[start:end])
        if first is not None:
            assert (
                offsets(enc)[2 : 2 + len(first)] == offsets(tok(text, return_offsets_mapping=True))[2 : 2 + len(first)]
            )
    enc = tok(
        text, truncation=True, max_length=5, stride=1, return_overflowing_tokens=True, return_offsets_mapping=True
    )
    assert offsets(enc) == offsets(tok(text, return_offsets_mapping=True))[:5]


def test_bad_inputs_are_errors(tok):
    with pytest.raises(ValueError, match="is_split_into_words"):
        tok([["a", "b"]], is_split_into_words=True, return_offsets_mapping=True)
    with pytest.raises(ValueError, match="str"):
        tok.glm4_fast_path = False
        try:
            tok([[1, 2, 3]], return_offsets_mapping=True)
        finally:
            tok.glm4_fast_path = True


@pytest.mark.parametrize("revision", ["current", "mid2024"])
def test_patched_upstream_gives_the_same_offsets(standin, tiny_tok, revision):
    import copy

    upstream = glm4_tokfix.patch(copy.deepcopy(standin(revision)))
    batch = ["[gMASK]<sop><|user|>\n你好😀", "plain text", ""]
    for side in ("left", "right"):
        ours = tiny_tok(batch, padding=True, padding_side=side, return_offsets_mapping=True)
        theirs = upstream(batch, padding=True, padding_side=side, return_offsets_mapping=True)
        assert as_lists(theirs["offset_mapping"]) == as_lists(ours["offset_mapping"])
        assert as_lists(theirs["input_ids"]) == as_lists(ours["input_ids"])


# ------------------------------------------------------------- issue 19 item 3: stripping added tokens
@pytest.mark.parametrize("strip", [dict(lstrip=True), dict(rstrip=True), dict(lstrip=True, rstrip=True)])
def test_added_tokens_that_strip_whitespace_keep_offsets_aligned(tiny_tok, fast_folder, strip):
    """An lstrip/rstrip added token covers the whitespace it took (as HF fast tokenizers say); the
    tokens after it map to their own characters. Before: ``<x>`` mapped to '   ' and ' b' to '<x'."""
    import copy

    from transformers import AddedToken, AutoTokenizer

    slow = copy.deepcopy(tiny_tok)
    slow.add_tokens([AddedToken("<x>", **strip)])
    fast = glm4_tokfix.patch(AutoTokenizer.from_pretrained(str(fast_folder("tiny", "chat-hf"))))
    fast.add_tokens([AddedToken("<x>", **strip)])
    for text in ("a   <x>   b", "a   <x> b", "<x>  x", "你好 <x>\n\n", " <x><x> 1", "a<x>b"):
        for tok in (slow, fast):
            out = tok(text, return_offsets_mapping=True, add_special_tokens=False)
            spans = [text[a:b] for a, b in out["offset_mapping"]]
            x = tok.convert_tokens_to_ids("<x>")
            for index, span in zip(out["input_ids"], spans):
                if index == x:
                    assert span.strip() == "<x>", (type(tok).__name__, text, spans)
                elif "\ufffd" not in tok.decode([index]):  # (a token inside a character covers that character)
                    assert span == tok.decode([index]), (type(tok).__name__, text, spans)
        expected = fast(text, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"]
        assert slow(text, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"] == expected
        batch = slow([text, "zz"], return_offsets_mapping=True, padding=True)  # a batch, with the prefix
        assert batch["offset_mapping"][0][-len(expected) :] == expected


def test_assistant_masks_after_a_stripping_added_token(tiny_tok):
    import copy

    from transformers import AddedToken

    tok = copy.deepcopy(tiny_tok)
    tok.add_tokens([AddedToken("<x>", lstrip=True)])
    chat = [{"role": "user", "content": "a   <x> b"}, {"role": "assistant", "content": "the answer"}]
    out = tok.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(masked).strip() == "the answer"


def _offsets_of_rows(tok, rows):
    """The fast path's offsets of whole rows as lists: one numpy pass (``_offset_arrays``, shared tuples from
    ``_offset_lists``), or each row's own walk without numpy or tables, as ``_glm4_fast_encode`` picks."""
    from glm4_tokfix.remote_code.glm4_offsets import _offset_arrays, _offset_lists

    arrays = _offset_arrays(tok._glm4_offset_tables(), rows) if rows else None
    return _offset_lists(arrays) if arrays is not None else [tok._glm4_offsets(ids) for ids in rows]


@given(batch=batches(), numpy=st.booleans())
def test_offsets_of_many_rows_equal_each_rows_own(tok, batch, numpy):
    """The batch route (tokens that begin inside a character found for all rows at once, with numpy, or
    row by row without it) gives each row's offsets exactly as the one-row walk does."""
    import sys
    from unittest import mock

    rows = [tok.encode(text, add_special_tokens=False) for text in batch]
    rows.append([i for i, piece in tok.decoder.items() if piece[:1] and piece[0] & 0xC0 == 0x80][:5])  # inside
    with mock.patch.dict(sys.modules, {} if numpy else {"numpy": None}):
        got = _offsets_of_rows(tok, [list(r) for r in rows])
    assert got == [tok._glm4_offsets(r) for r in rows]


def test_offsets_past_the_shared_pairs_are_fresh_and_right(tok):
    """Offsets come from a table of shared ``(start, end)`` tuples for starts < 4096 and widths < 16; a start
    or width past it, or a negative start (a row that begins inside a character), gets its own tuple."""
    import numpy as np

    from glm4_tokfix.remote_code.glm4_offsets import _PAIR_STARTS, _PAIR_WIDTHS, _offset_pairs, _pair_table

    starts = np.array([0, 5, _PAIR_STARTS - 1, _PAIR_STARTS, 7, -1, 9000, 3], dtype=np.int64)
    ends = np.array([1, 20, _PAIR_STARTS + 2, _PAIR_STARTS + 1, 7 + _PAIR_WIDTHS, 2, 9004, 3], dtype=np.int64)
    pairs = _offset_pairs(starts, ends).tolist()
    assert pairs == list(zip(starts.tolist(), ends.tolist()))
    assert all(type(p) is tuple and all(type(v) is int for v in p) for p in pairs)
    assert pairs[0] is _pair_table()[1] and pairs[2] is _pair_table()[(_PAIR_STARTS - 1) * _PAIR_WIDTHS + 3]

    long_text = "abc defg, 你好世界 " * 400  # over 7,000 characters
    row = tok.encode(long_text, add_special_tokens=False)
    got = _offsets_of_rows(tok, [list(row), list(row[:3]), [], list(row)])
    want = tok._glm4_offsets(row)
    assert got == [want, want[:3], [], want] and want[-1][1] == len(long_text)


@given(batch=batches(max_size=4), tensors=st.sampled_from([None, "np"]), side=st.sampled_from(["left", "right"]))
def test_fast_path_offsets_without_the_tables_are_the_same(tok, batch, tensors, side):
    """Without per-id tables (a tokenizer whose tiktoken encoding cannot be cached) each row's offsets are its
    own walk, padded as lists and converted by transformers: the same output as the numpy route's."""
    from unittest import mock

    kwargs = dict(padding=True, padding_side=side, return_offsets_mapping=True, return_tensors=tensors)
    want = tok(batch, **kwargs)
    from glm4_tokfix.remote_code import glm4_offsets

    with (
        mock.patch.object(type(tok), "_glm4_offset_tables", lambda self: None),
        mock.patch.object(glm4_offsets, "_offset_pairs", pytest.fail),
    ):  # the numpy route is not taken
        got = tok(batch, **kwargs)
    assert set(got) == set(want)
    for key in want:
        assert as_lists(got[key]) == as_lists(want[key]), key
