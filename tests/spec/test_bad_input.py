"""Bad input gets a clear TypeError/ValueError/OSError."""

from __future__ import annotations

from pathlib import Path

import pytest

import glm4_tokfix
from glm4_tokfix.remote_code.glm4_vocab import load_tiktoken_ranks
from glm4_tokfix.remote_code.tokenization_glm4_tokfix import ChatGLM4Tokenizer


@pytest.mark.parametrize("bad", [None, 3, 2.5, ["a", None], ["a", 3], [b"bytes"], {"a": 1}])
def test_bad_text_is_a_type_or_value_error(tiny_tok, bad):
    with pytest.raises((TypeError, ValueError)) as info:
        tiny_tok(bad)
    assert str(info.value)


@pytest.mark.parametrize("bad", [None, "text", [1, "a"], [1.5]])
def test_bad_ids_to_decode(tiny_tok, bad):
    with pytest.raises((TypeError, ValueError)) as info:
        tiny_tok.decode(bad)
    assert str(info.value)


def write_vocab(tmp_path, lines):
    folder = tmp_path / "vocab"
    folder.mkdir()
    source = glm4_tokfix.TINY_GLM4_DIR + "/tokenizer_config.json"
    (folder / "tokenizer_config.json").write_bytes(Path(source).read_bytes())
    (folder / "tokenizer.model").write_bytes(b"\n".join(lines) + b"\n")
    return folder


def tiny_lines():
    return open(glm4_tokfix.TINY_GLM4_DIR + "/tokenizer.model", "rb").read().splitlines()


@pytest.mark.parametrize(
    "corrupt, line, message",
    [
        (lambda ls: ls[:10] + [b"not-base64!! 10"] + ls[11:], 11, "base64"),
        (lambda ls: ls[:20] + [b"QQ== twenty"] + ls[21:], 21, "not an integer"),
        (lambda ls: ls[:5] + [b"onlyonefield"] + ls[6:], 6, "expected"),
        (lambda ls: ls[:300] + [ls[299]] + ls[301:], 301, "repeats"),
    ],
)
def test_corrupt_vocabulary_names_file_and_line(tmp_path, corrupt, line, message):
    folder = write_vocab(tmp_path, corrupt(tiny_lines()))
    with pytest.raises(ValueError, match=message) as info:
        ChatGLM4Tokenizer.from_pretrained(folder)
    assert "tokenizer.model" in str(info.value) and f"line {line}" in str(info.value)


def test_missing_byte_rank_is_a_value_error(tmp_path):
    lines = tiny_lines()
    folder = write_vocab(tmp_path, [ln for ln in lines if ln.split()[1] != b"65"])
    with pytest.raises(ValueError, match=r"tokenizer.model"):
        load_tiktoken_ranks(folder / "tokenizer.model")


def test_missing_vocabulary_file_is_an_os_error(tmp_path):
    with pytest.raises(OSError, match="nope"):
        ChatGLM4Tokenizer(vocab_file=str(tmp_path / "nope" / "tokenizer.model"))


def test_missing_vocab_file_argument_is_an_os_error():
    with pytest.raises(OSError, match="vocab_file"):
        ChatGLM4Tokenizer()


def test_built_without_a_config_registers_the_glm4_tokens():
    tok = ChatGLM4Tokenizer(vocab_file=glm4_tokfix.TINY_GLM4_DIR + "/tokenizer.model")
    assert tok.get_prefix_tokens() == [552, 554]
    assert tok.pad_token_id == tok.eos_token_id == 550
    assert tok("<|user|>\nhi").input_ids[:3] == [552, 554, 557]
    assert tok.decode(tok.encode("a<|user|>b"), skip_special_tokens=True) == "ab"
