"""Pairs, truncation and saving, on slow and fast GLM-4 tokenizers, both lines."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import transformers
from hypothesis import given
from hypothesis import strategies as st

import glm4_tokfix
from helpers import other_line_python
from strategies import PREFIX

TRANSFORMERS_4 = transformers.__version__.startswith("4.")


def load(folder, **kwargs):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), **kwargs)


@pytest.fixture(scope="module")
def fast(fast_folder):
    return glm4_tokfix.patch(load(fast_folder("tiny", "chat-hf")))


@pytest.fixture(scope="module")
def fast_0414(fast_folder):
    return glm4_tokfix.patch(load(fast_folder("tiny", "0414")))


@pytest.fixture(params=["slow", "fast", "fast-0414"])
def any_tok(request, tiny_tok, fast, fast_0414):
    return {"slow": tiny_tok, "fast": fast, "fast-0414": fast_0414}[request.param]


# ----------------------------------------------------------------- defect 1: no Rust panic for pairs
PANICKY = [
    dict(text="hello world foo bar baz", pair="a", truncation="only_first"),
    dict(text="a", pair="hello world foo bar baz", truncation="only_second"),
    dict(text="hello world foo bar baz", pair="a b c", truncation="longest_first"),
    dict(text=PREFIX + "hello world foo bar baz", pair="a", truncation="only_first"),
]


@pytest.mark.parametrize("case", PANICKY, ids=lambda c: c["truncation"] + (" literal" if PREFIX in c["text"] else ""))
@pytest.mark.parametrize("batched", [False, True])
def test_pair_stride_that_does_not_fit_is_a_value_error(fast, fast_0414, case, batched):
    # chat-hf adds 2 special tokens to a pair, 0414 none: each keeps 2 tokens of the truncated text
    for tok, max_length in ((fast, 5), (fast_0414, 3)):
        text, pair = (case["text"], case["pair"]) if not batched else ([case["text"], "x"], [case["pair"], "y"])
        if tok is fast_0414 and PREFIX in case["text"]:
            continue  # the literal prefix is two more tokens of text there
        with pytest.raises(ValueError, match="stride=2 must be smaller"):
            tok(text, pair, truncation=case["truncation"], max_length=max_length, return_overflowing_tokens=True,
                stride=2)  # fmt: skip


@given(
    first=st.lists(st.sampled_from(["hello", " world", " 你好", " foo", "x"]), max_size=8).map("".join),
    second=st.lists(st.sampled_from(["a", " b", " 好", " bar"]), max_size=8).map("".join),
    max_length=st.integers(3, 12),
    stride=st.integers(0, 6),
    strategy=st.sampled_from(["longest_first", "only_first", "only_second"]),
    literal=st.booleans(),
)
def test_pairs_never_panic(fast, fast_0414, first, second, max_length, stride, strategy, literal):
    """Any pair, strategy and stride: rows or a ValueError, never a PanicException / bare Exception."""
    for tok in (fast, fast_0414):
        with contextlib.suppress(ValueError):
            tok(PREFIX + first if literal else first, second, truncation=strategy, max_length=max_length,
                stride=stride, return_overflowing_tokens=True)  # fmt: skip


# --------------------------------------------- defect 4: an empty second text keeps the pair format
@pytest.mark.parametrize("side", ["left", "right"])
def test_empty_second_text_keeps_the_pair_format(tiny_tok, fast, side):
    slow_ids = tiny_tok.convert_tokens_to_ids(["[gMASK]", "<sop>"])
    for tok in (tiny_tok, fast):
        old = tok.truncation_side
        tok.truncation_side = side
        try:
            got = tok("hello world foo bar", "", truncation=True, max_length=5, return_offsets_mapping=True)
            assert len(got["input_ids"]) == 5 and got["input_ids"][:2] == slow_ids
            assert len(got["offset_mapping"]) == 5
            if tok is tiny_tok:  # the slow tokenizer's pair format ends with <|endoftext|>
                assert got["input_ids"][-1] == tok.convert_tokens_to_ids("<|endoftext|>")
                assert got["input_ids"] == tok("hello world foo bar", "", truncation=True, max_length=5)["input_ids"]
        finally:
            tok.truncation_side = old


# ------------------------------------------------- defect 5: a text is never deleted by truncation
@pytest.mark.parametrize(
    "first, second, strategy",
    [("plain 你好 text here", "x y", "only_second"), ("x y", "plain 你好 text here", "only_first")],
)
@pytest.mark.parametrize("batched", [False, True])
def test_only_first_or_second_that_cannot_fit_is_a_value_error(any_tok, first, second, strategy, batched):
    text, pair = (first, second) if not batched else ([first, "a"], [second, "b"])
    with pytest.raises(ValueError, match=f"truncation='{strategy}' cannot fit"):
        any_tok(text, pair, truncation=strategy, max_length=4)


def test_only_second_that_fits_still_truncates(any_tok):
    got = any_tok("x y", "plain 你好 text here", truncation="only_second", max_length=8)["input_ids"]
    assert len(got) == 8


# ------------------------------------------- defect 6: prepare_for_model counts the prefix once
@pytest.mark.skipif(not TRANSFORMERS_4, reason="transformers 5's fast tokenizers have no prepare_for_model")
@pytest.mark.parametrize("max_length", [3, 5, 8])
def test_prepare_for_model_on_ids_with_the_prefix(tiny_tok, fast, max_length):
    ids = fast(PREFIX + "hello world foo bar")["input_ids"]
    assert len(ids) > 8
    got = fast.prepare_for_model(ids, truncation=True, max_length=max_length)["input_ids"]
    assert got == tiny_tok.prepare_for_model(ids, truncation=True, max_length=max_length)["input_ids"]
    assert len(got) == max_length and got[:2] == ids[:2]
    assert fast.prepare_for_model(ids)["input_ids"] == ids  # no second prefix without truncation either


# ------------------------------------------- defect 2: a fast folder saved on one line loads on the other
CROSS_FAST = textwrap.dedent(
    """
    import json, sys
    from transformers import AutoTokenizer

    mode, folder, source = sys.argv[1:4]
    texts = ["[gMASK]<sop><|user|>\\nhi<|assistant|>", "<|user|>\\na longer question<|assistant|>"]
    if mode == "save":
        import glm4_tokfix
        glm4_tokfix.patch(AutoTokenizer.from_pretrained(source)).save_pretrained(folder + "/patched")
        AutoTokenizer.from_pretrained(source + "-converted", trust_remote_code=True).save_pretrained(
            folder + "/converted")
    out = {}
    for name in ("patched", "converted"):
        tok = AutoTokenizer.from_pretrained(folder + "/" + name, trust_remote_code=True)
        out[name] = {"class": type(tok).__name__, "ids": tok(texts, padding=True).input_ids, "n": len(tok),
                     "skip": tok.decode(tok(texts[0]).input_ids, skip_special_tokens=True)}
    print(json.dumps(out))
    """
)


def run_cross_fast(python, mode, folder, source, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(glm4_tokfix.__file__).parent.parent), HF_HUB_OFFLINE="1",
               HF_MODULES_CACHE=str(tmp_path / f"modules-{mode}-{Path(python).parent.parent.name}"))  # fmt: skip
    result = subprocess.run([str(python), "-c", CROSS_FAST, mode, str(folder), str(source)], capture_output=True,
                            text=True, env=env, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_fast_folders_cross_transformers_lines(fast_folder, tmp_path):
    """Patched and converted fast folders saved on this line load fixed on the other, and back."""
    python = other_line_python()
    if python is None:
        pytest.skip("no python with the other transformers line (set GLM4_TOKFIX_OTHER_PYTHON to one)")
    import shutil

    source = tmp_path / "chat-hf"
    shutil.copytree(fast_folder("tiny", "chat-hf"), source)
    done = subprocess.run([sys.executable, "-m", "glm4_tokfix.cli", "convert", str(glm4_tokfix.TINY_GLM4_DIR),
                           str(source) + "-converted"], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    here, there = tmp_path / "saved-here", tmp_path / "saved-there"
    saved_here = run_cross_fast(sys.executable, "save", here, source, tmp_path)
    loaded_there = run_cross_fast(python, "load", here, source, tmp_path)
    saved_there = run_cross_fast(python, "save", there, source, tmp_path)
    loaded_here = run_cross_fast(sys.executable, "load", there, source, tmp_path)
    assert saved_here == loaded_there == saved_there == loaded_here
    assert saved_here["patched"]["ids"] == saved_here["converted"]["ids"]
    assert saved_here["patched"]["skip"] == "\nhi"
    for folder in (here, there):
        for name in ("patched", "converted"):
            config = json.loads((folder / name / "tokenizer_config.json").read_text())
            assert isinstance(config.get("extra_special_tokens", {}), dict)


def test_only_second_with_an_empty_second_text_is_a_value_error(fast, fast_0414):
    """transformers 4.x hands ("hello", "") on as one text; the Rust tokenizer's bare Exception becomes a ValueError."""
    for tok in (fast, fast_0414):
        with pytest.raises(ValueError, match="only_second"):
            tok("hello world", "", truncation="only_second", max_length=3)
