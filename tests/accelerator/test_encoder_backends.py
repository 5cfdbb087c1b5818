"""The encoder backends (tiktoken, fastokens) give the same ids for every text.

tiktoken is the reference. The fastokens backend is compared with it on hypothesis texts and on a hard
corpus (the vocabulary tokens no chain of BPE merges reaches, in contexts; whitespace runs; a sweep over
every code point; added-token literals; split_special_tokens on and off), on the tiny and the real
vocabulary. Also: the switch (attribute, environment, errors), the tokenizer.json cache, thread rules,
fork safety, pathological input, and a model folder's copy of the module with and without fastokens.
"""

from __future__ import annotations

import copy
import functools
import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import glm4_tokfix
from glm4_tokfix.remote_code import glm4_encoders as tc
from glm4_tokfix.remote_code import glm4_rows
from glm4_tokfix.remote_code.glm4_tokens import GLM4_PAT_STR
from strategies import SPECIAL_LITERALS, batches, prompt_texts, texts

HAVE_FASTOKENS = tc.fastokens_available()
needs_fastokens = pytest.mark.skipif(
    not HAVE_FASTOKENS, reason="fastokens is not installed (pip install glm4-tokfix[fast])"
)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def backends(tok):
    """(tiktoken backend, fastokens backend) over ``tok``'s vocabulary and added tokens."""
    if not HAVE_FASTOKENS:
        pytest.skip("fastokens is not installed")
    added = {t.content: i for i, t in tok.added_tokens_decoder.items()}
    reference = tc.TiktokenBackend(tok.mergeable_ranks, GLM4_PAT_STR, added)
    return reference, tc.FastokensBackend(tok.mergeable_ranks, GLM4_PAT_STR, added)


def assert_same(backends, text_list, split=(False, True)):
    reference, fast = backends
    for mode in split:
        expected = [reference.encode(t, split_special=mode) for t in text_list]
        got = fast.encode_batch(text_list, split_special=mode)
        for text, e, g in zip(text_list, expected, got):
            assert g == e, (mode, text[:200])


