"""Training collators pad on the right, exactly, with the fixed tokenizer.

``DataCollatorWithPadding`` and ``DataCollatorForSeq2Seq`` pad through
``tokenizer.pad``, so they follow the tokenizer's ``padding_side``. With the
fixed tokenizer loaded with ``padding_side="right"`` every batch is exact: ids
padded with ``<|endoftext|>``, attention mask 0 and position 0 on pads,
positions 0..n-1 on the real tokens, labels padded with -100 on the same side.
Upstream cannot pad right at all: the current revision (stand-in "current")
silently pads ``input_ids`` on the left, so ``DataCollatorForSeq2Seq``'s
right-padded labels no longer line up with them; the mid-2024 revision
(stand-in "mid2024") raises ``TypeError`` on every padded call.

The features are what a pre-tokenized SFT dataset holds: the fixed
tokenizer's encoding of a whole conversation, with labels -100 on the prompt.
Expected batches are built here with plain list arithmetic.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np
import pytest
from transformers import AutoTokenizer, DataCollatorForSeq2Seq, DataCollatorWithPadding

import glm4_tokfix
from helpers import as_lists
from standins import make_model_folder

#: (conversation so far, assistant reply): very different lengths, CJK and emoji, a system prompt.
SFT_EXAMPLES = [
    ([{"role": "user", "content": "Hi"}], "Hello!"),
    (
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Three primes?"}],
        "2, 3 and 5.",
    ),
    (
        [
            {"role": "user", "content": "你好"},
            {"role": "assistant", "content": "你好！有什么可以帮你？"},
            {"role": "user", "content": "Say something nice 🙂"},
        ],
        "You pad on the right for training, and that is fine. 👍",
    ),
    ([{"role": "user", "content": "Summarise: " + "tokens and pads and masks. " * 10}], "Pads."),
]

FEATURE_KINDS = ["full", "input_ids-only"]


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def right_tokenizers():
    return {}


@pytest.fixture(scope="module", params=["class", "remote-code"])
def right_tok(request, vocab_dir, right_tokenizers, tmp_path_factory):
    """The fixed tokenizer with padding_side="right": our class, or our module as a model folder's remote code."""
    key = (vocab_dir, request.param)
    if key not in right_tokenizers:
        if request.param == "class":
            loaded = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(vocab_dir, padding_side="right")
        else:
            folder = make_model_folder(tmp_path_factory.mktemp("fixed"), "fixed", vocab_dir)
            loaded = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True, padding_side="right")
        assert loaded.padding_side == "right"
        right_tokenizers[key] = loaded
    return right_tokenizers[key]


@pytest.fixture(scope="module")
def standin(vocab_dir, tmp_path_factory):
    """``standin(revision)``: that upstream stand-in, loaded as remote code with padding_side="right" (cached)."""
    cache = {}

    def load(revision: str):
        if revision not in cache:
            folder = make_model_folder(tmp_path_factory.mktemp(revision), revision, vocab_dir)
            cache[revision] = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True, padding_side="right")
        return cache[revision]

    return load


@pytest.fixture(scope="module")
def sft_features(tok) -> List[Dict[str, List[int]]]:
    """Per SFT example: the fixed tokenizer's encoding of the whole conversation, labels -100 on the prompt."""
    features = []
    for chat, reply in SFT_EXAMPLES:
        prompt = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        whole = tok.apply_chat_template(chat + [{"role": "assistant", "content": reply}], tokenize=False)
        whole += tok.eos_token
        encoded = tok(whole)
        prompt_ids = tok(prompt)["input_ids"]
        ids = encoded["input_ids"]
        assert ids[: len(prompt_ids)] == prompt_ids, "the prompt's ids must be a prefix of the conversation's"
        assert ids[:2] == tok.get_prefix_tokens() and ids[2:4] != tok.get_prefix_tokens()
        features.append(
            {
                "input_ids": ids,
                "attention_mask": encoded["attention_mask"],
                "position_ids": encoded["position_ids"],
                "labels": [-100] * len(prompt_ids) + ids[len(prompt_ids) :],
            }
        )
    lengths = [len(f["input_ids"]) for f in features]
    assert len(set(lengths)) == len(lengths) and max(lengths) >= 3 * min(lengths)
    return features


def _inputs(features, kind: str, with_labels: bool) -> List[Dict[str, Any]]:
    keep = {"full": ["input_ids", "attention_mask", "position_ids"], "input_ids-only": ["input_ids"]}[kind]
    if with_labels:
        keep = keep + ["labels"]
    return [{key: list(feature[key]) for key in keep} for feature in features]


