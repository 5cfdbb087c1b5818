"""The fast path gives exactly what transformers' generic slow path gives, for every option."""

from __future__ import annotations

import copy
import importlib.util
import os
import threading

import pytest
import transformers
from hypothesis import assume, given
from hypothesis import strategies as st

from helpers import outcome, same
from strategies import batches, encode_options, prompt_texts, texts

HAVE_TORCH = importlib.util.find_spec("torch") is not None
TRANSFORMERS_4 = int(transformers.__version__.split(".")[0]) < 5


@pytest.fixture(scope="module")
def slow(tok):
    """The same tokenizer with the fast path switched off: every call takes transformers' generic path."""
    twin = copy.deepcopy(tok)
    twin.glm4_fast_path = False
    return twin


@st.composite
def full_options(draw):
    options = draw(encode_options())
    if options.get("return_tensors") == "pt" and not HAVE_TORCH:
        options["return_tensors"] = "np"
    for key in ("return_special_tokens_mask", "return_length", "split_special_tokens"):
        if draw(st.booleans()):
            options[key] = draw(st.booleans())
    if draw(st.booleans()):
        options["return_attention_mask"] = draw(st.booleans())
    if draw(st.booleans()):
        options["return_token_type_ids"] = True
    return options


@given(texts=batches(), options=full_options(), side=st.sampled_from(["left", "right"]))
def test_batch_fast_equals_slow(tok, slow, texts, options, side):
    # transformers 4.x's generic batch path never hands split_special_tokens to tokenize() (it is a named
    # parameter of _batch_encode_plus that get_input_ids does not see); we honour it, as 5.x and single
    # calls do. test_split_special_tokens_in_batches covers that case.
    assume(not (TRANSFORMERS_4 and options.get("split_special_tokens")))
    for t in (tok, slow):
        t.truncation_side = side
    try:
        fast_result, slow_result = outcome(lambda: tok(texts, **options)), outcome(lambda: slow(texts, **options))
    finally:
        tok.truncation_side = slow.truncation_side = "right"
    assert fast_result[0] == slow_result[0], (fast_result, slow_result)
    if fast_result[0] == "ok":
        same(fast_result[1], slow_result[1])
    else:
        assert fast_result[1] == slow_result[1]


@given(text=prompt_texts(), options=full_options())
def test_single_fast_equals_slow(tok, slow, text, options):
    fast_result, slow_result = outcome(lambda: tok(text, **options)), outcome(lambda: slow(text, **options))
    assert fast_result[0] == slow_result[0], (fast_result, slow_result)
    if fast_result[0] == "ok":
        same(fast_result[1], slow_result[1])
    assert tok.encode(text) == slow.encode(text)


@given(text=prompt_texts(), add=st.booleans(), split=st.sampled_from([None, False, True]))
def test_encode_fast_equals_slow(tok, slow, text, add, split):
    kwargs = {} if split is None else {"split_special_tokens": split}
    assert tok.encode(text, add_special_tokens=add, **kwargs) == slow.encode(text, add_special_tokens=add, **kwargs)


def test_fast_path_is_taken(tok, monkeypatch):
    """Guard against the fast path silently switching off (the equality tests would still pass)."""
    calls = []
    original = type(tok)._glm4_fast_encode

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("batched", args[1] if len(args) > 1 else None))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(tok), "_glm4_fast_encode", spy)
    tok(["a", "[gMASK]<sop>b"], padding=True, return_tensors="np")
    tok("single")
    tok.encode("x", max_length=4, truncation=True)
    assert calls == [True, False, False]


def test_added_tokens_after_loading_stay_exact(tiny_tok):
    tok = copy.deepcopy(tiny_tok)
    slow = copy.deepcopy(tiny_tok)
    slow.glm4_fast_path = False
    for t in (tok, slow):
        t.add_tokens(["<tool_call>", "<|obs2|>"], special_tokens=True)
    text = "x<tool_call>y<|user|><|obs2|>z"
    same(tok(text), slow(text))
    same(tok([text, "plain"], padding=True), slow([text, "plain"], padding=True))
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_overlapping_added_tokens_fall_back_to_the_generic_path(tiny_tok):
    tok = copy.deepcopy(tiny_tok)
    tok.add_tokens(["<|user|>x"], special_tokens=True)  # overlaps <|user|>
    assert tok._glm4_special_encoding() is None
    slow = copy.deepcopy(tok)
    slow.glm4_fast_path = False
    text = "a<|user|>xb<|user|>c"
    same(tok([text, "b"], padding=True), slow([text, "b"], padding=True))


