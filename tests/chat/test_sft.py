"""glm4_tokfix.sft: chats -> input_ids, attention_mask, position_ids, labels; and training on them.

Rows of a collated batch equal single encodings on both padding sides; labels are -100 outside assistant
replies and on pads. A few ``Trainer`` steps on the tiny seeded Glm4ForCausalLM log, at step 1, exactly the
mean cross-entropy over the assistant tokens computed here by hand; TRL's
``SFTTrainer(assistant_only_loss=True)`` with our tokenizer logs the same loss.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glm4_tokfix.sft import IGNORE_INDEX, SFTCollator, labels_from_mask, tokenize_chats, use_marked_chat_template
from helpers import check_padded_row
from strategies import texts

_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "observation"]), "content": texts(min_fragments=1, max_fragments=5)}
)  # fmt: skip
conversations = st.lists(_message, min_size=1, max_size=4)

CHATS = [
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}],
    [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "and 3+3? 你好"},
        {"role": "assistant", "content": "6, obviously 😀"},
    ],
    [
        {"role": "user", "content": "tell me <|assistant|> about pads"},
        {"role": "assistant", "content": "they go right", "metadata": "m"},
    ],
]


def single(tok, chat, turn_end=True):
    """The single encoding of ``chat`` and its labels, written out from the assistant mask.

    ``turn_end``: GLM-4's recipe -- reply tokens, the token after each reply, and a ``<|user|>`` appended
    after a final reply. Otherwise the reply tokens only.
    """
    out = tok.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
    if not turn_end:
        return ids, [t if m else IGNORE_INDEX for t, m in zip(ids, mask)]
    if mask and mask[-1]:
        ids, mask = ids + [tok.convert_tokens_to_ids("<|user|>")], mask + [0]
    return ids, [t if m or (p and mask[p - 1]) else IGNORE_INDEX for p, (t, m) in enumerate(zip(ids, mask))]


@given(
    chats=st.lists(conversations, min_size=1, max_size=4), side=st.sampled_from(["left", "right"]), raw=st.booleans()
)
def test_rows_equal_single_encodings(tok, chats, side, raw):
    features = (
        [{"messages": c} for c in chats] if raw else [dict(zip(("input_ids", "labels"), single(tok, c))) for c in chats]
    )
    batch = SFTCollator(tok, padding_side=side, return_tensors=None)(features)
    assert set(batch) == {"input_ids", "attention_mask", "position_ids", "labels"}
    for i, chat in enumerate(chats):
        ids, labels = single(tok, chat)
        row_ids, mask, positions, row_labels = (
            batch[k][i] for k in ("input_ids", "attention_mask", "position_ids", "labels")
        )
        check_padded_row(row_ids, mask, positions, side, tok.pad_token_id)
        assert [t for t, m in zip(row_ids, mask) if m] == ids
        assert [t for t, m in zip(row_labels, mask) if m] == labels
        assert all(t == IGNORE_INDEX for t, m in zip(row_labels, mask) if not m)


def test_tokenize_chats_for_datasets_map(tok):
    given = copy.deepcopy(CHATS)
    rows = tokenize_chats(tok, given)
    assert given == CHATS  # the chats are read, not changed (list chats are passed on without a copy)
    produced = [row for key in rows for row in rows[key]]
    assert not any(row is chat for row in produced for chat in given)
    assert set(rows) == {"input_ids", "assistant_masks", "labels"}
    for k, chat in enumerate(CHATS):
        assert (rows["input_ids"][k], rows["labels"][k]) == single(tok, chat)
    cut = tokenize_chats(tok, CHATS, max_length=5)
    assert all(len(r) == min(5, len(full)) for r, full in zip(cut["input_ids"], rows["input_ids"]))
    assert tokenize_chats(tok, []) == {"input_ids": [], "assistant_masks": [], "labels": []}


TOOL_CHAT = [
    {"role": "user", "content": "weather?"},
    {"role": "assistant", "content": "calling the tool"},
    {"role": "observation", "content": "sunny"},
    {"role": "assistant", "content": "it is sunny"},
    {"role": "user", "content": "thanks"},
]


def ids_of(tok, chat, **kwargs):
    return list(tok.apply_chat_template(chat, tokenize=True, return_dict=True, **kwargs)["input_ids"])


def spans(mask):
    """(start, end) of each run of 1s."""
    out, start = [], None
    for p, bit in enumerate(list(mask) + [0]):
        if bit and start is None:
            start = p
        elif not bit and start is not None:
            out.append((start, p))
            start = None
    return out


def test_labels_teach_the_model_to_end_its_turn(tok):
    """GLM-4's finetune.py: each reply and the token after it are supervised; a final reply gets <|user|>."""
    user, observation = tok.convert_tokens_to_ids("<|user|>"), tok.convert_tokens_to_ids("<|observation|>")
    chats = CHATS + [TOOL_CHAT]
    rows = tokenize_chats(tok, chats)
    for k, chat in enumerate(chats):
        ids, labels, mask = rows["input_ids"][k], rows["labels"][k], rows["assistant_masks"][k]
        rendered = tok.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        ends_with_reply = chat[-1]["role"] == "assistant"
        assert ids == list(rendered["input_ids"]) + ([user] if ends_with_reply else [])
        assert mask == list(rendered["assistant_masks"]) + ([0] if ends_with_reply else [])
        runs = spans(mask)
        assert len(runs) == sum(m["role"] == "assistant" for m in chat)
        supervised = set()
        for start, end in runs:
            assert labels[start : end + 1] == ids[start : end + 1]  # the reply and the token that ends it
            assert ids[end] in (user, observation)  # the next turn's token (or the appended <|user|>)
            assert ids[start - 1] == tok.convert_tokens_to_ids("<|assistant|>") and labels[start - 1] == IGNORE_INDEX
            supervised.update(range(start, end + 1))
        assert all(label == IGNORE_INDEX for p, label in enumerate(labels) if p not in supervised)
        assert (labels[-1] == user) == ends_with_reply
    assert [rows["input_ids"][-1][e] for _, e in spans(rows["assistant_masks"][-1])] == [observation, user]
    content_only = tokenize_chats(tok, chats, supervise_turn_end=False)
    for k, chat in enumerate(chats):
        assert (content_only["input_ids"][k], content_only["labels"][k]) == single(tok, chat, turn_end=False)
    # a generation prompt ends the chat with <|assistant|>: nothing to end, nothing appended
    open_row = tokenize_chats(tok, [CHATS[0][:1]], add_generation_prompt=True)
    assert open_row["input_ids"][0] == ids_of(tok, CHATS[0][:1], add_generation_prompt=True)


