"""A fixed fast GLM-4 tokenizer keeps its genuine Rust ``tokenizers.Tokenizer`` and is thread-safe.

vLLM's detokenizer hands ``tok._tokenizer`` to ``tokenizers.decoders.DecodeStream.step`` (a real ``Tokenizer`` or
a ``TypeError``), structured-output backends read its vocabulary, and vLLM's renderer encodes from a thread pool:
the fix must live in the Python encode paths, with nothing shared changed while a row is encoded.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

import glm4_tokfix
from locations import TINY_DIR
from strategies import PREFIX


def load(folder, **kwargs):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), **kwargs)


@pytest.fixture(scope="module")
def patched(fast_folder):
    """style -> a fast GLM-4 tokenizer patched in place (glm4_tokfix.patch on plain AutoTokenizer)."""
    cache = {}

    def get(style: str):
        if style not in cache:
            cache[style] = glm4_tokfix.patch(load(fast_folder("tiny", style)))
        return cache[style]

    return get


@pytest.fixture(scope="module")
def fixed_class(fast_folder):
    return glm4_tokfix.ChatGLM4TokenizerFast.from_pretrained(str(fast_folder("tiny", "chat-hf")))


def stream(backend, ids, skip_special_tokens):
    """Decode ``ids`` one at a time as vLLM's FastIncrementalDetokenizer does."""
    from tokenizers.decoders import DecodeStream

    decoder = DecodeStream(skip_special_tokens=skip_special_tokens)
    return "".join(piece for piece in (decoder.step(backend, i) for i in ids) if piece is not None)


# ------------------------------------------------------------------------------- the Rust tokenizer
@pytest.mark.parametrize("style", ["chat-hf", "0414"])
def test_patched_tokenizer_keeps_the_genuine_rust_tokenizer(patched, fast_folder, style):
    from tokenizers import Tokenizer

    tok, plain = patched(style), load(fast_folder("tiny", style))
    assert type(tok._tokenizer) is Tokenizer and type(tok.backend_tokenizer) is Tokenizer
    assert tok.backend_tokenizer is tok._tokenizer
    # the checkpoint's own (unchanged) tokenizer, and the usual round trips work on it
    assert tok._tokenizer.to_str() == plain._tokenizer.to_str()
    again = Tokenizer.from_str(tok._tokenizer.to_str())
    assert again.encode("hi there").ids == plain._tokenizer.encode("hi there").ids
    assert pickle.loads(pickle.dumps(tok._tokenizer)).to_str() == tok._tokenizer.to_str()
    clone = pickle.loads(pickle.dumps(tok))
    assert type(clone._tokenizer) is Tokenizer
    assert (
        clone(PREFIX + "hi")["input_ids"] == tok(PREFIX + "hi")["input_ids"] == plain(PREFIX + "hi")["input_ids"][-4:]
    )


def test_fixed_class_keeps_the_genuine_rust_tokenizer(fixed_class):
    from tokenizers import Tokenizer

    assert type(fixed_class._tokenizer) is Tokenizer and type(fixed_class.backend_tokenizer) is Tokenizer
    assert fixed_class(PREFIX + "<|user|>\nhi")["input_ids"] == fixed_class("<|user|>\nhi")["input_ids"]
    assert fixed_class("<|user|>\nhi")["input_ids"][:3] == fixed_class.convert_tokens_to_ids(
        ["[gMASK]", "<sop>", "<|user|>"]
    )


CONVERTED_CHECK = textwrap.dedent(
    """
    import json, sys
    from tokenizers import Tokenizer
    from tokenizers.decoders import DecodeStream
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
    ids = tok("[gMASK]<sop><|user|>\\n你好 there<|assistant|>")["input_ids"]
    decoder = DecodeStream(skip_special_tokens=False)
    streamed = "".join(p for p in (decoder.step(tok._tokenizer, i) for i in ids) if p is not None)
    print(json.dumps({
        "module": type(tok).__module__,
        "real": type(tok._tokenizer) is Tokenizer and type(tok.backend_tokenizer) is Tokenizer,
        "ids": ids,
        "streamed": streamed,
        "decoded": tok.decode(ids),
    }))
    """
)