@given(texts=batches())
def test_split_special_tokens_in_batches(tok, slow, texts):
    batch = tok(texts, split_special_tokens=True, padding=True)
    for i, text in enumerate(texts):
        single = slow(text, split_special_tokens=True)
        assert [t for t, m in zip(batch["input_ids"][i], batch["attention_mask"][i]) if m] == single["input_ids"]
        assert single["input_ids"][2:] == tok.tokenizer.encode_ordinary(text)


# ------------------------------------------------------------- lone surrogates
_surrogate_texts = st.lists(
    st.one_of(
        st.sampled_from(["\ud800", "\udfff", "\ud83d\ude00", "\ud83d", "<|user|>", "[gMASK]<sop>", "a", " 1"]),
        st.text(st.characters(categories=("Cs", "Ll", "Lo", "Zs")), max_size=4),
    ),
    max_size=8,
).map("".join)


@given(text=_surrogate_texts, split=st.sampled_from([None, False, True]))
def test_lone_surrogates_encode_as_on_the_generic_path(tok, slow, text, split):
    """tiktoken's own encode_ordinary (the generic path) turns lone surrogates into U+FFFD; so do we."""
    kwargs = {} if split is None else {"split_special_tokens": split}
    assert tok.encode(text, **kwargs) == slow.encode(text, **kwargs)
    same(tok(text, **kwargs), slow(text, **kwargs))
    if not (TRANSFORMERS_4 and split):  # see test_batch_fast_equals_slow
        same(tok([text, "x"], padding=True, **kwargs), slow([text, "x"], padding=True, **kwargs))


# ------------------------------------------------------------- threads
@pytest.fixture(scope="module")
def threaded(tok):
    """The fast path splitting every batch of 2+ texts across 3 threads."""
    twin = copy.deepcopy(tok)
    twin.glm4_encode_threads = 3
    twin.glm4_parallel_min_chars = 0
    return twin


@given(texts=batches(min_size=2, max_size=9), options=full_options())
def test_threaded_batches_equal_the_generic_path(threaded, slow, texts, options):
    assume(not (TRANSFORMERS_4 and options.get("split_special_tokens")))
    fast_result, slow_result = outcome(lambda: threaded(texts, **options)), outcome(lambda: slow(texts, **options))
    assert fast_result[0] == slow_result[0], (fast_result, slow_result)
    if fast_result[0] == "ok":
        same(fast_result[1], slow_result[1])
    else:
        assert fast_result[1] == slow_result[1]


def _wrap_text_encoder(tokenizer, monkeypatch, around):
    """Send every text the fast path encodes through ``around(encode, text)`` (for the whole class)."""
    original = type(tokenizer)._glm4_text_encoder

    def wrapped(self, split_special_tokens):
        encode = original(self, split_special_tokens)
        return None if encode is None else (lambda text: around(encode, text))

    monkeypatch.setattr(type(tokenizer), "_glm4_text_encoder", wrapped)


def _record_threads(tokenizer, monkeypatch):
    """Wrap the text encoder so each call notes the thread it ran in."""
    names = []

    def noted(encode, text):
        names.append(threading.current_thread().name)
        return encode(text)

    _wrap_text_encoder(tokenizer, monkeypatch, noted)
    return names


def test_a_large_batch_is_encoded_in_worker_threads(tok, monkeypatch):
    texts = [f"row {i}: " + "hello world 你好 " * 50 + "<|user|>" * (i % 3) for i in range(40)]
    serial = copy.deepcopy(tok)
    serial.glm4_encode_threads = 1
    expected = serial(texts, padding=True, return_special_tokens_mask=True)
    parallel = copy.deepcopy(tok)
    parallel.glm4_encode_threads = 2
    parallel.glm4_parallel_min_chars = 2000
    names = _record_threads(parallel, monkeypatch)
    same(parallel(texts, padding=True, return_special_tokens_mask=True), expected)
    assert parallel._glm4_thread_count(texts) == 2
    assert len(names) == len(texts)
    # the calling thread encodes the first text before any worker starts (tiktoken's regex favours the
    # first thread that uses it); the workers do the rest (one of them may take both shares)
    assert names[0] == threading.current_thread().name
    assert {name.startswith("glm4-tokfix") for name in names[1:]} == {True}
    names.clear()
    same(parallel(texts[:1] * 2, padding=True), serial(texts[:1] * 2, padding=True))  # 2 x 757 chars < 2000
    assert set(names) == {threading.current_thread().name}