@pytest.mark.parametrize("side", ["right", "left"])
def test_truncation_and_the_turn_end(tok, side):
    full = tokenize_chats(tok, CHATS)
    other = copy.copy(tok)
    other.truncation_side = side
    user = tok.convert_tokens_to_ids("<|user|>")
    for max_length in (6, 9, 12):
        cut = tokenize_chats(other, CHATS, max_length=max_length)
        for k in range(len(CHATS)):
            ids, labels = cut["input_ids"][k], cut["labels"][k]
            assert len(ids) == min(max_length, len(full["input_ids"][k]))
            if len(full["input_ids"][k]) <= max_length:
                assert (ids, labels) == (full["input_ids"][k], full["labels"][k])
            elif side == "left":  # the tokenizer's truncation keeps the end: room for its <|user|>
                own = ids_of(other, CHATS[k], truncation=True, max_length=max_length - 1)
                assert ids == own + [user] and labels[-1] == user
            else:  # the tokenizer's truncation cuts the last reply: nothing appended
                assert ids == ids_of(other, CHATS[k], truncation=True, max_length=max_length)
    assert labels_from_mask([5, 6, 7, 8, 9], [0, 1, 1, 0, 0], turn_end=True) == [-100, 6, 7, 8, -100]
    assert labels_from_mask([5, 6, 7], [0, 0, 1], turn_end=True) == [-100, -100, 7]
    assert labels_from_mask([5, 6, 7], [0, 1, 0]) == [-100, 6, -100]


@given(
    rows=st.lists(st.tuples(st.integers(0, 200_000), st.integers(0, 3)), max_size=40),
    turn_end=st.booleans(),
)
def test_labels_from_mask_equal_the_per_token_rule(rows, turn_end):
    """The list route (runs found with bytes.find) gives the per-token rule: the id where the mask is nonzero and,
    with turn_end, on the token right after a run; -100 elsewhere. Tuples take the per-token route itself."""
    ids, mask = [i for i, _ in rows], [m for _, m in rows]
    expected = [i if m or (turn_end and k and mask[k - 1]) else IGNORE_INDEX for k, (i, m) in enumerate(rows)]
    assert labels_from_mask(ids, mask, turn_end=turn_end) == expected
    assert labels_from_mask(tuple(ids), tuple(mask), turn_end=turn_end) == expected


