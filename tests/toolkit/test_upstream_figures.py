"""The before/after figures of docs/upstream.md, as printed by scripts/upstream_figures.py, asserted.

(a) glm-4-9b-chat: the current stand-in doubles the prefix and ignores padding_side, the mid-2024 one raises;
the minimally patched file and the full module give the same (fixed) batches on both sides.
(b)/(c) a tokenizer.json built the way transformers' GLM conversion script builds it (``GlmConverter.converted``
in src/transformers/models/glm/convert_glm_weights_to_hf.py: ByteLevel + TemplateProcessing adding
``[gMASK]<sop>``) doubles the prefix of a rendered chat; the proposed post-processor (ByteLevel only, our own
``glm4_tokfix.convert`` style "0414", as GLM-4-0414 ships) gives the chat template's single prefix.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from strategies import PREFIX

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "upstream_figures.py"


@pytest.fixture(scope="module")
def figures():
    spec = importlib.util.spec_from_file_location("upstream_figures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_glm_4_9b_chat_before_and_after(figures, vocab_dir, tmp_path):
    toks = figures.remote_code_tokenizers(vocab_dir, tmp_path)
    prefix = toks["full"].get_prefix_tokens()
    before = figures.batch(toks["current"], "right")
    assert before["input_ids"][1][:4] == prefix * 2 and before["attention_mask"][1][:4] == [1, 1, 1, 1]
    assert before["attention_mask"][0][0] == 0  # padding_side="right" ignored: padded on the left
    with pytest.raises(TypeError, match="padding_side"):
        figures.batch(toks["mid2024"], "left")
    for side in ("left", "right"):
        full = figures.batch(toks["full"], side)
        assert full["input_ids"][1][:2] == prefix and full["input_ids"][1][2:4] != prefix
        assert (full["attention_mask"][0][0] == 0) == (side == "left")
        for name in ("minimal_current", "minimal_mid2024"):
            assert figures.batch(toks[name], side) == full, (name, side)
    assert toks["minimal_current_lines"] < 60 and toks["minimal_mid2024_lines"] < 60


def test_proposed_conversion_gives_one_prefix(figures, vocab_dir, tmp_path):
    """The transformers change: a converted GLM-4 tokenizer without the TemplateProcessing prefix."""
    fast = figures.fast_tokenizers(vocab_dir, tmp_path)
    chat = figures.CHATS[0]
    for name, tok in fast.items():
        prefix = tok.convert_tokens_to_ids(["[gMASK]", "<sop>"])
        rendered = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        assert rendered.startswith(PREFIX)
        ids = tok(rendered).input_ids
        templated = list(
            tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        )
        if name == "converted":  # what the conversion script writes today: the prefix twice
            assert ids[:4] == prefix * 2 and ids[2:] == templated
        else:  # proposed: exactly the chat template's prefix, however the chat is tokenized
            assert ids == templated == tok(rendered, add_special_tokens=False).input_ids
            assert ids[:2] == prefix and ids[2:4] != prefix
            assert tok("hi").input_ids == tok("hi", add_special_tokens=False).input_ids  # plain text: no prefix