def test_thread_count(tok, monkeypatch):
    twin = copy.deepcopy(tok)
    big = ["x" * 40_000, "y" * 40_000, "z"]
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert twin._glm4_thread_count(big) == 3  # auto: at most 8, at most one per text
    assert twin._glm4_thread_count(big * 4) == 8
    assert twin._glm4_thread_count(["x" * 100, "y" * 100]) == 1  # below glm4_parallel_min_chars
    assert twin._glm4_thread_count(["x" * 100_000]) == 1  # one text
    for off in ("false", "0", "OFF", "no"):
        monkeypatch.setenv("TOKENIZERS_PARALLELISM", off)
        assert twin._glm4_thread_count(big) == 1
    twin.glm4_encode_threads = 2  # an explicit count wins over the environment
    assert twin._glm4_thread_count(big) == 2
    twin.glm4_encode_threads = 1
    assert twin._glm4_thread_count(big) == 1
    for bad in (0, -1, 2.0, True, "2"):
        twin.glm4_encode_threads = bad
        with pytest.raises(ValueError, match="glm4_encode_threads must be None or an int >= 1"):
            twin(big, padding=True)
    twin.glm4_encode_threads = 2
    for bad in (-1, None, 1.5, "0"):
        twin.glm4_parallel_min_chars = bad
        with pytest.raises(ValueError, match="glm4_parallel_min_chars must be an int >= 0"):
            twin(big, padding=True)


def test_an_error_in_a_worker_thread_reaches_the_caller(tok, monkeypatch):
    twin = copy.deepcopy(tok)
    twin.glm4_encode_threads = 2
    twin.glm4_parallel_min_chars = 0

    def encode_or_fail(encode, text):
        if text == "boom":
            raise ValueError("cannot encode 'boom'")
        return encode(text)

    _wrap_text_encoder(twin, monkeypatch, encode_or_fail)
    with pytest.raises(ValueError, match="cannot encode 'boom'"):
        twin(["fine", "also fine", "boom", "fine again"], padding=True)


# ------------------------------------------------------------- is_split_into_words
_word_lists = st.lists(
    st.one_of(texts(max_fragments=2), st.sampled_from(["[gMASK]", "<sop>", "<|user|>", " ", ""])),
    min_size=1,
    max_size=6,
)


@given(rows=st.lists(_word_lists, min_size=1, max_size=4), options=full_options(), single=st.booleans())
def test_split_into_words_fast_equals_slow(tok, slow, rows, options, single):
    assume(not (TRANSFORMERS_4 and options.get("split_special_tokens")))  # see test_batch_fast_equals_slow
    options.pop("return_offsets_mapping", None)  # refused with words on both paths (test_offsets)
    text = rows[0] if single else rows
    fast_result = outcome(lambda: tok(text, is_split_into_words=True, **options))
    slow_result = outcome(lambda: slow(text, is_split_into_words=True, **options))
    assert fast_result[0] == slow_result[0], (fast_result, slow_result)
    if fast_result[0] == "ok":
        same(fast_result[1], slow_result[1])
    else:
        assert fast_result[1] == slow_result[1]


def test_split_into_words_takes_the_fast_path(tok, monkeypatch):
    calls = []
    original = type(tok)._glm4_fast_encode

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("words"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(tok), "_glm4_fast_encode", spy)
    tok(["a", "b"], is_split_into_words=True)
    tok([["a", "b"], ["c"]], is_split_into_words=True, padding=True)
    assert calls == [True, True]


# ------------------------------------------------------------- pairs
@given(
    firsts=st.lists(prompt_texts(), min_size=1, max_size=4),
    seconds=st.lists(prompt_texts(), min_size=4, max_size=4),
    options=full_options(),
    form=st.sampled_from(["single", "two-lists", "rows"]),
)
def test_pairs_fast_equal_slow(tok, slow, firsts, seconds, options, form):
    assume(not (TRANSFORMERS_4 and options.get("split_special_tokens")))  # see test_batch_fast_equals_slow
    seconds = seconds[: len(firsts)]
    if form == "single":
        args = (firsts[0], seconds[0])
    elif form == "two-lists":
        args = (firsts, seconds)
    else:
        args = (list(zip(firsts, seconds)),)
    fast_result, slow_result = outcome(lambda: tok(*args, **options)), outcome(lambda: slow(*args, **options))
    assert fast_result[0] == slow_result[0], (fast_result, slow_result)
    if fast_result[0] == "ok":
        same(fast_result[1], slow_result[1])
    else:
        assert fast_result[1] == slow_result[1]


def test_pairs_take_the_fast_path(tok, monkeypatch):
    calls = []
    original = type(tok)._glm4_fast_encode

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("pairs"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(tok), "_glm4_fast_encode", spy)
    tok("a", "b")
    tok(["a", "c"], ["b", "d"], padding=True)
    tok([("a", "b")], padding=True, return_tensors="np")
    assert calls == [["b"], ["b", "d"], ["b"]]