def test_padding_and_other_promise_breakers_are_refused(tok):
    for kwargs in (
        {"padding": True}, {"padding": "max_length"}, {"return_tensors": "pt"}, {"truncation": True},
        {"return_offsets_mapping": True}, {"tokenize": False}, {"tokenizer_kwargs": {"padding": True}},
    ):  # fmt: skip
        with pytest.raises(TypeError, match=r"does not take .*unpadded lists"):
            tokenize_chats(tok, CHATS, **kwargs)
        with pytest.raises(TypeError, match="does not take"):
            tokenize_chats(tok, [], **kwargs)
    with pytest.raises(TypeError, match="supervise_turn_end"):
        tokenize_chats(tok, CHATS, supervise_turn_end="yes")
    with pytest.raises(TypeError, match="supervise_turn_end"):
        SFTCollator(tok, supervise_turn_end=1)


def test_bad_input(tok):
    with pytest.raises(TypeError, match="list of message dicts"):
        tokenize_chats(tok, ["not a chat"])
    with pytest.raises(ValueError, match="max_length"):
        tokenize_chats(tok, CHATS, max_length=0)
    with pytest.raises(ValueError, match="padding_side"):
        SFTCollator(tok, padding_side="middle")
    with pytest.raises(ValueError, match="neither"):
        SFTCollator(tok)([{"input_ids": [1, 2]}])
    with pytest.raises(ValueError, match="labels has"):
        SFTCollator(tok)([{"input_ids": [1, 2], "labels": [1]}])
    other = copy.copy(tok)
    other.chat_template = "{{ messages }}"
    with pytest.raises(ValueError, match="marked copy"):
        use_marked_chat_template(other)


# ------------------------------------------------------------------ training
torch = pytest.importorskip("torch")
pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate (in the test extra)")
pytest.importorskip("transformers.models.glm4.modeling_glm4", reason="Glm4ForCausalLM needs a newer transformers")


def _example():
    path = Path(__file__).resolve().parents[2] / "examples" / "batch_chat.py"
    spec = importlib.util.spec_from_file_location("glm4_tokfix_example_batch_chat_sft", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def hand_loss(model, batch) -> float:
    """Mean cross-entropy of predicting each labelled token from the tokens before it."""
    with torch.no_grad():
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=batch["position_ids"]
        ).logits
    logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    nll = -logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return float(nll[keep].mean())


@pytest.fixture(scope="module")
def tiny_model(tiny_tok):
    return _example().build_tiny_model(tiny_tok, seed=0)


def training_args(tmp_path, **kwargs):
    return dict(
        output_dir=str(tmp_path), per_device_train_batch_size=len(CHATS), max_steps=3, learning_rate=1e-3,
        logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, seed=0, dataloader_num_workers=0, **kwargs
    )  # fmt: skip


@pytest.mark.parametrize("side", ["right", "left"])
def test_trainer_loss_is_the_mean_over_assistant_tokens(tiny_tok, tiny_model, tmp_path, side):
    from transformers import Trainer, TrainingArguments

    collator = SFTCollator(tiny_tok, padding_side=side)
    rows = tokenize_chats(tiny_tok, CHATS)
    features = [{"input_ids": i, "labels": lab} for i, lab in zip(rows["input_ids"], rows["labels"])]
    model = copy.deepcopy(tiny_model)
    expected = hand_loss(model, collator(features))
    args = TrainingArguments(**training_args(tmp_path, remove_unused_columns=False))
    trainer = Trainer(model=model, args=args, train_dataset=features, data_collator=collator)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3
    assert losses[0] == pytest.approx(expected, abs=1e-4)  # transformers 4 logs 4 decimals
    assert losses[-1] < losses[0]  # it trains


def test_trl_sft_trainer_assistant_only_loss(tiny_tok, tiny_model, tmp_path):
    trl = pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    tok = use_marked_chat_template(copy.deepcopy(tiny_tok))
    assert tok.apply_chat_template(CHATS[1], tokenize=False) == tiny_tok.apply_chat_template(CHATS[1], tokenize=False)
    model = copy.deepcopy(tiny_model)
    chats = CHATS[:2]  # datasets gives every message every key: on transformers 4 a missing metadata renders "None"
    rows = tokenize_chats(tok, chats, supervise_turn_end=False)  # TRL supervises the generation spans only
    expected = hand_loss(
        model, SFTCollator(tok)([{"input_ids": i, "labels": lab} for i, lab in zip(rows["input_ids"], rows["labels"])])
    )
    config = trl.SFTConfig(**training_args(tmp_path, assistant_only_loss=True))
    trainer = trl.SFTTrainer(
        model=model, args=config, train_dataset=datasets.Dataset.from_dict({"messages": chats}), processing_class=tok
    )
    # TRL tokenized the chats itself: exactly our ids and assistant masks
    assert trainer.train_dataset["input_ids"] == rows["input_ids"]
    assert trainer.train_dataset["labels"] == rows["labels"]
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses[0] == pytest.approx(expected, rel=1e-4)  # TRL reports a float32 loss
