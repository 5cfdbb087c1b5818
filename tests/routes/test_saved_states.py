"""Issue 31, items 1, 2 and 9: fast GLM-4 tokenizers saved the way training scripts save them still load fixed.

1. transformers writes the last call's padding and truncation into ``tokenizer.json``: recognising GLM-4 must not
   depend on them (``patch``, ``enable``, ``glm4-tokfix check``).
2. a folder saved by a patched fast tokenizer keeps transformers' own ``tokenizer_class`` (plain
   ``AutoTokenizer`` loads it without remote code; the fixed class stays reachable through ``auto_map``).
9. its extra special tokens survive the save, in a form both transformers lines read.
"""

from __future__ import annotations

import json

import pytest

import glm4_tokfix
from glm4_tokfix import cli
from glm4_tokfix.model_folder import FAST_CLASS_REF
from glm4_tokfix.patching import glm4_problem

PADDED_CALLS = [
    dict(padding="max_length", max_length=16, truncation=True),
    dict(padding=True, pad_to_multiple_of=8),
    dict(padding="longest", truncation=True, max_length=6, stride=1, return_overflowing_tokens=True),
]
CHAT = "[gMASK]<sop><|user|>\nhi<|assistant|>"


def saved_after(folder, call, dest, patched=False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    if patched:
        glm4_tokfix.patch(tok).glm4_fast_path = False  # the Rust route, which sets the Rust padding as unpatched
    tok(["hello there you", "a"], **call)
    tok.save_pretrained(dest)
    return dest


@pytest.mark.parametrize("call", PADDED_CALLS, ids=["max_length", "multiple_of", "overflow"])
@pytest.mark.parametrize("patched", [False, True], ids=["unpatched", "patched"])
def test_saved_padded_state_keeps_the_fix(fast_folder, tmp_path, capsys, call, patched):
    from transformers import AutoTokenizer

    folder = saved_after(fast_folder("tiny", "chat-hf"), call, tmp_path / "saved", patched)
    assert json.loads((folder / "tokenizer.json").read_text())["padding"] is not None  # the state in question
    loaded = AutoTokenizer.from_pretrained(str(folder))
    assert glm4_problem(loaded) is None
    ids = glm4_tokfix.patch(loaded)(CHAT).input_ids
    assert ids[:4] != ids[:2] * 2
    with glm4_tokfix.enable():
        enabled = AutoTokenizer.from_pretrained(str(folder))
    assert glm4_tokfix.is_patched(enabled) and enabled(CHAT).input_ids == ids
    assert cli.main(["check", str(folder)]) == 0, capsys.readouterr()


@pytest.mark.parametrize("vocab", ["tiny", pytest.param("real", marks=pytest.mark.real_vocab)])
def test_saved_patched_folder_keeps_transformers_class(fast_folder, tmp_path, vocab):
    from transformers import AutoTokenizer

    source = fast_folder(vocab, "chat-hf")
    original = "PreTrainedTokenizerFast"  # transformers' own fast class on both lines (5 also has TokenizersBackend)
    folder = saved_after(source, {}, tmp_path / "saved", patched=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == original
    assert config["auto_map"]["AutoTokenizer"][1] == FAST_CLASS_REF
    plain = AutoTokenizer.from_pretrained(str(folder))  # no "contains custom code"
    assert not glm4_tokfix.is_patched(plain)
    with glm4_tokfix.enable():
        enabled = AutoTokenizer.from_pretrained(str(folder))
    assert glm4_tokfix.is_patched(enabled)
    remote = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True)
    assert type(remote).__name__ == "ChatGLM4TokenizerFast"
    assert remote(CHAT).input_ids == enabled(CHAT).input_ids
    again = tmp_path / "again"
    remote.save_pretrained(again)  # the fixed class's own save keeps it too
    assert json.loads((again / "tokenizer_config.json").read_text())["tokenizer_class"] == original
    assert not glm4_tokfix.is_patched(AutoTokenizer.from_pretrained(str(again)))


def special_tokens(tok):
    extra = getattr(tok, "extra_special_tokens", None)
    if not isinstance(extra, (list, tuple)):  # transformers 4.x: a dict of named tokens; the list is this one
        extra = tok.additional_special_tokens
    return [str(t) for t in extra]


def test_saved_fast_folder_keeps_its_extra_special_tokens(fast_folder, tmp_path):
    from transformers import AutoTokenizer

    source = fast_folder("tiny", "chat-hf")
    expected = special_tokens(AutoTokenizer.from_pretrained(str(source)))
    assert "[gMASK]" in expected and len(expected) == 14
    folder = saved_after(source, {}, tmp_path / "saved", patched=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config.get("additional_special_tokens") == expected  # the form both lines read
    assert not isinstance(config.get("extra_special_tokens"), list)  # 4.x fails on a list there
    assert special_tokens(AutoTokenizer.from_pretrained(str(folder))) == expected
    with glm4_tokfix.enable():
        assert special_tokens(AutoTokenizer.from_pretrained(str(folder))) == expected
