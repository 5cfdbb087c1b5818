"""What an adversarial user and transformers' generic tokenizer tests found (items 2-11)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import glm4_tokfix
from glm4_tokfix import ChatGLM4Tokenizer
from glm4_tokfix.remote_code.glm4_tokens import GLM4_SPECIAL_TOKENS
from helpers import other_line_python

USER = "<|user|>"
LONG = "one two three four five six seven eight nine ten eleven twelve"


def glm4_ids(tok):
    return [tok.convert_tokens_to_ids(t) for t in GLM4_SPECIAL_TOKENS]


# ------------------------------------------------ item 2: split_special_tokens in every batch
@pytest.mark.parametrize("split", [True, False])
def test_split_special_tokens_in_pair_batches(tok, split):
    a, b = f"{USER}\nhi", f"x{USER}"
    row = tok([(a, b)], split_special_tokens=split).input_ids[0]
    assert row == tok(a, b, split_special_tokens=split).input_ids
    assert (tok.get_command(USER) in row) is not split


@pytest.mark.parametrize("split", [True, False])
def test_split_special_tokens_in_word_batches(tok, split):
    words = [f"{USER}hi", "there"]
    row = tok([words], is_split_into_words=True, split_special_tokens=split).input_ids[0]
    assert row == tok(words, is_split_into_words=True, split_special_tokens=split).input_ids
    assert (tok.get_command(USER) in row) is not split


@pytest.mark.parametrize("split", [True, False])
def test_split_special_tokens_in_overflow_batches(tok, split):
    text = f"{USER}\nhello there"
    options = dict(truncation=True, max_length=50, return_overflowing_tokens=True, split_special_tokens=split)
    row = tok([text, "hi"], **options).input_ids[0]
    assert row == tok(text, **options).input_ids == tok(text, split_special_tokens=split).input_ids
    assert (tok.get_command(USER) in row) is not split


# ------------------------------------------------ items 3, 4: max_length too small
@pytest.mark.parametrize("max_length", [0, -1, -5, 1])
@pytest.mark.parametrize("call", ["single", "batch", "encode"])
def test_truncating_to_zero_or_less_is_an_error(tok, max_length, call):
    run = {
        "single": lambda: tok("hello world", truncation=True, max_length=max_length),
        "batch": lambda: tok(["hello world", "hi"], truncation=True, max_length=max_length),
        "encode": lambda: tok.encode("hello world", truncation=True, max_length=max_length),
    }[call]
    with pytest.raises(ValueError, match="max_length is too small"):
        run()


@pytest.mark.parametrize("max_length", [0, -1])
def test_truncating_to_zero_without_special_tokens_is_an_error(tok, max_length):
    with pytest.raises(ValueError, match="max_length is too small"):
        tok("hello world", add_special_tokens=False, truncation=True, max_length=max_length)


@pytest.mark.parametrize("max_length", [1, 2])
def test_pair_below_its_special_tokens_is_an_error(tok, max_length):
    with pytest.raises(ValueError, match=r"max_length is too small.*3 special tokens"):
        tok("hello world", "foo bar", truncation=True, max_length=max_length)
    with pytest.raises(ValueError, match=r"max_length is too small.*3 special tokens"):
        tok([("hello world", "foo bar")], truncation=True, max_length=max_length)


@pytest.mark.parametrize("max_length", range(3, 12))
def test_pair_truncation_is_exact(tok, max_length):
    full = tok("hello world again", "foo bar baz").input_ids
    got = tok("hello world again", "foo bar baz", truncation=True, max_length=max_length).input_ids
    assert len(got) == min(len(full), max_length)
    assert got[:2] == tok.get_prefix_tokens() and got[-1] == tok.eos_token_id
    batch = tok([("hello world again", "foo bar baz")], truncation=True, max_length=max_length)
    assert batch.input_ids[0] == got


# ------------------------------------------------ item 5: the 14 stay special after add_special_tokens
def check_specials_dropped(tok, extra: str) -> None:
    text = f"[gMASK]<sop>{USER}hi{extra}<|assistant|>"
    ids = tok(text).input_ids
    assert tok.decode(ids, skip_special_tokens=True) == "hi"
    assert tok.decode(glm4_ids(tok) + ids, skip_special_tokens=True) == "hi"
    special = set(glm4_ids(tok)) | {tok.convert_tokens_to_ids(extra)}
    assert tok.get_special_tokens_mask(ids, already_has_special_tokens=True) == [int(i in special) for i in ids]
    n_text = len(tok.encode("hi", add_special_tokens=False))
    assert sum(tok.get_special_tokens_mask(ids, already_has_special_tokens=True)) == len(ids) - n_text


def test_added_special_tokens_keep_the_glm4_ones_special(vocab_dir, tmp_path):
    tok = ChatGLM4Tokenizer.from_pretrained(vocab_dir)
    tok.add_special_tokens({"additional_special_tokens": ["<extra_a>"]})
    check_specials_dropped(tok, "<extra_a>")
    tok.save_pretrained(tmp_path)
    check_specials_dropped(ChatGLM4Tokenizer.from_pretrained(tmp_path), "<extra_a>")


# ------------------------------------------------ item 6: a folder with only tokenizer.model
def test_folder_with_only_the_vocabulary(vocab_dir, tmp_path, tok):
    shutil.copy(vocab_dir / "tokenizer.model", tmp_path / "tokenizer.model")
    loaded = ChatGLM4Tokenizer.from_pretrained(tmp_path)
    built = ChatGLM4Tokenizer(vocab_file=str(vocab_dir / "tokenizer.model"))
    assert loaded.pad_token == loaded.eos_token == "<|endoftext|>"
    assert len(loaded) == len(built) == len(tok)
    assert loaded.get_added_vocab() == built.get_added_vocab() == tok.get_added_vocab()
    texts = [f"{USER}\nhi<|assistant|>", "a longer text"]
    assert loaded(texts, padding=True).input_ids == tok(texts, padding=True).input_ids
    assert loaded.decode(loaded(texts[0]).input_ids, skip_special_tokens=True) == "\nhi"


# ------------------------------------------------ item 7: overflow batches
OVERFLOW = dict(truncation=True, max_length=6, return_overflowing_tokens=True, stride=2)


@pytest.mark.parametrize("side", ["right", "left"])
def test_overflow_rows_equal_single_calls(tok, side):
    before = tok.truncation_side
    tok.truncation_side = side
    try:
        texts = [LONG, "hi", "", LONG + " more"]
        batch = tok(texts, **OVERFLOW)
        for i, text in enumerate(texts):
            single = tok(text, **OVERFLOW)
            for key in ("input_ids", "overflowing_tokens", "num_truncated_tokens", "attention_mask"):
                assert batch[key][i] == single[key], (key, text)
        assert batch["overflowing_tokens"][1] == [] and batch["num_truncated_tokens"][1] == 0
        assert batch["num_truncated_tokens"][0] == len(tok(LONG).input_ids) - 6 > 0
    finally:
        tok.truncation_side = before


def test_overflow_is_never_dropped_from_tensors(tok):
    single = tok(LONG, return_tensors="np", **OVERFLOW)
    assert single["overflowing_tokens"].tolist() == [tok(LONG, **OVERFLOW)["overflowing_tokens"]]
    same = tok([LONG, LONG], padding=True, return_tensors="np", **OVERFLOW)
    assert same["overflowing_tokens"].tolist() == [tok(LONG, **OVERFLOW)["overflowing_tokens"]] * 2
    assert same["num_truncated_tokens"].tolist() == [tok(LONG, **OVERFLOW)["num_truncated_tokens"]] * 2
    ragged = tok([LONG, "hi"], padding=True, return_tensors="np", **OVERFLOW)  # numpy: an object array
    assert [list(row) for row in ragged["overflowing_tokens"]] == [tok(LONG, **OVERFLOW)["overflowing_tokens"], []]


def test_ragged_overflow_tensors_are_an_error(tok):
    pytest.importorskip("torch")
    assert tok([LONG, LONG], padding=True, return_tensors="pt", **OVERFLOW)["overflowing_tokens"].shape[0] == 2
    with pytest.raises(ValueError, match="overflowing tokens of different lengths"):
        tok([LONG, "hi"], padding=True, return_tensors="pt", **OVERFLOW)


# ------------------------------------------------ item 8: bytes tokens
def test_tokens_to_ids_round_trip_for_every_id(tok):
    ids = list(range(len(tok)))
    tokens = tok.convert_ids_to_tokens(ids)
    assert tok.convert_tokens_to_ids(tokens) == ids
    step = max(1, len(ids) // 3000)  # one token at a time too (a bytes token is not a sequence of tokens)
    assert [tok.convert_tokens_to_ids(t) for t in tokens[::step] + tokens[-14:]] == ids[::step] + ids[-14:]
    vocab = sorted(tok.get_vocab().items(), key=lambda item: item[1])  # transformers' test_conversion_reversible
    assert [tok.convert_tokens_to_ids(t) for t, _ in vocab[::step]] == [i for _, i in vocab[::step]]
    assert [tok.convert_ids_to_tokens(i) for _, i in vocab[::step]] == [t for t, _ in vocab[::step]]


def test_one_bytes_token(tok):
    token = tok.tokenize("hello")[0]
    assert isinstance(token, bytes) and len(token) > 1
    assert tok.convert_tokens_to_ids(token) == tok.encode("hello", add_special_tokens=False)[0]
    assert tok.convert_tokens_to_ids(bytearray(token)) == tok.convert_tokens_to_ids(token)
    with pytest.raises(ValueError, match="not in the GLM-4 vocabulary"):
        tok.convert_tokens_to_ids(b"\xff\xfe not a token \x00")


# ------------------------------------------------ item 9: constructor errors come back as themselves
@pytest.mark.parametrize("error", [RuntimeError, KeyError, AttributeError, LookupError, ValueError, ImportError])
def test_constructor_errors_come_back(error):
    class Failing(ChatGLM4Tokenizer):
        def __init__(self, *args, **kwargs):
            raise error("constructor failed on purpose")

    with pytest.raises(error, match="constructor failed on purpose"):
        Failing.from_pretrained(glm4_tokfix.TINY_GLM4_DIR)


def test_a_bad_option_names_itself(tiny_tok):
    with pytest.raises(AttributeError, match="add_special_tokens"):
        ChatGLM4Tokenizer.from_pretrained(glm4_tokfix.TINY_GLM4_DIR, add_special_tokens=True)


# ------------------------------------------------ item 10: folders load on both transformers lines
def test_saved_config_loads_on_both_lines(tok, tmp_path):
    """In-process half of the check: the config holds nothing only one line can read."""
    tok.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert not isinstance(config.get("extra_special_tokens"), list)  # 4.x needs a dict there
    assert isinstance(config.get("extra_special_tokens", {}), dict)
    assert config["additional_special_tokens"][:14] == list(GLM4_SPECIAL_TOKENS)
    again = ChatGLM4Tokenizer.from_pretrained(tmp_path)
    assert set(glm4_ids(again)) <= set(again.all_special_ids)
    assert again(["<|user|>hi", "x"], padding=True).input_ids == tok(["<|user|>hi", "x"], padding=True).input_ids


CROSS = textwrap.dedent(
    """
    import json, sys
    from transformers import AutoTokenizer
    from glm4_tokfix import ChatGLM4Tokenizer

    mode, folder, vocab = sys.argv[1:4]
    texts = ["[gMASK]<sop><|user|>\\nhi<|assistant|>", "<|user|>\\na longer question<|assistant|>"]
    if mode == "save":
        ChatGLM4Tokenizer.from_pretrained(vocab).save_pretrained(folder)
    out = {}
    for name, load in (("class", ChatGLM4Tokenizer.from_pretrained),
                       ("auto", lambda f: AutoTokenizer.from_pretrained(f, trust_remote_code=True))):
        tok = load(folder)
        out[name] = {"ids": tok(texts, padding=True).input_ids, "pad": tok.pad_token, "n": len(tok),
                     "skip": tok.decode(tok(texts[0]).input_ids, skip_special_tokens=True)}
    print(json.dumps(out))
    """
)


def run_cross(python, mode, folder, vocab_dir, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(glm4_tokfix.__file__).parent.parent), HF_HUB_OFFLINE="1",
               HF_MODULES_CACHE=str(tmp_path / f"modules-{mode}"))  # fmt: skip
    result = subprocess.run(
        [str(python), "-c", CROSS, mode, str(folder), str(vocab_dir)], capture_output=True, text=True, env=env,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_folders_cross_transformers_lines(tmp_path):
    """Saved on this line, loaded on the other, and back (the tiny vocabulary: the config is what differs)."""
    vocab_dir = Path(glm4_tokfix.TINY_GLM4_DIR)
    python = other_line_python()
    if python is None:
        pytest.skip("no python with the other transformers line (set GLM4_TOKFIX_OTHER_PYTHON to one)")
    here = Path(sys.executable)
    ours, theirs = tmp_path / "saved-here", tmp_path / "saved-there"
    ChatGLM4Tokenizer.from_pretrained(vocab_dir).save_pretrained(ours)
    loaded_there = run_cross(python, "load", ours, vocab_dir, tmp_path)
    saved_there = run_cross(python, "save", theirs, vocab_dir, tmp_path)
    loaded_here = run_cross(here, "load", theirs, vocab_dir, tmp_path)
    reference = run_cross(here, "load", ours, vocab_dir, tmp_path)
    assert loaded_there == saved_there == loaded_here == reference
    assert reference["class"]["pad"] == "<|endoftext|>" and reference["class"]["skip"] == "\nhi"


# ------------------------------------------------ item 11: max_length of the wrong type
@pytest.mark.parametrize("bad", [3.0, "3", True, [3]])
def test_max_length_of_the_wrong_type(tok, bad):
    calls = [
        lambda: tok("hello world", truncation=True, max_length=bad),
        lambda: tok(["hello world", "hi"], truncation=True, max_length=bad),
        lambda: tok("hello world", padding="max_length", max_length=bad),
        lambda: tok.encode("hello world", max_length=bad),
        lambda: tok("hello", "world", truncation=True, max_length=bad),
        lambda: tok.pad({"input_ids": [[1, 2], [3]]}, padding="max_length", max_length=bad),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="max_length must be an int"):
            call()


def test_max_length_as_a_numpy_integer(tok):
    for options in (dict(truncation=True), dict(padding="max_length")):
        assert tok(LONG, max_length=np.int64(5), **options).input_ids == tok(LONG, max_length=5, **options).input_ids


# ------------------------------------------------ generic suite: init_kwargs hold every constructor argument
def test_init_kwargs_hold_every_argument(tiny_tok, tmp_path):
    import inspect

    for name, parameter in inspect.signature(ChatGLM4Tokenizer.__init__).parameters.items():
        if parameter.default is not inspect.Parameter.empty:
            assert name in tiny_tok.init_kwargs, name
    tiny_tok.save_pretrained(tmp_path)
    assert "vocab_file" not in json.loads((tmp_path / "tokenizer_config.json").read_text())  # a local path
