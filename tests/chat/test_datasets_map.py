"""datasets.map(batched=True, num_proc=2): rows identical to in-process encoding (tokenizer pickled to workers).

Covers the fixed class and a patched upstream stand-in, chats through ``glm4_tokfix.sft.tokenize_chats`` and
plain texts with offsets. ``keep_in_memory=True`` keeps datasets' caches out of shared folders.
"""

from __future__ import annotations

import copy

import pytest

import glm4_tokfix
from glm4_tokfix.sft import tokenize_chats

datasets = pytest.importorskip("datasets")


def make_chats(n):
    chats = []
    for i in range(n):
        chat = [{"role": "user", "content": f"question {i} 你好 <|assistant|> {'x' * (i % 7)}"}]
        chat.append({"role": "assistant", "content": f"answer {i} 😀" + " more" * (i % 5)})
        if i % 3 == 0:
            chat = [{"role": "system", "content": "be brief"}] + chat
        chats.append(chat)
    return chats


def encode_chats(batch, tok):
    return tokenize_chats(tok, batch["messages"])


def encode_texts(batch, tok):
    out = tok(batch["text"], return_offsets_mapping=True)
    return {"input_ids": out["input_ids"], "offset_mapping": [[list(p) for p in row] for row in out["offset_mapping"]]}


@pytest.mark.parametrize("which", ["class", "patched-upstream"])
def test_map_with_two_processes_equals_in_process(tiny_tok, standin, which):
    tok = tiny_tok if which == "class" else glm4_tokfix.patch(copy.deepcopy(standin("current")))
    chats = make_chats(24)
    ds = datasets.Dataset.from_dict({"messages": chats, "text": [c[-1]["content"] + c[0]["content"] for c in chats]})
    mapped = ds.map(
        encode_chats, fn_kwargs={"tok": tok}, batched=True, batch_size=5, num_proc=2, keep_in_memory=True,
        remove_columns=ds.column_names,
    )  # fmt: skip
    expected = tokenize_chats(tok, chats)
    for key in ("input_ids", "assistant_masks", "labels"):
        assert mapped[key] == expected[key], key
    texts = ds.map(encode_texts, fn_kwargs={"tok": tok}, batched=True, batch_size=7, num_proc=2, keep_in_memory=True)
    local = encode_texts({"text": list(ds["text"])}, tok)
    assert texts["input_ids"] == local["input_ids"]
    assert texts["offset_mapping"] == local["offset_mapping"]
