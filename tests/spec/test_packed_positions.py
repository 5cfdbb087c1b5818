"""``pad()`` keeps the ``position_ids`` it is given (packed / padding-free rows restart them at
each document); pads get 0. Only when absent does it make them (counting the real tokens)."""

from __future__ import annotations

import pytest

import glm4_tokfix
from helpers import as_lists

PACKED = [0, 1, 2, 0, 1]  # two documents in one row


def rows(tok):
    ids = tok.encode("hello there", add_special_tokens=False)
    return [{"input_ids": (ids * 5)[:5], "position_ids": list(PACKED)}, {"input_ids": ids[:2], "position_ids": [0, 1]}]


@pytest.fixture(scope="module", params=["slow", "fast"])
def pad_tok(request, fast_folder):
    if request.param == "slow":
        return glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(glm4_tokfix.TINY_GLM4_DIR)
    from transformers import AutoTokenizer

    return glm4_tokfix.patch(AutoTokenizer.from_pretrained(str(fast_folder("tiny", "chat-hf"))))


@pytest.mark.parametrize("return_tensors", [None, "np", "pt"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_given_positions_are_kept(pad_tok, side, return_tensors):
    if return_tensors == "pt":
        pytest.importorskip("torch")
    batch = pad_tok.pad(rows(pad_tok), padding=True, padding_side=side, return_tensors=return_tensors)
    positions = as_lists(batch["position_ids"])
    assert positions[0] == PACKED
    assert positions[1] == ([0, 0, 0, 0, 1] if side == "left" else [0, 1, 0, 0, 0])
    assert as_lists(batch["attention_mask"])[1] == ([0, 0, 0, 1, 1] if side == "left" else [1, 1, 0, 0, 0])


def test_given_positions_with_padding_false_and_one_row(pad_tok):
    assert as_lists(pad_tok.pad(rows(pad_tok), padding=False)["position_ids"]) == [PACKED, [0, 1]]
    one = pad_tok.pad(rows(pad_tok)[0], padding="max_length", max_length=7, padding_side="left")
    assert as_lists(one["position_ids"]) == [0, 0] + PACKED
    again = pad_tok.pad(one, padding="max_length", max_length=8, padding_side="left")
    assert as_lists(again["position_ids"]) == [0, 0, 0] + PACKED


def test_absent_positions_are_made_where_the_tokenizer_takes_them(pad_tok):
    plain = [{"input_ids": row["input_ids"]} for row in rows(pad_tok)]
    batch = pad_tok.pad(plain, padding=True, padding_side="left")
    if "position_ids" in pad_tok.model_input_names:
        assert as_lists(batch["position_ids"]) == [[0, 1, 2, 3, 4], [0, 0, 0, 0, 1]]
    else:
        assert "position_ids" not in batch


def test_given_positions_of_another_length_are_a_value_error(pad_tok):
    bad = rows(pad_tok)
    bad[1]["position_ids"] = [0]
    with pytest.raises(ValueError, match="position_ids has 1"):
        pad_tok.pad(bad, padding=True)
    with pytest.raises(ValueError, match="position_ids has 1"):
        pad_tok.pad(bad[1], padding="max_length", max_length=4)


def test_sft_collator_keeps_given_positions(pad_tok):
    from glm4_tokfix.sft import SFTCollator

    features = [dict(row, labels=list(row["input_ids"])) for row in rows(pad_tok)]
    batch = SFTCollator(pad_tok, return_tensors=None)(features)
    assert as_lists(batch["position_ids"]) == [PACKED, [0, 1, 0, 0, 0]]
    assert as_lists(batch["attention_mask"])[1] == [1, 1, 0, 0, 0]
    plain = [{k: v for k, v in f.items() if k != "position_ids"} for f in features]
    without = SFTCollator(pad_tok, return_tensors=None)(plain)
    assert as_lists(without["position_ids"]) == [[0, 1, 2, 3, 4], [0, 1, 0, 0, 0]]
    with pytest.raises(ValueError, match="1 of 2 rows have position_ids"):
        SFTCollator(pad_tok, return_tensors=None)([features[0], plain[1]])
