"""Every row of a batch encoding equals the single encoding of its text."""

from __future__ import annotations

import importlib.util

import pytest
from hypothesis import given

from helpers import as_lists, check_padded_row, real_tokens, rows
from strategies import batches, encode_options

HAVE_TORCH = importlib.util.find_spec("torch") is not None


def expected_width(lengths, options):
    padding = options.get("padding")
    if padding is False:
        return None
    width = options["max_length"] if padding == "max_length" else max(lengths)
    multiple = options.get("pad_to_multiple_of")
    if multiple:
        width = -(-width // multiple) * multiple
    return width


def check_batch_equals_single(tok, texts, options):
    if options.get("return_tensors") == "pt" and not HAVE_TORCH:
        options = dict(options, return_tensors="np")
    batch = tok(texts, **options)
    single_options = {k: v for k, v in options.items() if k != "return_tensors"}
    singles = [tok(t, **single_options) for t in texts]
    ids, masks, positions = rows(batch, "input_ids"), rows(batch, "attention_mask"), rows(batch, "position_ids")
    assert len(ids) == len(texts)
    side = options["padding_side"]
    single_real = [real_tokens(s["input_ids"], s["attention_mask"]) for s in singles]
    width = expected_width([len(r) for r in single_real], options)
    for i, single in enumerate(single_real):
        assert real_tokens(ids[i], masks[i]) == single, f"row {i} differs from the single encoding"
        check_padded_row(ids[i], masks[i], positions[i], side, tok.pad_token_id)
        if width is not None:
            assert len(ids[i]) == max(width, len(single))
        if options.get("add_special_tokens"):
            assert single[:2] == tok.get_prefix_tokens()
            assert single[2:4] != tok.get_prefix_tokens() or texts[i].startswith("[gMASK]<sop>[gMASK]<sop>")
        if options.get("truncation"):
            assert len(single) <= options["max_length"]


@given(texts=batches(), options=encode_options())
def test_batch_rows_equal_single_encodings(tok, texts, options):
    check_batch_equals_single(tok, texts, options)


@pytest.mark.parametrize("tensors", ["pt", "np"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_tensor_batches(tok, tensors, side):
    if tensors == "pt":
        pytest.importorskip("torch")
    texts = ["[gMASK]<sop><|user|>\n你好<|assistant|>", "hi", "<|user|>\na much longer question here<|assistant|>"]
    options = dict(padding=True, padding_side=side, return_tensors=tensors, add_special_tokens=True)
    batch = tok(texts, **options)
    assert type(batch["input_ids"]).__module__.split(".")[0] == ("torch" if tensors == "pt" else "numpy")
    assert as_lists(batch["input_ids"])[0][-1 if side == "right" else 0] in (
        tok.pad_token_id,
        tok.get_prefix_tokens()[0],
        tok.convert_tokens_to_ids("<|assistant|>"),
    )
    check_batch_equals_single(tok, texts, options)


def test_the_issue_685_batch(tok):
    """The trans_batch_demo pattern: rendered chats, padding=True -> one prefix per row, mask 0 on pads."""
    chats = [[{"role": "user", "content": "你好"}], [{"role": "user", "content": "Tell me a long story please"}]]
    rendered = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chats]
    assert all(r.startswith("[gMASK]<sop>") for r in rendered)
    batch = tok(rendered, padding=True)
    prefix = tok.get_prefix_tokens()
    for ids, mask in zip(batch["input_ids"], batch["attention_mask"]):
        real = real_tokens(ids, mask)
        assert real[:2] == prefix and real[2:4] != prefix
        assert real.count(prefix[0]) == 1
