"""Plain texts of a patched fast GLM-4 tokenizer take the slow fix's fast path, with every field
(and the lazily built Rust encodings) equal to the Rust route's; a non-standard tokenizer.json keeps the Rust route."""

from __future__ import annotations

import copy
import json
import pickle
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import glm4_tokfix
from glm4_tokfix.testing.strategies import available_tensor_types
from helpers import takes_fast_route
from strategies import PREFIX, batches, encode_options, prompt_texts

VOCABS = ["tiny", pytest.param("real", marks=pytest.mark.real_vocab)]
STYLES = ["chat-hf", "0414"]


def load(folder):
    from transformers import AutoTokenizer

    return glm4_tokfix.patch(AutoTokenizer.from_pretrained(str(folder)))


@pytest.fixture(scope="module")
def pair_cache():
    return {}


def tokenizers_of(fast_folder, pair_cache, vocab, style):
    """(fast-route tokenizer, Rust-route tokenizer) of one folder: two objects, nothing switched per call."""
    key = (vocab, style)
    if key not in pair_cache:
        folder = fast_folder(vocab, style)
        fast, rust = load(folder), load(folder)
        rust.glm4_fast_path = False
        pair_cache[key] = (fast, rust)
    return pair_cache[key]


def plain(value):
    if hasattr(value, "tolist"):
        return (type(value).__name__, str(getattr(value, "dtype", "")), tuple(value.shape), value.tolist())
    return value


def encoding_view(e):
    return (e.ids, e.type_ids, e.tokens, e.offsets, e.attention_mask, e.special_tokens_mask, e.word_ids,
            e.n_sequences, len(e.overflowing))  # fmt: skip


