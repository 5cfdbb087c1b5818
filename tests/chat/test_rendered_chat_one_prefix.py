"""Encoding a rendered chat gives exactly apply_chat_template(tokenize=True): one prefix."""

from __future__ import annotations

from hypothesis import given

from helpers import as_lists
from strategies import chats


def template_ids(tok, chat):
    out = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
    if hasattr(out, "keys"):  # transformers 5 returns a BatchEncoding
        out = out["input_ids"]
    return as_lists(out)


@given(chat=chats())
def test_rendered_chat_encodes_like_the_template(tok, chat):
    rendered = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert rendered.startswith("[gMASK]<sop>")
    expected = template_ids(tok, chat)
    assert tok(rendered).input_ids == expected
    assert tok(rendered, add_special_tokens=False).input_ids == expected
    assert expected[:2] == tok.get_prefix_tokens()


@given(chat=chats())
def test_batch_of_rendered_chats(tok, chat):
    rendered = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    short = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    batch = tok([rendered, short], padding=True)
    for ids, mask, text in zip(batch["input_ids"], batch["attention_mask"], [rendered, short]):
        assert [t for t, m in zip(ids, mask) if m] == tok(text).input_ids


def test_known_chat_on_the_template(tok):
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "你好，你是谁"}]
    rendered = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert rendered == "[gMASK]<sop><|system|>\nBe brief.<|user|>\n你好，你是谁<|assistant|>"
    assert tok(rendered).input_ids == template_ids(tok, chat)
