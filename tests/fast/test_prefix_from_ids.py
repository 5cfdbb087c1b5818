"""The patched fast tokenizer decides the prefix from the ids, and a fast-route batch's
Rust encodings are those of the call (not of the tokenizer's sides at first access)."""

from __future__ import annotations

import pickle

import pytest

import glm4_tokfix


@pytest.fixture(scope="module")
def chat_hf(fast_folder):
    """(patched?) -> a fresh chat-hf fast tokenizer on the tiny vocabulary (each test may change it)."""
    from transformers import AutoTokenizer

    folder = fast_folder("tiny", "chat-hf")

    def load(patched: bool = True):
        tok = AutoTokenizer.from_pretrained(str(folder))
        return glm4_tokfix.patch(tok) if patched else tok

    return load


def prefix_ids(tok):
    return tok.convert_tokens_to_ids(["[gMASK]", "<sop>"])


@pytest.mark.parametrize("words", [
    ["[gMASK]", "<sop>", "<|user|>", "\nhi"],
    ["[gMASK]<sop>", "<|user|>", "\nhi"],
    ["[gMASK]<sop><|user|>", "\nhi"],
])  # fmt: skip
def test_pretokenized_prefix_is_not_doubled(chat_hf, tiny_tok, words):
    tok = chat_hf()
    ids = tok(words, is_split_into_words=True).input_ids
    assert ids[:4] != prefix_ids(tok) * 2
    assert ids == tiny_tok(words, is_split_into_words=True).input_ids
    batch = tok([words, ["hi"]], is_split_into_words=True, padding=True, return_special_tokens_mask=True)
    assert batch.input_ids[0][-len(ids) :] == ids
    assert tok(words, is_split_into_words=True, truncation=True, max_length=4).input_ids == ids[:4]


def test_pretokenized_pair_prefix_is_not_doubled(chat_hf, tiny_tok):
    tok = chat_hf()
    first, second = [["[gMASK]", "<sop>", "hi"]], [["there"]]
    got = tok(first, second, is_split_into_words=True).input_ids[0]
    assert got[:4] != prefix_ids(tok) * 2
    assert got == tok([["hi"]], second, is_split_into_words=True).input_ids[0]
    truncated = tok(first, second, is_split_into_words=True, truncation=True, max_length=5).input_ids[0]
    assert truncated[:4] != prefix_ids(tok) * 2 and len(truncated) == 5


@pytest.mark.parametrize("added", ["[gMASK]<sop>", "<sop>x"])
def test_added_token_overlapping_the_literal_keeps_the_prefix(chat_hf, added):
    tok, plain = chat_hf(), chat_hf(patched=False)
    for t in (tok, plain):
        t.add_special_tokens({"additional_special_tokens": [added]})
    for text in ("[gMASK]<sop>x", "[gMASK]<sop>x y"):  # the added token takes the literal's characters
        unpatched = plain(text).input_ids
        assert unpatched[:2] == prefix_ids(plain)
        assert tok(text).input_ids == unpatched
        assert tok([text, "b"], padding=True, truncation=True, max_length=3).input_ids[0] == unpatched[:3]


@pytest.mark.parametrize("later", [("padding_side", "right"), ("truncation_side", "left")])
def test_encodings_are_those_of_the_call(chat_hf, later):
    tok = chat_hf()
    tok.padding_side, tok.truncation_side = "left", "right"
    texts = ["hello there you", "a"]
    batch = tok(texts, padding=True, truncation=True, max_length=4)
    assert getattr(batch, "glm4_route", None) == "fast"  # the route that built encodings lazily
    setattr(tok, *later)
    assert [e.ids for e in batch.encodings] == batch.input_ids
    assert batch.tokens(1) == tok.convert_ids_to_tokens(batch.input_ids[1])
    word_ids = [None if i is None else i for i in batch.word_ids(1)]
    assert word_ids[: batch.input_ids[1].count(tok.pad_token_id)] == [None] * batch.input_ids[1].count(tok.pad_token_id)
    setattr(tok, later[0], "left" if later[0] == "padding_side" else "right")
    assert [e.ids for e in tok(texts, padding=True, truncation=True, max_length=4).encodings] == batch.input_ids


def test_encodings_after_a_vocabulary_change_are_an_error(chat_hf):
    tok = chat_hf()
    batch = tok(["hello there", "a"], padding=True)
    tok.add_tokens(["hello"])
    with pytest.raises(RuntimeError, match="changed after this batch was encoded"):
        _ = batch.encodings
    again = pickle.loads(pickle.dumps(batch))  # the fields, without encodings that can no longer be made
    assert again.input_ids == batch.input_ids and again.encodings is None
