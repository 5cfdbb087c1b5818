"""The same ids as upstream for every text."""

from __future__ import annotations

import pytest
import tiktoken
from hypothesis import given

from glm4_tokfix.remote_code.glm4_tokens import GLM4_PAT_STR, GLM4_SPECIAL_TOKENS
from locations import requires_real
from strategies import texts

_REFERENCES: dict = {}


def reference_encoding(tok) -> tiktoken.Encoding:
    """An independent path: tiktoken with the 14 tokens registered as its own special tokens."""
    if tok.vocab_file in _REFERENCES:
        return _REFERENCES[tok.vocab_file]
    specials = {t: tok.convert_tokens_to_ids(t) for t in GLM4_SPECIAL_TOKENS}
    _REFERENCES[tok.vocab_file] = tiktoken.Encoding(
        name="reference", pat_str=GLM4_PAT_STR, mergeable_ranks=tok.mergeable_ranks, special_tokens=specials
    )
    return _REFERENCES[tok.vocab_file]


@requires_real
def test_known_ids_on_real_vocabulary(real_tok):
    assert real_tok("hello", add_special_tokens=False).input_ids == [14978]
    rendered = "[gMASK]<sop><|user|>\n你好，你是谁<|assistant|>"
    expected = [151331, 151333, 151336, 198, 109377, 3837, 103408, 99668, 151337]
    assert real_tok(rendered, add_special_tokens=False).input_ids == expected
    assert real_tok(rendered).input_ids == expected
    assert len(real_tok) == 151343 and real_tok.vocab_size == 151329
    assert real_tok.pad_token_id == real_tok.eos_token_id == 151329
    assert real_tok.padding_side == "left"


def test_added_tokens_follow_the_ranks(tok):
    n = tok.vocab_size
    assert [tok.convert_tokens_to_ids(t) for t in GLM4_SPECIAL_TOKENS] == list(range(n, n + 14))
    assert len(tok) == n + 14


@given(text=texts())
def test_ids_match_tiktoken_with_native_special_tokens(tok, text):
    reference = reference_encoding(tok)
    assert tok(text, add_special_tokens=False).input_ids == reference.encode(text, allowed_special="all")
    assert tok.encode(text, add_special_tokens=False) == reference.encode(text, allowed_special="all")


@given(text=texts())
def test_split_special_tokens_encodes_literals_as_text(tok, text):
    ids = tok(text, add_special_tokens=False, split_special_tokens=True).input_ids
    assert ids == tok.tokenizer.encode_ordinary(text)


@pytest.fixture(scope="module")
def upstream_standin(vocab_dir, tmp_path_factory):
    """Our stand-in of upstream's current class, loaded as remote code the way users load glm-4-9b-chat."""
    from transformers import AutoTokenizer

    from standins import make_model_folder

    folder = make_model_folder(tmp_path_factory.mktemp("upstream"), "current", vocab_dir)
    return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True)


@given(text=texts())
def test_ids_match_upstream_tokenization_path(tok, upstream_standin, text):
    assert tok(text, add_special_tokens=False).input_ids == upstream_standin(text, add_special_tokens=False).input_ids
    assert tok.tokenize(text) == upstream_standin.tokenize(text)
