"""apply_chat_template(..., return_assistant_tokens_mask=True) on the fixed slow tokenizers, both lines.

assistant_masks is 1 exactly on the tokens of each assistant reply as the template renders it after
<|assistant|> (metadata line, newline and content), 0 elsewhere and on pads; batched rows equal single
encodings on both padding sides; truncation keeps the mask aligned with the ids.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

import glm4_tokfix
from glm4_tokfix.remote_code.glm4_offsets import assistant_token_mask
from helpers import as_lists
from strategies import texts

_content = texts(min_fragments=1, max_fragments=6)
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "observation"]), "content": _content}
)
conversations = st.lists(_message, min_size=1, max_size=5)


def masked(tok, chat, **kwargs):
    return tok.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, **kwargs)


def expected_reply_texts(chat):
    return [m.get("metadata", "") + "\n" + m["content"] for m in chat if m["role"] == "assistant" and m["content"]]


@given(chat=conversations, add_generation_prompt=st.booleans())
def test_mask_covers_exactly_the_replies(tok, chat, add_generation_prompt):
    out = masked(tok, chat, add_generation_prompt=add_generation_prompt)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert (
        ids
        == tok.apply_chat_template(chat, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt)[
            "input_ids"
        ]
    )
    assert len(mask) == len(ids)
    # the masked runs decode to the replies (tokens are whole here: every reply sits between special tokens)
    runs, current = [], []
    for token, bit in zip(ids, mask):
        if bit:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    assert [tok.decode(run) for run in runs] == [r for r in expected_reply_texts(chat)]
    assistant_id = tok.convert_tokens_to_ids("<|assistant|>")
    for k, bit in enumerate(mask):
        if bit and (k == 0 or not mask[k - 1]):
            assert ids[k - 1] == assistant_id


@given(
    chats=st.lists(conversations, min_size=1, max_size=3),
    side=st.sampled_from(["left", "right"]),
    tensors=st.sampled_from([None, "np"]),
)
def test_batch_rows_equal_single_rows(tok, chats, side, tensors):
    batch = masked(tok, chats, padding=True, padding_side=side, return_tensors=tensors)
    ids, masks, attention = (as_lists(batch[k]) for k in ("input_ids", "assistant_masks", "attention_mask"))
    assert "offset_mapping" not in batch
    for i, chat in enumerate(chats):
        single = masked(tok, chat)
        assert [t for t, a in zip(ids[i], attention[i]) if a] == single["input_ids"]
        assert [m for m, a in zip(masks[i], attention[i]) if a] == single["assistant_masks"]
        assert all(m == 0 for m, a in zip(masks[i], attention[i]) if not a)


@given(chat=conversations, max_length=st.integers(1, 40), side=st.sampled_from(["left", "right"]))
def test_truncation_keeps_the_mask_aligned(tok, chat, max_length, side):
    full = masked(tok, chat)
    tok.truncation_side = side
    try:
        cut = masked(tok, chat, truncation=True, max_length=max_length)
    finally:
        tok.truncation_side = "right"
    n = len(cut["input_ids"])
    assert n == min(max_length, len(full["input_ids"]))
    window = slice(len(full["input_ids"]) - n, None) if side == "left" else slice(0, n)
    assert cut["input_ids"] == full["input_ids"][window]
    assert cut["assistant_masks"] == full["assistant_masks"][window]


def test_tensors_and_offsets_on_request(tok):
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "你好 there"}]
    out = masked(tok, chat, return_tensors="np", tokenizer_kwargs={"return_offsets_mapping": True})
    assert out["assistant_masks"].shape == out["input_ids"].shape == (1, len(masked(tok, chat)["input_ids"]))
    assert "offset_mapping" in out


def test_unmarked_template_gets_masks_not_zeros(tok):
    """A template without markers and without a shipped copy: the replies are located (glm4_reply_spans)."""
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    plain = "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{% endfor %}"
    out = masked(tok, chat, chat_template=plain)
    assert tok.decode([t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m]) == "\nyo"
    marked = "{% for m in messages %}<|{{ m.role }}|>{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}\n{{ m.content }}{% endif %}{% endfor %}"
    out = masked(tok, chat, chat_template=marked)
    assert tok.decode([t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m]) == "yo"


def test_without_the_package_the_shipped_template_still_gets_the_same_masks(tok, monkeypatch):
    """Without a shipped marked copy (the generic route, as for any other template): the same masks."""
    from glm4_tokfix.remote_code import glm4_chat

    chats = [[{"role": "system", "content": "s"}, {"role": "user", "content": "hi"},
              {"role": "assistant", "content": "你好 there", "metadata": "m"}, {"role": "user", "content": "q"},
              {"role": "assistant", "content": ""}, {"role": "assistant", "content": "again\n"}]]  # fmt: skip
    with_package = masked(tok, chats, padding=True)
    monkeypatch.setattr(glm4_chat, "marked_template", lambda template: None)  # no marked copy is found
    assert as_lists(masked(tok, chats, padding=True)["assistant_masks"]) == as_lists(with_package["assistant_masks"])


def test_incompatible_options_are_errors(tok):
    chat = [{"role": "user", "content": "hi"}]
    with pytest.raises(ValueError, match="return_dict"):
        tok.apply_chat_template(chat, tokenize=True, return_dict=False, return_assistant_tokens_mask=True)
    with pytest.raises(ValueError, match="continue_final_message"):
        masked(tok, chat, continue_final_message=True)
    with pytest.raises(ValueError, match="sanitize_control_tokens"):
        masked(tok, chat, sanitize_control_tokens=True)


def test_mask_function_is_tokenizer_agnostic():
    offsets = [(0, 0), (0, 3), (3, 5), (5, 9), (9, 10), (0, 0)]
    assert assistant_token_mask(offsets, [(4, 9)]) == [0, 0, 1, 1, 0, 0]
    assert assistant_token_mask(offsets, []) == [0] * 6
    assert assistant_token_mask(offsets, [(0, 3), (9, 10)]) == [0, 1, 0, 0, 1, 0]


@pytest.mark.parametrize("revision", ["current", "mid2024"])
def test_patched_upstream_gives_the_same_masks(standin, tiny_tok, revision):
    upstream = glm4_tokfix.patch(copy.deepcopy(standin(revision)))
    chats = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "你好😀", "metadata": "m"}],
             [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]]  # fmt: skip
    for side in ("left", "right"):
        ours = masked(tiny_tok, chats, padding=True, padding_side=side)
        theirs = masked(upstream, chats, padding=True, padding_side=side)
        assert as_lists(theirs["assistant_masks"]) == as_lists(ours["assistant_masks"])
        assert as_lists(theirs["input_ids"]) == as_lists(ours["input_ids"])


@given(
    rows=st.lists(
        st.tuples(
            st.lists(st.integers(0, 10**6), max_size=30),  # token ids (taken modulo the vocabulary)
            st.lists(st.tuples(st.integers(-3, 80), st.integers(-3, 80)), max_size=4),  # character spans
            st.integers(0, 5),  # characters a left cut removed
        ),
        min_size=1,
        max_size=5,
    )
)
def test_row_characters_with_and_without_numpy(tiny_tok, rows):
    """The masks' token ranges: one numpy pass over all rows, or a running sum and bisection per row, both
    equal to the tokens whose offsets overlap each span (``assistant_token_mask``)."""
    import sys
    from unittest import mock

    from glm4_tokfix.remote_code.glm4_offsets import _RowCharacters

    starts_chars, begins_inside, _ = tiny_tok._glm4_offset_tables()
    ids = [[i % len(starts_chars) for i in row] for row, _, _ in rows]
    spans = [row_spans for _, row_spans, _ in rows]
    shifts = [shift for _, _, shift in rows]
    with_numpy = _RowCharacters(starts_chars, begins_inside, ids)
    with mock.patch.dict(sys.modules, {"numpy": None}):  # import numpy raises ImportError
        without = _RowCharacters(starts_chars, begins_inside, ids)
        assert without.np is None
        assert without.totals() == with_numpy.totals() == [sum(starts_chars[i] for i in row) for row in ids]
        expected = without.token_ranges(spans, shifts)
    assert with_numpy.token_ranges(spans, shifts) == expected
    for row, row_spans, shift, ranges in zip(ids, spans, shifts, expected):
        offsets = [(start + shift, end + shift) for start, end in tiny_tok._glm4_offsets(row)]
        mask = [0] * len(row)
        for lo, hi in ranges:
            mask[lo:hi] = [1] * (hi - lo)
        assert mask == assistant_token_mask(offsets, row_spans)
