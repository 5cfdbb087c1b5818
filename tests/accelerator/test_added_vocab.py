"""Issue 30 item 4 and issue 31 item 6: large added vocabularies (glm-4-voice-9b's 16,384 ``<|audio_N|>`` tokens, or
thousands a user adds) stay exact on every route, and the added-token literals follow every change of the added
tokens (re-adding a token with new flags too).

Exactness: the slow fixed tokenizer, a patched upstream (tests/standins) and a patched fast tokenizer
(tests/fast_folders.py) give, with the added tokens, batch == single, one prefix and the same ids as transformers'
generic path, on both encoder backends. The linear overlap check is compared with the pairwise definition. Speed is
measured in benchmarks/bench_added_vocab.py (no timing here).
"""

from __future__ import annotations

import random

import pytest
import regex
from hypothesis import given
from hypothesis import strategies as st

import glm4_tokfix
from glm4_tokfix.remote_code import glm4_encoders as tc
from glm4_tokfix.remote_code.glm4_tokens import GLM4_SPECIAL_TOKENS
from helpers import audio_tokens, longest_first_alternation, voice_folder
from locations import REAL_DIR, TINY_DIR

HAVE_FASTOKENS = tc.fastokens_available()
BACKENDS = [
    "tiktoken",
    pytest.param("fastokens", marks=pytest.mark.skipif(not HAVE_FASTOKENS, reason="fastokens is not installed")),
]
PREFIX = "[gMASK]<sop>"


# ------------------------------------------------------------------ issue 31 item 6: stale added-token literals
def _readd_user_with_flags(tok):
    from transformers import AddedToken

    tok.add_tokens(
        [AddedToken("<|user|>", lstrip=True, rstrip=True, special=True, normalized=False)], special_tokens=True
    )


STRIP_TEXTS = ["hi   <|user|>   x", "<|user|>  \n hello", "a\t<|user|>\tb <|assistant|> c"]


def test_readding_a_token_with_new_flags_after_encoding_reaches_the_fast_path():
    tok = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(TINY_DIR)
    before = [tok(t).input_ids for t in STRIP_TEXTS]  # the fast path has cached its literals
    _readd_user_with_flags(tok)
    fresh = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(TINY_DIR)
    _readd_user_with_flags(fresh)
    generic = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(TINY_DIR)
    _readd_user_with_flags(generic)
    generic.glm4_fast_path = False
    for text, old in zip(STRIP_TEXTS, before):
        expected = generic(text).input_ids
        assert expected != old  # the flags change the ids: the test can tell stale literals apart
        assert tok(text).input_ids == expected
        assert fresh(text).input_ids == expected
        assert tok.encode(text) == expected
    assert tok(STRIP_TEXTS).input_ids == [generic(t).input_ids for t in STRIP_TEXTS]


def test_readding_with_new_flags_reaches_the_masks_of_a_patched_upstream(standin):
    import copy

    tok = glm4_tokfix.patch(copy.deepcopy(standin("current")))
    assert tok._glm4_mask_literals() is not None  # cached while every token is plain
    _readd_user_with_flags(tok)
    assert tok._glm4_mask_literals() is None  # <|user|> strips whitespace now: no literal counting


def test_readding_with_new_flags_reaches_a_patched_fast_tokenizer(fast_folder):
    from transformers import AutoTokenizer

    folder = fast_folder("tiny", "chat-hf")
    tok = glm4_tokfix.patch(AutoTokenizer.from_pretrained(str(folder)))
    assert tok(STRIP_TEXTS[0]).glm4_route == "fast"
    _readd_user_with_flags(tok)
    plain = AutoTokenizer.from_pretrained(str(folder))
    _readd_user_with_flags(plain)
    for text in STRIP_TEXTS:
        out = tok(text)
        assert getattr(out, "glm4_route", "rust") == "rust"  # a stripping added token: the Rust tokenizer decides
        assert out.input_ids == plain(text).input_ids  # no text starts with the prefix: the checkpoint's own ids


# ------------------------------------------------------------------ the overlap check: linear, same answer
def _overlapping_pairwise(contents, itself=False):
    """The definition, pair by pair (quadratic): a token inside another, or a suffix of one starting another."""
    return any(
        (a != b or itself) and ((a != b and a in b) or any(a.endswith(b[:k]) for k in range(1, min(len(a), len(b)))))
        for a in contents
        for b in contents
    )


