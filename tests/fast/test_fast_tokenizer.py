"""Transformers-native (tokenizer.json) GLM-4 tokenizers, unpatched and patched.

Folders are built at test time (tests/fast_folders.py) from the embedded tiny vocabulary and, when present, the
real glm-4-9b-chat one, in the two post-processor styles found on the hub: ``chat-hf`` (glm-4-9b-chat-hf, adds
``[gMASK]<sop>``) and ``0414`` (GLM-4-0414 / GLM-4.5, adds nothing).
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import glm4_tokfix
from glm4_tokfix.testing.properties import PROPERTIES
from strategies import PREFIX, batches, chats, prompt_texts, texts

VOCABS = ["tiny", pytest.param("real", marks=pytest.mark.real_vocab)]


@pytest.fixture(scope="session")
def fast_tok(fast_folder, request):
    """(vocab, style, patched) -> a fast GLM-4 tokenizer loaded with plain AutoTokenizer (cached per session)."""
    from transformers import AutoTokenizer

    cache = request.config.__dict__.setdefault("_glm4_fast_cache", {})

    def load(vocab: str, style: str, patched: bool = True):
        key = (vocab, style, patched)
        if key not in cache:
            tok = AutoTokenizer.from_pretrained(str(fast_folder(vocab, style)))
            cache[key] = glm4_tokfix.patch(tok) if patched else tok
        return cache[key]

    return load


@pytest.fixture(scope="session")
def slow_for(tiny_tok, request):
    def get(vocab: str):
        if vocab == "tiny":
            return tiny_tok
        return request.getfixturevalue("real_tok")

    return get


@pytest.fixture(scope="session", params=VOCABS)
def vocab(request) -> str:
    return request.param


def strip_prefixes(text: str) -> str:
    while text.startswith(PREFIX):
        text = text[len(PREFIX) :]
    return text


def rendered(tok, conversations):
    return [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]


CHATS = [
    [{"role": "user", "content": "你好"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a story"}],
]


# ----------------------------------------------------------------------------------- the bug, unpatched
def test_unpatched_chat_hf_doubles_the_prefix(fast_tok, vocab):
    tok = fast_tok(vocab, "chat-hf", patched=False)
    prompts = rendered(tok, CHATS)
    assert all(p.startswith(PREFIX) for p in prompts)
    batch = tok(prompts, padding=True)
    prefix = tok.convert_tokens_to_ids(["[gMASK]", "<sop>"])
    for ids, mask in zip(batch["input_ids"], batch["attention_mask"]):
        real = [t for t, m in zip(ids, mask) if m]
        assert real[:4] == prefix * 2  # the bug: two copies, both attended to
        assert len(real) == len([m for m in mask if m])


def test_unpatched_0414_adds_no_prefix(fast_tok, vocab):
    tok = fast_tok(vocab, "0414", patched=False)
    assert tok("")["input_ids"] == []
    prompt = rendered(tok, CHATS[:1])[0]
    prefix = tok.convert_tokens_to_ids(["[gMASK]", "<sop>"])
    assert tok(prompt)["input_ids"][:4] != prefix * 2


# ----------------------------------------------------------------------------------------- the fix
def test_patched_rendered_chats_have_one_prefix(fast_tok, slow_for, vocab):
    for style in ("chat-hf", "0414"):
        tok = fast_tok(vocab, style)
        prompts = rendered(tok, CHATS)
        batch = tok(prompts, padding=True)
        prefix = tok.convert_tokens_to_ids(["[gMASK]", "<sop>"])
        for i, prompt in enumerate(prompts):
            real = [t for t, m in zip(batch["input_ids"][i], batch["attention_mask"][i]) if m]
            assert real[:2] == prefix and real[2:4] != prefix
            assert real == slow_for(vocab)(prompt)["input_ids"]


def test_prefix_policy(fast_tok):
    assert fast_tok("tiny", "chat-hf").glm4_prefix_policy() == "adds"
    assert fast_tok("tiny", "0414").glm4_prefix_policy() == "none"
    assert glm4_tokfix.is_patched(fast_tok("tiny", "0414"))
    assert not glm4_tokfix.is_patched(fast_tok("tiny", "0414", patched=False))


@given(text=prompt_texts())
def test_chat_hf_ids_equal_the_slow_tokenizer(fast_tok, slow_for, vocab, text):
    tok, slow = fast_tok(vocab, "chat-hf"), slow_for(vocab)
    assert tok(text)["input_ids"] == slow(text)["input_ids"]
    assert tok(text, add_special_tokens=False)["input_ids"] == slow(text, add_special_tokens=False)["input_ids"]
    assert tok.encode(text) == slow.encode(text)


@given(text=prompt_texts(), add=st.booleans())
def test_0414_patched_ids_equal_unpatched(fast_tok, vocab, text, add):
    patched, plain = fast_tok(vocab, "0414"), fast_tok(vocab, "0414", patched=False)
    assert patched(text, add_special_tokens=add)["input_ids"] == plain(text, add_special_tokens=add)["input_ids"]


ALL_FIELDS = dict(
    return_token_type_ids=True,
    return_attention_mask=True,
    return_special_tokens_mask=True,
    return_offsets_mapping=True,
    return_length=True,
)


@given(text=prompt_texts())
def test_every_field_follows_the_fixed_ids(fast_tok, vocab, text):
    """A literal prefix is text (the Rust tokenizer's own fields without special tokens); otherwise the template's."""
    tok, plain = fast_tok(vocab, "chat-hf"), fast_tok(vocab, "chat-hf", patched=False)
    got = tok(text, **ALL_FIELDS)
    expected = plain(text, add_special_tokens=not text.startswith(PREFIX), **ALL_FIELDS)
    assert dict(got) == dict(expected)
    a, b = got.encodings[0], expected.encodings[0]
    assert (a.ids, a.tokens, a.word_ids, a.sequence_ids, a.offsets) == (b.ids, b.tokens, b.word_ids, b.sequence_ids,
                                                                       b.offsets)  # fmt: skip
    assert got.tokens() == expected.tokens() and got.word_ids() == expected.word_ids()
    for char in range(0, len(text), max(1, len(text) // 5)):
        assert got.char_to_token(char) == expected.char_to_token(char)
    for index in range(len(a.ids)):
        assert got.token_to_chars(index) == expected.token_to_chars(index)


def test_literal_prefix_maps_to_its_characters(fast_tok):
    tok = fast_tok("tiny", "chat-hf")
    batch = tok([PREFIX + "<|user|>\nhi", "hi"], padding=True, return_offsets_mapping=True)
    assert batch["offset_mapping"][0][:2] == [(0, 7), (7, 12)]
    width = len(batch["input_ids"][0])
    pads = width - sum(batch["attention_mask"][1])
    assert batch["offset_mapping"][1][: pads + 2] == [(0, 0)] * (pads + 2)  # pads, then the added prefix


@pytest.mark.parametrize("style", ["chat-hf", "0414"])
@pytest.mark.parametrize("prop", PROPERTIES, ids=lambda p: p.name)
def test_property_battery_holds(fast_tok, style, prop):
    """Every property of glm4_tokfix.testing (batch == single on both sides and every option, idempotent padding,
    chat template, decode, exact truncation, pairs, masks, unknown ids), on the patched fast tokenizer."""
    tok = fast_tok("tiny", style)

    @given(example=prop.strategy())
    def check(example):
        prop.check(tok, example)

    check()


@pytest.mark.real_vocab
@pytest.mark.parametrize("prop", [p for p in PROPERTIES if p.name.startswith("batch_matches")], ids=lambda p: p.name)
def test_batches_on_the_real_vocabulary(fast_tok, prop):
    tok = fast_tok("real", "chat-hf")

    @given(example=prop.strategy())
    def check(example):
        prop.check(tok, example)

    check()


# -------------------------------------------------------------------------------------- truncation
@given(text=prompt_texts(), max_length=st.integers(2, 40), side=st.sampled_from(["left", "right"]))
def test_truncation_equals_the_slow_tokenizer(fast_tok, slow_for, vocab, text, max_length, side):
    tok, slow = fast_tok(vocab, "chat-hf"), slow_for(vocab)
    old = tok.truncation_side, slow.truncation_side
    tok.truncation_side = slow.truncation_side = side
    try:
        got = tok(text, truncation=True, max_length=max_length, return_offsets_mapping=True)
        assert got["input_ids"] == slow(text, truncation=True, max_length=max_length)["input_ids"]
        assert len(got["offset_mapping"]) == len(got["input_ids"])
    finally:
        tok.truncation_side, slow.truncation_side = old


@given(
    items=batches(),
    max_length=st.integers(2, 12),
    stride=st.integers(0, 2),
    side=st.sampled_from(["left", "right"]),
)
def test_overflow_rows_do_not_depend_on_a_literal_prefix(fast_tok, items, max_length, stride, side):
    """A text with the prefix and the same text without it give the same rows (ids), overflow rows included."""
    assume(stride == 0 or stride < max_length - 2)  # else a ValueError (test_stride_that_does_not_fit...)
    tok = fast_tok("tiny", "chat-hf")
    bare = [strip_prefixes(t) for t in items]
    options = dict(truncation=True, max_length=max_length, stride=stride, return_overflowing_tokens=True)
    old = tok.truncation_side
    tok.truncation_side = side
    try:
        with_prefix = tok([PREFIX + t for t in bare], padding=True, **options)
        without = tok(bare, padding=True, **options)
        single_rows = [row for t in bare for row in tok(PREFIX + t, **options)["input_ids"]]
    finally:
        tok.truncation_side = old
    assert with_prefix["input_ids"] == without["input_ids"]
    assert with_prefix["overflow_to_sample_mapping"] == without["overflow_to_sample_mapping"]
    unpadded = [[t for t, m in zip(ids, mask) if m] for ids, mask in zip(with_prefix["input_ids"],
                                                                         with_prefix["attention_mask"])]  # fmt: skip
    assert unpadded == single_rows


@pytest.mark.parametrize("max_length", [0, 1])
def test_max_length_below_the_prefix_is_a_value_error(fast_tok, max_length):
    tok = fast_tok("tiny", "chat-hf")
    for text in ("hello", PREFIX + "hello"):
        with pytest.raises(ValueError, match="max_length"):
            tok(text, truncation=True, max_length=max_length)
        with pytest.raises(ValueError, match="max_length"):
            tok(text, "second", truncation="only_second", max_length=max_length)


def test_stride_that_does_not_fit_is_a_value_error(fast_tok):
    """The Rust tokenizer panics (PanicException) on these; the fix says what is wrong."""
    for style in ("chat-hf", "0414"):
        tok = fast_tok("tiny", style)
        for text in ("hello world foo bar", PREFIX + "hello world foo bar"):
            with pytest.raises(ValueError, match="stride"):
                tok(text, truncation=True, max_length=3, stride=3 if style == "0414" else 1,
                    return_overflowing_tokens=True)  # fmt: skip


# ------------------------------------------------------------------------------------------ pairs
@given(first=texts(), second=texts())
def test_pairs_keep_the_checkpoint_format(fast_tok, first, second):
    tok, plain = fast_tok("tiny", "chat-hf"), fast_tok("tiny", "chat-hf", patched=False)
    bare = strip_prefixes(first)
    expected = plain(bare, second, return_token_type_ids=True)
    assert tok(bare, second, return_token_type_ids=True) == expected
    assert tok(PREFIX + bare, second)["input_ids"] == expected["input_ids"]
    assert tok(PREFIX + bare, second, return_token_type_ids=True)["token_type_ids"] == expected["token_type_ids"]
    batch = tok([PREFIX + bare, bare], [second, second], padding=True)
    assert batch["input_ids"][0] == batch["input_ids"][1]
    a = tok(bare, add_special_tokens=False)["input_ids"]
    b = tok(second, add_special_tokens=False)["input_ids"]
    full = plain(bare, second, return_token_type_ids=True, return_special_tokens_mask=True)
    assert tok.build_inputs_with_special_tokens(a, b) == full["input_ids"]
    assert tok.get_special_tokens_mask(a, b) == full["special_tokens_mask"]
    assert tok.create_token_type_ids_from_sequences(a, b) == full["token_type_ids"]


# ----------------------------------------------------------------------------- other entry points
@given(conversation=chats())
def test_tokenize_and_encode_add_no_second_prefix(fast_tok, conversation):
    tok = fast_tok("tiny", "chat-hf")
    prompt = tok.apply_chat_template(conversation, tokenize=False)
    ids = tok.encode(prompt)
    assert ids == tok(prompt, add_special_tokens=False)["input_ids"]
    assert tok.tokenize(prompt, add_special_tokens=True) == tok.convert_ids_to_tokens(ids)
    # the Rust tokenizer is the checkpoint's own: the fix is in the Python encode paths, not in it
    assert tok.backend_tokenizer.encode(prompt).ids == tok.convert_tokens_to_ids(["[gMASK]", "<sop>"]) + ids
    assert tok.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"] == ids
    assert tok.build_inputs_with_special_tokens(ids) == ids
    assert tok.build_inputs_with_special_tokens(ids[2:]) == ids


def test_not_a_glm4_fast_tokenizer_is_a_type_error():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    other = PreTrainedTokenizerFast(tokenizer_object=backend)
    with pytest.raises(TypeError, match=r"needs a GLM-4 tokenizer, got .*PreTrainedTokenizerFast|TokenizersBackend"):
        glm4_tokfix.patch(other)
    assert not glm4_tokfix.is_patched(other)


def test_unknown_ids_are_value_errors(fast_tok):
    tok = fast_tok("tiny", "chat-hf")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([len(tok)])
    assert tok.decode(tok.encode("hi <|user|>", add_special_tokens=False)) == "hi <|user|>"


@given(text=texts(), max_length=st.integers(3, 12))
def test_a_template_with_more_than_the_prefix(fast_folder, text, max_length):
    """A post-processor adding [gMASK]<sop> and a closing token: only the prefix becomes conditional."""
    from tokenizers import processors
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(fast_folder("tiny", "0414")))
    ids = dict(zip(["[gMASK]", "<sop>", "<eop>"], tok.convert_tokens_to_ids(["[gMASK]", "<sop>", "<eop>"])))
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="[gMASK]:0 <sop>:0 $A:0 <eop>:0",
        pair="[gMASK]:0 <sop>:0 $A:0 <eop>:0 $B:1",
        special_tokens=list(ids.items()),
    )
    plain = tok(text)["input_ids"]
    glm4_tokfix.patch(tok)
    bare = strip_prefixes(text)
    assert tok(PREFIX + bare)["input_ids"] == tok(bare)["input_ids"]
    if bare == text:  # no literal prefix: exactly what the template gives unpatched
        assert tok(text)["input_ids"] == plain
    assert tok(PREFIX + bare)["input_ids"][-1] == ids["<eop>"]
    cut = tok(PREFIX + bare, truncation=True, max_length=max_length, return_offsets_mapping=True)
    assert cut["input_ids"] == tok(bare, truncation=True, max_length=max_length)["input_ids"]
    assert len(cut["input_ids"]) == min(max_length, len(tok(bare)["input_ids"]))


# ------------------------------------------------------------------------------- chat for training
@given(conversations=st.lists(chats(), min_size=1, max_size=3), side=st.sampled_from(["left", "right"]))
def test_assistant_masks_equal_the_slow_tokenizer(fast_tok, slow_for, vocab, conversations, side):
    tok, slow = fast_tok(vocab, "chat-hf"), slow_for(vocab)
    options = dict(tokenize=True, return_dict=True, return_assistant_tokens_mask=True, padding=True)
    old = tok.padding_side, slow.padding_side
    tok.padding_side = slow.padding_side = side
    try:
        got, expected = (
            tok.apply_chat_template(conversations, **options),
            slow.apply_chat_template(conversations, **options),
        )
    finally:
        tok.padding_side, slow.padding_side = old
    assert got["input_ids"] == expected["input_ids"]
    assert got["assistant_masks"] == expected["assistant_masks"]


def test_assistant_masks_need_a_known_or_marked_template(fast_tok):
    tok = fast_tok("tiny", "chat-hf")
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    with pytest.raises(ValueError, match="generation"):
        tok.apply_chat_template(chat, chat_template="{% for m in messages %}{{ m.content }}{% endfor %}",
                                tokenize=True, return_dict=True, return_assistant_tokens_mask=True)  # fmt: skip


@given(conversation=chats())
def test_sanitize_control_tokens_equals_the_slow_tokenizer(fast_tok, slow_for, vocab, conversation):
    tok, slow = fast_tok(vocab, "chat-hf"), slow_for(vocab)
    options = dict(tokenize=True, return_dict=True, sanitize_control_tokens=True)
    assert (
        tok.apply_chat_template(conversation, **options)["input_ids"]
        == slow.apply_chat_template(conversation, **options)["input_ids"]
    )