def assert_same(fast_out, rust_out, texts, expect_fast=True):
    assert getattr(fast_out, "glm4_route", "rust") == ("fast" if expect_fast else "rust")
    assert getattr(rust_out, "glm4_route", "rust") == "rust"
    assert type(rust_out).__name__ == "BatchEncoding"
    assert list(fast_out.keys()) == list(rust_out.keys())
    for key in rust_out:
        assert plain(fast_out[key]) == plain(rust_out[key]), key
    assert fast_out.is_fast and rust_out.is_fast
    if expect_fast:
        assert not fast_out.glm4_encodings_built  # is_fast and the fields did not build them
    assert fast_out.n_sequences == rust_out.n_sequences
    assert [encoding_view(e) for e in fast_out.encodings] == [encoding_view(e) for e in rust_out.encodings]
    for i, text in enumerate(texts):
        assert fast_out.tokens(i) == rust_out.tokens(i)
        assert fast_out.word_ids(i) == rust_out.word_ids(i)
        for char in {0, len(text) // 2, max(len(text) - 1, 0)}:
            if text:
                assert fast_out.char_to_token(i, char) == rust_out.char_to_token(i, char)


def outcome(call):
    try:
        return call(), None
    except Exception as exc:
        return None, exc


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("vocab", VOCABS)
@settings(deadline=None)
@given(texts=batches(), options=encode_options(outputs=True, tensor_types=available_tensor_types()),
       split=st.sampled_from([None, None, True]))  # fmt: skip
def test_batches_equal_the_rust_route(fast_folder, pair_cache, vocab, style, texts, options, split):
    fast, rust = tokenizers_of(fast_folder, pair_cache, vocab, style)
    if split is not None:
        options = dict(options, split_special_tokens=split)
    assert fast.glm4_fast_route_reason() is None
    got, got_error = outcome(lambda: fast(texts, **options))
    want, want_error = outcome(lambda: rust(texts, **options))
    assert type(got_error) is type(want_error), (got_error, want_error)
    if want_error is None:
        expect_fast = takes_fast_route(options, texts, style, split)
        assert_same(got, want, texts, expect_fast=expect_fast)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("vocab", VOCABS)
@settings(deadline=None)
@given(text=prompt_texts(), options=encode_options(outputs=True, tensor_types=available_tensor_types()))
def test_single_texts_and_encode_equal_the_rust_route(fast_folder, pair_cache, vocab, style, text, options):
    fast, rust = tokenizers_of(fast_folder, pair_cache, vocab, style)
    got, got_error = outcome(lambda: fast(text, **options))
    want, want_error = outcome(lambda: rust(text, **options))
    assert type(got_error) is type(want_error), (got_error, want_error)
    if want_error is None:
        assert list(got.keys()) == list(want.keys())
        for key in want:
            assert plain(got[key]) == plain(want[key]), key
        assert [encoding_view(e) for e in got.encodings] == [encoding_view(e) for e in want.encodings]
        if text:
            assert got.char_to_token(0) == want.char_to_token(0)
        assert got.tokens() == want.tokens() and got.word_ids() == want.word_ids()
    assert fast.encode(text) == rust.encode(text)
    assert fast.encode(text, add_special_tokens=False) == rust.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("style", STYLES)
def test_the_plain_call_takes_the_fast_route_and_stays_a_fast_batch(fast_folder, pair_cache, style):
    fast, rust = tokenizers_of(fast_folder, pair_cache, "tiny", style)
    texts = [PREFIX + "<|user|>\nhi<|assistant|>", "a longer question, with 123456 digits", ""]
    for kwargs in ({"padding": True}, {"padding": True, "return_tensors": "pt"}, {"truncation": True, "max_length": 5}):
        assert_same(fast(texts, **kwargs), rust(texts, **kwargs), texts)
    single = fast(texts[1])
    assert single.glm4_route == "fast" and not single.glm4_encodings_built
    assert single.tokens() == rust(texts[1]).tokens()
    # the policy of the post-processor: chat-hf adds the prefix once, 0414 adds nothing
    ids = fast("hi")["input_ids"]
    assert (ids[:2] == fast.convert_tokens_to_ids(["[gMASK]", "<sop>"])) == (style == "chat-hf")
    assert fast(PREFIX + "hi")["input_ids"] == fast.convert_tokens_to_ids(["[gMASK]", "<sop>"]) + fast.encode(
        "hi", add_special_tokens=False
    )


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("vocab", VOCABS)
@settings(deadline=None)
@given(texts=batches(), options=encode_options(outputs=True, tensor_types=available_tensor_types()),
       split=st.sampled_from([None, None, True]))  # fmt: skip
def test_offsets_take_the_fast_route_and_equal_the_rust_route(fast_folder, pair_cache, vocab, style, texts, options,
                                                              split):  # fmt: skip
    """return_offsets_mapping=True: the offsets come from the fast route's per-id character tables."""
    fast, rust = tokenizers_of(fast_folder, pair_cache, vocab, style)
    options = dict(options, return_offsets_mapping=True)
    if split is not None:
        options["split_special_tokens"] = split
    got, got_error = outcome(lambda: fast(texts, **options))
    want, want_error = outcome(lambda: rust(texts, **options))
    assert type(got_error) is type(want_error), (got_error, want_error)
    if want_error is None:
        expect_fast = takes_fast_route(options, texts, style, split)
        assert "offset_mapping" in want
        assert_same(got, want, texts, expect_fast=expect_fast)


@pytest.mark.parametrize("style", STYLES)
def test_assistant_masks_come_from_the_ids_and_equal_the_rust_routes(fast_folder, pair_cache, style):
    """apply_chat_template(return_assistant_tokens_mask=True) and tokenize_chats: the masks from the fast route's
    ids and character tables (no Rust encodings built) equal those from the Rust route's offsets."""
    from glm4_tokfix.sft import tokenize_chats

    fast, rust = tokenizers_of(fast_folder, pair_cache, "tiny", style)
    chats = [
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "你好😀 there", "metadata": "m"}],
        [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
         {"role": "user", "content": "é?"}, {"role": "assistant", "content": " two  spaces\n"}],
        [{"role": "user", "content": "x <|assistant|> y"}, {"role": "assistant", "content": "a<|user|>b<|assistant|>"}],
    ]  # fmt: skip
    assert fast._glm4_offset_tables() is not None and rust._glm4_offset_tables() is None
    assert fast._glm4_mask_literals() is not None and rust._glm4_mask_literals() is None  # spans found by literals
    for kwargs in ({}, {"padding": True}, {"padding": True, "truncation": True, "max_length": 12}):
        got = fast.apply_chat_template(chats, return_dict=True, return_assistant_tokens_mask=True, **kwargs)
        want = rust.apply_chat_template(chats, return_dict=True, return_assistant_tokens_mask=True, **kwargs)
        assert dict(got) == dict(want)
        assert any(map(any, got["assistant_masks"]))
        assert got.glm4_route == "fast" and not got.glm4_encodings_built
    assert tokenize_chats(fast, chats) == tokenize_chats(rust, chats)


def test_a_post_processor_that_trims_offsets_keeps_offsets_on_the_rust_route(fast_folder, tmp_path):
    def trim(state):
        state["post_processor"]["processors"][0]["trim_offsets"] = True

    folder = edited_folder(fast_folder("tiny", "chat-hf"), tmp_path / "trimmed", trim)
    fast, rust = load(folder), load(folder)
    rust.glm4_fast_path = False
    assert fast.glm4_fast_route_reason() is None and fast._glm4_offset_tables() is None
    texts = [PREFIX + "<|user|>\n  Hello, World<|assistant|>", " hi\n\nthere é "]
    assert_same(fast(texts, padding=True), rust(texts, padding=True), texts)  # plain calls: the fast route
    kwargs = {"padding": True, "return_offsets_mapping": True}
    assert_same(fast(texts, **kwargs), rust(texts, **kwargs), texts, expect_fast=False)
    untrimmed = load(fast_folder("tiny", "chat-hf"))(texts, **kwargs)["offset_mapping"]
    assert fast(texts, **kwargs)["offset_mapping"] != untrimmed  # trimming moved some: the route matters