def _expected(
    features,
    pad_id: int,
    *,
    multiple: Optional[int] = None,
    width: Optional[int] = None,
    side: str = "right",
    with_labels: bool = False,
) -> Dict[str, List[List[int]]]:
    """The exact padded batch, from the unpadded features by list arithmetic."""
    if width is None:
        width = max(len(f["input_ids"]) for f in features)
    if multiple:
        width = -(-width // multiple) * multiple
    fills = {"input_ids": pad_id, "attention_mask": 0, "position_ids": 0, "labels": -100}
    out: Dict[str, List[List[int]]] = {key: [] for key in fills if key != "labels" or with_labels}
    for feature in features:
        n = len(feature["input_ids"])
        values = {
            "input_ids": feature["input_ids"],
            "attention_mask": [1] * n,
            "position_ids": list(range(n)),
            "labels": feature["labels"],
        }
        for key in out:
            pads = [fills[key]] * (width - n)
            out[key].append(values[key] + pads if side == "right" else pads + values[key])
    return out


def _check_types(batch, return_tensors: str) -> None:
    for key, value in batch.items():
        if return_tensors == "pt":
            import torch

            assert isinstance(value, torch.Tensor) and value.dtype == torch.int64, key
        else:
            assert isinstance(value, np.ndarray) and value.dtype == np.int64, key


def _need(return_tensors: str) -> None:
    if return_tensors == "pt":
        pytest.importorskip("torch")


# ------------------------------------------------------------ fixed: exact
@pytest.mark.parametrize("return_tensors", ["pt", "np"])
@pytest.mark.parametrize("multiple", [None, 8], ids=["longest", "multiple-of-8"])
@pytest.mark.parametrize("kind", FEATURE_KINDS)
def test_data_collator_with_padding_pads_right_exactly(right_tok, sft_features, return_tensors, multiple, kind):
    _need(return_tensors)
    collator = DataCollatorWithPadding(right_tok, pad_to_multiple_of=multiple, return_tensors=return_tensors)
    features = _inputs(sft_features, kind, with_labels=False)
    batch = collator(features)
    _check_types(batch, return_tensors)
    expected = _expected(sft_features, right_tok.pad_token_id, multiple=multiple)
    assert {key: as_lists(value) for key, value in batch.items()} == expected
    assert features == _inputs(sft_features, kind, with_labels=False), "the collator must not change its input"


@pytest.mark.parametrize("return_tensors", ["pt", "np"])
@pytest.mark.parametrize("multiple", [None, 8], ids=["longest", "multiple-of-8"])
@pytest.mark.parametrize("kind", FEATURE_KINDS)
def test_data_collator_for_seq2seq_pads_right_exactly(right_tok, sft_features, return_tensors, multiple, kind):
    _need(return_tensors)
    collator = DataCollatorForSeq2Seq(right_tok, pad_to_multiple_of=multiple, return_tensors=return_tensors)
    batch = collator(_inputs(sft_features, kind, with_labels=True))
    _check_types(batch, return_tensors)
    expected = _expected(sft_features, right_tok.pad_token_id, multiple=multiple, with_labels=True)
    assert {key: as_lists(value) for key, value in batch.items()} == expected
    # Labels line up with the ids: -100 exactly on the pads and the prompt, the ids themselves on the reply.
    for ids, mask, labels in zip(expected["input_ids"], expected["attention_mask"], as_lists(batch["labels"])):
        assert all(label in (-100, token) for token, label in zip(ids, labels))
        assert all(label == -100 for label, m in zip(labels, mask) if not m)


@pytest.mark.parametrize("return_tensors", ["pt", "np"])
def test_data_collator_max_length_padding(right_tok, sft_features, return_tensors):
    _need(return_tensors)
    width = max(len(f["input_ids"]) for f in sft_features) + 5
    collator = DataCollatorForSeq2Seq(right_tok, padding="max_length", max_length=width, return_tensors=return_tensors)
    batch = collator(_inputs(sft_features, "full", with_labels=True))
    expected = _expected(sft_features, right_tok.pad_token_id, width=width, with_labels=True)
    assert {key: as_lists(value) for key, value in batch.items()} == expected


@pytest.mark.parametrize("return_tensors", ["pt", "np"])
def test_left_padding_still_works_for_the_same_features(tok, sft_features, return_tensors):
    """The session tokenizer pads left (glm-4-9b-chat's default): the same exact batch, mirrored, labels included."""
    _need(return_tensors)
    assert tok.padding_side == "left"
    batch = DataCollatorForSeq2Seq(tok, return_tensors=return_tensors)(_inputs(sft_features, "full", with_labels=True))
    expected = _expected(sft_features, tok.pad_token_id, side="left", with_labels=True)
    assert {key: as_lists(value) for key, value in batch.items()} == expected


# ------------------------------------------------------ upstream: cannot pad right
@pytest.mark.parametrize("return_tensors", ["pt", "np"])
def test_upstream_current_silently_pads_left(standin, sft_features, return_tensors):
    _need(return_tensors)
    current = standin("current")
    assert current.padding_side == "right"
    right = _expected(sft_features, current.pad_token_id, with_labels=True)

    batch = DataCollatorWithPadding(current, return_tensors=return_tensors)(
        _inputs(sft_features, "full", with_labels=False)
    )
    ids, mask = as_lists(batch["input_ids"]), as_lists(batch["attention_mask"])
    assert ids != right["input_ids"]
    for row_ids, row_mask, feature in zip(ids, mask, sft_features):
        pads = len(row_ids) - len(feature["input_ids"])
        assert row_mask == [0] * pads + [1] * len(feature["input_ids"])  # pads in front despite padding_side="right"
        assert row_ids[pads:] == feature["input_ids"]

    # DataCollatorForSeq2Seq pads the labels itself, on the right: they no longer line up with the ids.
    collator = DataCollatorForSeq2Seq(current, return_tensors=return_tensors)
    batch = collator(_inputs(sft_features, "full", with_labels=True))
    labels, ids = as_lists(batch["labels"]), as_lists(batch["input_ids"])
    assert labels == right["labels"]
    misaligned = [
        i for i, (row_ids, row_labels) in enumerate(zip(ids, labels))
        if any(label not in (-100, token) for token, label in zip(row_ids, row_labels))
    ]  # fmt: skip
    padded_rows = [i for i, f in enumerate(sft_features) if len(f["input_ids"]) < len(ids[0])]
    assert misaligned == padded_rows and padded_rows


@pytest.mark.parametrize("collator_class", [DataCollatorWithPadding, DataCollatorForSeq2Seq])
def test_upstream_mid2024_cannot_pad_at_all(standin, sft_features, collator_class):
    with_labels = collator_class is DataCollatorForSeq2Seq
    collator = collator_class(standin("mid2024"), return_tensors="np")
    with pytest.raises(TypeError, match="padding_side"):
        collator(_inputs(sft_features, "full", with_labels=with_labels))