@given(st.lists(st.text(alphabet="ab<|>", min_size=0, max_size=6), max_size=8), st.booleans())
def test_overlap_check_agrees_with_the_pairwise_definition(contents, itself):
    assert tc._overlapping(contents, itself=itself) == _overlapping_pairwise(contents, itself=itself)


def test_overlap_check_on_audio_tokens():
    tokens = list(GLM4_SPECIAL_TOKENS) + audio_tokens(3000)
    assert not tc._overlapping(tokens) and not tc._overlapping(tokens, itself=True)
    assert tc._overlapping(tokens + ["_1|><|a"])  # a suffix of one starts another
    assert tc._overlapping(tokens + ["audio_12"])  # inside one
    assert tc._overlapping(tokens + ["<|audio_7"])  # starts one


@given(st.lists(st.sampled_from(["<|a|>", "<|b|>", "<|ab|>", "[x]", "<", "|>", "a", " "]), max_size=12))
def test_literal_splitter_finds_what_a_longest_first_regex_finds(pieces):
    literals = {"<|a|>": 1, "<|b|>": 2, "<|ab|>": 3, "[x]": 4}
    text = "".join(pieces)
    expected = [
        (m.start(), m.end(), literals[m.group()])
        for m in regex.compile(longest_first_alternation(literals)).finditer(text)
    ]
    found = tc._Literals(literals)
    assert found.pattern is not None and found.find(text) == expected  # a few literals: one alternation regex
    found.pattern = None
    assert found.find(text) == expected  # many: the scan by first character and length


# ------------------------------------------------------------------ exact with thousands of added tokens
N_TINY = 3000


def voice_texts(n, count=24, seed=0):
    rng = random.Random(seed)
    texts = []
    for i in range(count):
        audio = "".join(f"<|audio_{rng.randrange(n)}|>" for _ in range(rng.randint(1, 40)))
        kind = i % 6
        if kind == 0:
            texts.append(PREFIX + "<|user|>\n" + audio + "<|assistant|>\nsure")
        elif kind == 1:
            texts.append("<|user|>\nsay " + audio + " then <|audio_" + str(n + 5) + "|> and <|audio_x|> <|aud")
        elif kind == 2:
            texts.append(f"[gMASK]<sop><|user|>\nhello number {i}, a < b | c > d<|assistant|>\nfine")
        elif kind == 3:
            texts.append("plain text with no added token at all " * (1 + i % 3))
        elif kind == 4:
            texts.append(audio + "<" + audio[1:] + "|>")  # a literal cut short, then whole ones
        else:
            texts.append("中文" + audio + " \n\n " + audio[: len(audio) // 2])
    return texts


def assert_one_prefix(rows, texts, prefix_ids):
    for row, text in zip(rows, texts):
        assert row[:2] == prefix_ids, text[:60]
        assert row[2:4] != prefix_ids, text[:60]


def check_slow(tok, reference, texts, backend):
    """``tok``'s fast path on ``backend`` against ``reference``'s generic path: batch == single, one prefix."""
    tok.glm4_encoder = backend
    assert tok._glm4_text_encoder(False) is not None  # the fast path takes these added tokens
    batch = tok(texts).input_ids
    assert batch == [tok(t).input_ids for t in texts] == [tok.encode(t) for t in texts]
    assert batch == reference(texts).input_ids
    assert_one_prefix(batch, texts, tok.get_prefix_tokens())
    padded = tok(texts, padding=True, return_tensors="np")
    assert [row[mask.astype(bool)].tolist() for row, mask in zip(padded.input_ids, padded.attention_mask)] == batch
    return batch


@pytest.fixture(scope="module")
def tiny_voice(tmp_path_factory):
    """form -> folder: glm-4-voice-style added tokens on the tiny vocabulary, special or not."""
    return {
        special: voice_folder(tmp_path_factory.mktemp(f"voice-{special}"), TINY_DIR, N_TINY, special)
        for special in (True, False)
    }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("special", [True, False])
def test_slow_fix_is_exact_with_thousands_of_added_tokens_from_the_config(tiny_voice, backend, special):
    tok = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(tiny_voice[special])
    assert len(tok) == 550 + 14 + N_TINY
    reference = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(tiny_voice[special])
    reference.glm4_fast_path = False
    texts = voice_texts(N_TINY)
    check_slow(tok, reference, texts, backend)
    if backend == "tiktoken":  # many literals: split out by _Literals, not by tiktoken's own special tokens
        assert "_tiktoken_split_encode" in repr(tok._glm4_text_encoder(False))


@pytest.mark.parametrize("backend", BACKENDS)
def test_slow_fix_is_exact_after_add_tokens(backend):
    tok = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(TINY_DIR)
    tok(voice_texts(N_TINY)[:3])  # used before: the added tokens arrive later
    assert tok.add_tokens(audio_tokens(N_TINY)) == N_TINY
    reference = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(TINY_DIR)
    reference.add_tokens(audio_tokens(N_TINY))
    reference.glm4_fast_path = False
    texts = voice_texts(N_TINY, seed=1)
    check_slow(tok, reference, texts, backend)
    # more added later, and one that overlaps the others: the generic path takes over, same ids
    tok.add_tokens(["<|audio_1"])
    reference.add_tokens(["<|audio_1"])
    assert tok._glm4_text_encoder(False) is None
    assert tok(texts).input_ids == reference(texts).input_ids


def test_patched_upstream_is_exact_with_thousands_of_added_tokens(tiny_voice, tmp_path):
    from transformers import AutoTokenizer

    from standins import make_model_folder

    folder = make_model_folder(tmp_path / "upstream", "current", tiny_voice[True])
    upstream = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True)
    patched = glm4_tokfix.patch(AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True))
    fixed = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(tiny_voice[True])
    texts = voice_texts(N_TINY, seed=2)
    batch = patched(texts).input_ids
    assert batch == [patched(t).input_ids for t in texts] == fixed(texts).input_ids
    assert_one_prefix(batch, texts, fixed.get_prefix_tokens())
    for row, text, theirs in zip(batch, texts, upstream(texts).input_ids):
        assert row == (theirs[2:] if text.startswith(PREFIX) else theirs)  # upstream's only change: one prefix
    assert patched._glm4_mask_literals() is not None  # the literals are counted for masks