def test_lazy_batches_pickle_copy_move_and_convert(fast_folder, pair_cache):
    from transformers import BatchEncoding

    fast, rust = tokenizers_of(fast_folder, pair_cache, "tiny", "chat-hf")
    texts = ["hello world", PREFIX + "<|user|>\nhi"]
    want = rust(texts, padding=True)
    for other in (pickle.loads(pickle.dumps(fast(texts, padding=True))), copy.deepcopy(fast(texts, padding=True))):
        assert type(other) is BatchEncoding and other.is_fast
        assert dict(other) == dict(want)
        assert [e.ids for e in other.encodings] == [e.ids for e in want.encodings]
    shallow = copy.copy(fast(texts, padding=True))
    assert shallow.tokens(1) == want.tokens(1)
    batch = fast(texts, padding=True)
    batch.convert_to_tensors("pt")
    moved = batch.to("cpu")
    assert moved["input_ids"].tolist() == want["input_ids"] and not moved.glm4_encodings_built
    assert moved.word_ids(0) == want.word_ids(0)
    np_batch = fast(texts, padding=True)
    np_batch.convert_to_tensors("np")
    assert np_batch["attention_mask"].tolist() == want["attention_mask"]


def edited_folder(src, dest, edit):
    shutil.copytree(src, dest)
    path = dest / "tokenizer.json"
    state = json.loads(path.read_text(encoding="utf-8"))
    edit(state)
    path.write_text(json.dumps(state), encoding="utf-8")
    return dest


def add_normalizer(state):
    state["normalizer"] = {"type": "NFC"}


def other_split(state):
    state["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {"Regex": r"\s+|\S+"}


def prefix_space(state):
    state["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = True


def no_ignore_merges(state):
    state["model"]["ignore_merges"] = False


def shuffled_merges(state):
    merges = state["model"]["merges"]
    merges[0], merges[-1] = merges[-1], merges[0]


@pytest.mark.parametrize("edit", [add_normalizer, other_split, prefix_space, no_ignore_merges, shuffled_merges])
@pytest.mark.parametrize("style", STYLES)
def test_a_non_standard_tokenizer_json_keeps_the_rust_route(fast_folder, tmp_path, edit, style):
    folder = edited_folder(fast_folder("tiny", style), tmp_path / "edited", edit)
    fast, rust = load(folder), load(folder)
    rust.glm4_fast_path = False
    assert fast.glm4_fast_route_reason() is not None
    texts = [PREFIX + "<|user|>\n  Hello, World 2026<|assistant|>", " hi\n\nthere é"]
    for kwargs in ({"padding": True}, {"padding": True, "return_tensors": "pt"}):
        assert_same(fast(texts, **kwargs), rust(texts, **kwargs), texts, expect_fast=False)


def test_a_changed_tokenizer_rebuilds_the_route(fast_folder, tmp_path):
    from tokenizers import normalizers

    fast = load(fast_folder("tiny", "chat-hf"))
    fast = copy.deepcopy(fast)  # our own object: the change below touches nothing shared
    assert fast.glm4_fast_route_reason() is None
    assert fast(["hi"]).glm4_route == "fast"
    fast._tokenizer.normalizer = normalizers.Lowercase()
    assert fast.glm4_fast_route_reason() == "the tokenizer has a normalizer"
    out = fast(["HI there"])
    assert getattr(out, "glm4_route", "rust") == "rust"
    assert out["input_ids"] == fast(["hi there"])["input_ids"]
    fast.add_tokens(["<|new|>"])
    fast._tokenizer.normalizer = None
    assert fast.glm4_fast_route_reason() is None
    rust = copy.deepcopy(fast)
    rust.glm4_fast_path = False
    texts = ["a<|new|>b", "<|new|>", PREFIX + "<|user|>x<|new|>"]
    assert_same(fast(texts, padding=True), rust(texts, padding=True), texts)
    # split_special_tokens splits the special tokens only: a non-special added token is still its id
    split = {"padding": True, "split_special_tokens": True, "return_special_tokens_mask": True}
    assert_same(fast(texts, **split), rust(texts, **split), texts)
    from tokenizers import AddedToken

    fast.add_tokens([AddedToken("<|strip|>", lstrip=True)])  # transformers' own added-token splitting then
    assert fast.glm4_fast_route_reason() is not None
    rust = copy.deepcopy(fast)
    rust.glm4_fast_path = False
    texts = ["a  <|strip|>b", "<|strip|>"]
    assert_same(fast(texts, padding=True), rust(texts, padding=True), texts, expect_fast=False)


@pytest.mark.parametrize("style", STYLES)
def test_a_lone_surrogate_fails_as_on_the_rust_route(fast_folder, pair_cache, style):
    fast, rust = tokenizers_of(fast_folder, pair_cache, "tiny", style)
    for tok in (fast, rust):
        with pytest.raises(TypeError):
            tok(["fine", "a\ud800b"], padding=True)
        with pytest.raises(TypeError):
            tok("a\udfffb")