def test_converted_folder_keeps_the_genuine_rust_tokenizer(tmp_path):
    """A ``glm4-tokfix convert`` folder loads its own copy of the fast module (remote code) in a fresh process."""
    out = tmp_path / "converted"
    done = subprocess.run([sys.executable, "-m", "glm4_tokfix.cli", "convert", str(TINY_DIR), str(out)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run([sys.executable, "-c", CONVERTED_CHECK, str(out)], capture_output=True, text=True,
                            env=env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["module"].startswith("transformers_modules") and got["real"]
    slow = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(TINY_DIR)
    assert got["ids"] == slow("[gMASK]<sop><|user|>\n你好 there<|assistant|>")["input_ids"]
    assert got["streamed"] == got["decoded"] == "[gMASK]<sop><|user|>\n你好 there<|assistant|>"


# --------------------------------------------------------------------------------- streaming decode
@given(ids=st.lists(st.integers(0, 10**6), max_size=30), skip=st.booleans(), style=st.sampled_from(["chat-hf", "0414"]))
def test_streaming_decode_equals_decode(patched, ids, skip, style):
    tok = patched(style)
    size = len(tok)
    ids = [i % size for i in ids] + tok.encode("a", add_special_tokens=False)  # ends on a whole character
    assert stream(tok._tokenizer, ids, skip) == tok.decode(ids, skip_special_tokens=skip)


@given(style=st.sampled_from(["chat-hf", "0414"]), text=st.text(max_size=40), skip=st.booleans())
def test_streaming_decode_of_encoded_text(patched, style, text, skip):
    tok = patched(style)
    ids = tok(PREFIX + text)["input_ids"]
    assert stream(tok._tokenizer, ids, skip) == tok.decode(ids, skip_special_tokens=skip)


# ------------------------------------------------------------------------------------------ threads
ROWS = [
    PREFIX + "<|user|>\nhello world foo bar baz and a longer question here<|assistant|>",
    "<|user|>\n你好 there, a plain text without the prefix that is long enough to cut<|assistant|>",
    PREFIX + "short",
    "x",
    PREFIX + "hello world foo bar baz " * 3,
    "plain 你好 text here " * 4,
]

SETTINGS = [
    {"truncation": True, "max_length": 16, "padding": "max_length"},
    {"truncation": True, "max_length": 9, "padding": True, "return_offsets_mapping": True},
    {"truncation": True, "max_length": 12, "stride": 3, "return_overflowing_tokens": True, "padding": True},
    {"padding": True, "pad_to_multiple_of": 8, "return_special_tokens_mask": True},
    {"truncation": True, "max_length": 10, "padding": "max_length", "padding_side": "left"},
]


def batches_of(rows):
    """A few batches mixing rows with and without the literal prefix, in different orders."""
    return [rows, rows[::-1], rows[1:4], [rows[0]], [rows[1], rows[0]], rows[2:] + rows[:2]]


@pytest.mark.parametrize("style", ["chat-hf", "0414"])
@pytest.mark.parametrize("options", SETTINGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_threads_sharing_one_tokenizer_get_the_single_thread_rows(patched, style, options):
    tok = patched(style)
    work = batches_of(ROWS)
    expected = [dict(tok(batch, **options)) for batch in work]
    threads, rounds = 8, 20
    results = [[] for _ in range(threads)]
    errors = []
    start = threading.Barrier(threads)

    def run(k: int) -> None:
        try:
            start.wait()
            for _ in range(rounds):
                for batch in work:
                    results[k].append(dict(tok(batch, **options)))
        except BaseException as exc:
            errors.append(repr(exc))

    pool = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=300)
    assert not errors, errors[:3]
    for k in range(threads):
        assert results[k] == expected * rounds, f"thread {k} got other rows"