@pytest.mark.parametrize("backend", BACKENDS)
def test_patched_fast_tokenizer_is_exact_with_thousands_of_added_tokens(tiny_voice, tmp_path, backend):
    from transformers import AutoTokenizer

    from fast_folders import make_fast_folder

    folder = make_fast_folder(tmp_path / "fast", tiny_voice[True], "chat-hf")
    tok = glm4_tokfix.patch(AutoTokenizer.from_pretrained(str(folder)))
    rust = glm4_tokfix.patch(AutoTokenizer.from_pretrained(str(folder)))
    rust.glm4_fast_path = False
    tok.glm4_encoder = backend
    assert tok.glm4_fast_route_reason() is None
    texts = voice_texts(N_TINY, seed=3)
    out = tok(texts)
    assert out.glm4_route == "fast"
    assert out.input_ids == [tok(t).input_ids for t in texts] == rust(texts).input_ids
    assert out.input_ids == glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(tiny_voice[True])(texts).input_ids
    assert_one_prefix(out.input_ids, texts, tok.convert_tokens_to_ids(["[gMASK]", "<sop>"]))
    # tokens added later (and through transformers) reach the fast route
    tok.add_tokens(["<|extra_0|>", "<|extra_1|>"])
    rust.add_tokens(["<|extra_0|>", "<|extra_1|>"])
    more = [t + "<|extra_1|><|extra_0|>" for t in texts[:4]]
    assert tok(more).glm4_route == "fast"
    assert tok(more).input_ids == rust(more).input_ids


@pytest.mark.real_vocab
def test_real_vocabulary_with_glm4_voice_audio_tokens(tmp_path):
    if not (REAL_DIR / "tokenizer.model").is_file():
        pytest.skip("the real glm-4-9b-chat vocabulary is absent")
    from transformers import AutoTokenizer

    from standins import make_model_folder

    folder = voice_folder(tmp_path / "voice", REAL_DIR, 16384, True)
    tok = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(folder)
    assert len(tok) == 151329 + 14 + 16384
    reference = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(folder)
    reference.glm4_fast_path = False
    texts = voice_texts(16384, seed=4)
    for backend in ("tiktoken", "fastokens") if HAVE_FASTOKENS else ("tiktoken",):
        batch = check_slow(tok, reference, texts, backend)
    upstream_folder = make_model_folder(tmp_path / "upstream", "current", folder)
    patched = glm4_tokfix.patch(AutoTokenizer.from_pretrained(str(upstream_folder), trust_remote_code=True))
    assert patched(texts).input_ids == batch