def _merged(token, ranks):
    """``token``'s bytes after byte-pair merging alone (lowest-ranked adjacent pair first, as tiktoken merges)."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 1:
        best = None
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and (best is None or rank < best[0]):
                best = (rank, i)
        if best is None:
            break
        i = best[1]
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts


def unreachable_tokens(ranks):
    """Vocabulary tokens that merging their own bytes does not reach (tiktoken takes a whole pre-token that is
    a token as that token; a BPE model needs ``ignore_merges`` for it)."""
    return [t for t in ranks if len(t) > 1 and len(_merged(t, ranks)) > 1]


# ------------------------------------------------------------- same ids
@needs_fastokens
@given(text=st.one_of(texts(), prompt_texts(), st.text(max_size=40)))
def test_backends_agree_on_hypothesis_texts(backends, text):
    assert_same(backends, [text])


@needs_fastokens
def test_backends_agree_on_merge_unreachable_tokens(backends, tok):
    tokens = unreachable_tokens(tok.mergeable_ranks)
    if len(tok.mergeable_ranks) > 100_000:
        assert len(tokens) == 893  # glm-4-9b-chat: the reason the converter's ignore_merges is needed
    corpus = []
    for token in tokens:
        word = token.decode("utf-8", errors="replace")
        corpus += [
            word,
            " " + word,
            word + " ",
            "a" + word + "b",
            "\n" + word,
            word * 2,
            "你" + word + "。",
            word + "<|user|>",
        ]
    assert_same(backends, corpus)


@needs_fastokens
def test_backends_agree_on_whitespace_runs(backends):
    kinds = [" ", "\n", "\t", "\r\n", "\u3000", "\xa0", " \n", "\n ", "\t \n"]
    corpus = []
    for kind in kinds:
        for n in (1, 2, 3, 7, 16, 100, 1000, 20_000):
            run = kind * n
            corpus += [run, "x" + run, run + "x", "x" + run + "y", "x" + run + "\ny", "1" + run + "2", "<|user|>" + run]
    assert_same(backends, corpus)


@needs_fastokens
def test_backends_agree_on_every_code_point(backends):
    """Every non-surrogate code point, 48 consecutive ones per text, in plain and in mixed contexts."""
    points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    chunks = ["".join(map(chr, points[i : i + 48])) for i in range(0, len(points), 48)]
    corpus = chunks + [f"a {chunk} 1\n" for chunk in chunks[::7]]
    assert_same(backends, corpus, split=(False,))


@needs_fastokens
def test_backends_agree_on_added_token_literals(backends):
    literals = list(SPECIAL_LITERALS) + ["[gMASK]<sop>", "<|user", "|>", "<<|user|>>", "[gMASK][gMASK]", "<sop"]
    corpus = []
    for a in literals:
        for b in literals[:6]:
            corpus += [a + b, f"x{a} y{b}z", f" {a}\n{b} ", a * 3]
    corpus += ["\ud800<|user|>\udfff", "a\ud83d\ude00b<sop>"]  # lone surrogates and a valid pair
    assert_same(backends, corpus)


@needs_fastokens
@given(text_list=batches(min_size=1, max_size=6), split=st.booleans(), side=st.sampled_from(["left", "right"]))
def test_tokenizer_outputs_equal_on_both_backends(tok, text_list, split, side):
    a, b = copy.copy(tok), copy.copy(tok)  # shallow: same vocabulary, own attributes
    a.glm4_encoder, b.glm4_encoder = "tiktoken", "fastokens"
    options = dict(padding=True, split_special_tokens=split, padding_side=side, return_offsets_mapping=True)
    assert dict(a(text_list, **options)) == dict(b(text_list, **options))
    assert [a.encode(t) for t in text_list] == [b.encode(t) for t in text_list]


# ------------------------------------------------------------- pathological input
def test_a_whitespace_run_tiktoken_cannot_encode_is_a_value_error(tiny_tok):
    tok = copy.copy(tiny_tok)
    tok.glm4_encoder = "tiktoken"
    text = " " * 1_200_000
    with pytest.raises(ValueError, match="tiktoken cannot encode this text"):
        tok([text, "x"], padding=True)
    with pytest.raises(ValueError, match="tiktoken cannot encode this text"):
        tok.encode(text)
    slow = copy.copy(tok)
    slow.glm4_fast_path = False  # transformers' generic path: _tokenize
    with pytest.raises(ValueError, match="tiktoken cannot encode this text"):
        slow(text)


@needs_fastokens
def test_fastokens_encodes_what_tiktoken_cannot(tiny_tok):
    tok = copy.copy(tiny_tok)
    tok.glm4_encoder = "fastokens"
    ids = tok.encode(" " * 1_200_000 + "x", add_special_tokens=False)
    assert tok.decode(ids) == " " * 1_200_000 + "x"
    # on runs tiktoken does encode, the two agree
    ref = copy.copy(tiny_tok)
    ref.glm4_encoder = "tiktoken"
    for text in (" " * 200_000 + "x", "a" * 300_000, "\n" * 100_000 + "b"):
        assert tok.encode(text) == ref.encode(text)


# ------------------------------------------------------------- the switch
def test_encoder_choice(tiny_tok, monkeypatch):
    tok = copy.copy(tiny_tok)
    monkeypatch.delenv(tc.GLM4_ENCODER_ENV, raising=False)
    assert tok.glm4_encoder_name() == ("fastokens" if HAVE_FASTOKENS else "tiktoken")
    monkeypatch.setenv(tc.GLM4_ENCODER_ENV, "tiktoken")
    assert tok.glm4_encoder_name() == "tiktoken"
    tok.glm4_encoder = "fastokens" if HAVE_FASTOKENS else "tiktoken"  # the attribute wins
    assert tok.glm4_encoder_name() == tok.glm4_encoder
    tok.glm4_encoder = "tiktokn"
    with pytest.raises(ValueError, match="glm4_encoder must be one of tiktoken, fastokens"):
        tok("hello")
    tok.glm4_encoder = None
    monkeypatch.setenv(tc.GLM4_ENCODER_ENV, "rust")
    with pytest.raises(ValueError, match=r"GLM4_TOKFIX_ENCODER must be one of tiktoken, fastokens .*'rust'"):
        tok(["a", "b"], padding=True)


def test_fastokens_asked_for_but_missing_is_a_clear_error(tiny_tok, monkeypatch):
    tok = copy.copy(tiny_tok)
    monkeypatch.setattr(tc, "fastokens_available", lambda: False)
    monkeypatch.delenv(tc.GLM4_ENCODER_ENV, raising=False)
    assert tok.glm4_encoder_name() == "tiktoken"  # the default without it
    tok.glm4_encoder = "fastokens"
    with pytest.raises(ImportError, match=r"pip install \"glm4-tokfix\[fast\]\""):
        tok("hello")


@needs_fastokens
def test_the_fast_path_really_runs_on_fastokens(tiny_tok):
    tok = copy.copy(tiny_tok)
    tok.glm4_encoder = "fastokens"
    for split in (False, True):
        assert isinstance(tok._glm4_backend(split), tc.FastokensBackend)
        encoder = tok._glm4_text_encoder(split)
        assert isinstance(encoder, functools.partial) and encoder.func is tc._fastokens_encode
    tok.glm4_encoder = "tiktoken"
    assert tok._glm4_text_encoder(False).func is tc._encode_text


# ------------------------------------------------------------- the tokenizer.json cache
def _run(code: str, env: dict) -> subprocess.CompletedProcess:
    full = {**os.environ, **env}
    full.pop("FASTOKENS_BPE_THREADS", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=full, capture_output=True, text=True, timeout=600
    )


@needs_fastokens
def test_tokenizer_json_is_built_once_into_the_cache_folder(tmp_path):
    cache = tmp_path / "cache"
    code = """
        import os, glm4_tokfix
        from glm4_tokfix.remote_code import glm4_encoders as tc
        built = []
        original = tc.fastokens_tokenizer_json
        tc.fastokens_tokenizer_json = lambda *a: built.append(1) or original(*a)
        tok = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(glm4_tokfix.TINY_GLM4_DIR)
        tok.glm4_encoder = "fastokens"
        print(tok.encode("hello world <|user|>"), len(built), os.environ.get("FASTOKENS_BPE_THREADS"))
    """
    env = {"GLM4_TOKFIX_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT / "src")}
    first, second = _run(code, env), _run(code, env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    _ids, n_built, threads = first.stdout.rsplit(" ", 2)
    assert n_built == "1" and threads.strip() == "1"
    assert second.stdout.rsplit(" ", 2)[1] == "0"  # read from the cache
    assert second.stdout.split("]")[0] == first.stdout.split("]")[0]
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 1 and files[0].startswith("fastokens-") and files[0].endswith(".json")  # no temporaries
    # a damaged file is rebuilt
    (cache / files[0]).write_text("{not json")
    third = _run(code, env)
    assert third.returncode == 0 and third.stdout.rsplit(" ", 2)[1] == "1", third.stderr
    assert third.stdout.split("]")[0] == first.stdout.split("]")[0]


@needs_fastokens
def test_an_unwritable_cache_folder_keeps_the_json_in_memory(tmp_path):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    code = """
        import glm4_tokfix
        tok = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(glm4_tokfix.TINY_GLM4_DIR)
        tok.glm4_encoder = "fastokens"
        print(tok.encode("hello"))
    """
    out = _run(code, {"GLM4_TOKFIX_CACHE_DIR": str(blocked / "sub"), "PYTHONPATH": str(ROOT / "src")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(
        glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(glm4_tokfix.TINY_GLM4_DIR).encode("hello")
    )


@needs_fastokens
def test_the_cache_defaults_to_the_users_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(tc.GLM4_CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert tc.glm4_cache_dir() == str(tmp_path / "glm4_tokfix")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert tc.glm4_cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "glm4_tokfix")


@needs_fastokens
def test_nothing_is_written_into_the_model_folder(tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(glm4_tokfix.TINY_GLM4_DIR, folder)
    before = sorted(p.name for p in folder.iterdir())
    code = f"""
        import glm4_tokfix
        tok = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained({str(folder)!r})
        tok.glm4_encoder = "fastokens"
        tok(["hello", "world"], padding=True)
    """
    out = _run(code, {"GLM4_TOKFIX_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT / "src")})
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in folder.iterdir()) == before


# ------------------------------------------------------------- threads and fork
@needs_fastokens
def test_threaded_batches_on_fastokens_equal_serial(tok):
    many = [f"row {i}: " + "hello world 你好 " * 40 + "<|user|>" * (i % 3) for i in range(30)]
    serial, threaded = copy.copy(tok), copy.copy(tok)
    for t in (serial, threaded):
        t.glm4_encoder = "fastokens"
    serial.glm4_encode_threads = 1
    threaded.glm4_encode_threads = 3
    threaded.glm4_parallel_min_chars = 0
    assert threaded._glm4_thread_count(many) == 3
    assert dict(threaded(many, padding=True)) == dict(serial(many, padding=True))


@pytest.mark.parametrize("encoder", ["tiktoken", pytest.param("fastokens", marks=needs_fastokens)])
def test_by_default_only_an_engine_that_releases_the_gil_gets_threads(tok, encoder, monkeypatch):
    """fastokens holds the GIL (threads only slow it): a large batch is encoded serially unless
    glm4_encode_threads asks for threads; tiktoken's batches are shared among threads."""
    many = [f"row {i}: " + "hello world 你好 " * 40 + "<|user|>" * (i % 3) for i in range(30)]
    t = copy.copy(tok)
    t.glm4_encoder, t.glm4_parallel_min_chars = encoder, 0
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    monkeypatch.setattr(tc.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    calls = []
    real = glm4_rows._encode_in_threads
    monkeypatch.setattr(
        glm4_rows, "_encode_in_threads", lambda texts, encode, n: calls.append(n) or real(texts, encode, n)
    )
    expected = dict(copy.copy(tok)(many, padding=True))
    calls.clear()
    assert dict(t(many, padding=True)) == expected
    assert calls == ([] if encoder == "fastokens" else [3])
    t.glm4_encode_threads = 2  # asked for: honoured with either backend
    assert dict(t(many, padding=True)) == expected
    assert calls[-1] == 2


def _child_encode(tok, texts, queue):
    queue.put([tok.encode(t) for t in texts] + [tok(texts, padding=True)["input_ids"]])


@pytest.mark.parametrize("encoder", ["tiktoken", pytest.param("fastokens", marks=needs_fastokens)])
def test_fork_after_use(tiny_tok, encoder):
    """DataLoader workers: the parent encodes, forks, and the children encode."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    tok = copy.copy(tiny_tok)
    tok.glm4_encoder = encoder
    texts = ["hello world", "你好 <|user|> x", "  \n\n  tabs\t"] * 5
    expected = [tok.encode(t) for t in texts] + [tok(texts, padding=True)["input_ids"]]
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_child_encode, args=(tok, texts, queue)) for _ in range(2)]
    for child in children:
        child.start()
    results = [queue.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    assert results == [expected, expected]


@needs_fastokens
def test_datasets_map_with_two_processes_on_fastokens(tiny_tok):
    datasets = pytest.importorskip("datasets")
    tok = copy.copy(tiny_tok)
    tok.glm4_encoder = "fastokens"
    rows = [f"text {i} 你好 <|user|> " + "x " * (i % 9) for i in range(30)]
    expected = tok(rows)["input_ids"]
    ds = datasets.Dataset.from_dict({"text": rows})
    mapped = ds.map(lambda b: dict(tok(b["text"])), batched=True, batch_size=4, num_proc=2, keep_in_memory=True)
    assert mapped["input_ids"] == expected


# ------------------------------------------------------------- a model folder's copy of the module
_FOLDER_CODE = """
    import sys
    {block}
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained({folder!r}, trust_remote_code=True)
    assert type(tok).__module__.startswith("transformers_modules"), type(tok).__module__
    print(tok.glm4_encoder_name(), tok(["hello <|user|> 你好", "x"], padding=True)["input_ids"])
"""
_BLOCK_FASTOKENS = """
    import importlib.abc
    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "fastokens" or name.startswith("fastokens."):
                raise ImportError("fastokens is blocked in this test")
    sys.meta_path.insert(0, _Block())
"""


@pytest.mark.parametrize("fastokens_present", [pytest.param(True, marks=needs_fastokens), False])
def test_a_model_folders_copy_works_with_and_without_fastokens(tmp_path, fastokens_present):
    import shutil

    from glm4_tokfix.model_folder import patch_folder

    folder = tmp_path / "model"
    shutil.copytree(glm4_tokfix.TINY_GLM4_DIR, folder)
    patch_folder(folder)
    code = _FOLDER_CODE.format(block="" if fastokens_present else _BLOCK_FASTOKENS, folder=str(folder))
    env = {
        "GLM4_TOKFIX_CACHE_DIR": str(tmp_path / "cache"),
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "PYTHONPATH": "",
    }
    out = _run(code, env)
    assert out.returncode == 0, out.stderr[-3000:]
    name, ids = out.stdout.strip().split(" ", 1)
    assert name == ("fastokens" if fastokens_present else "tiktoken")
    expected = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(glm4_tokfix.TINY_GLM4_DIR)(
        ["hello <|user|> 你好", "x"], padding=True
    )
    assert ids == str(expected["input_ids"])
