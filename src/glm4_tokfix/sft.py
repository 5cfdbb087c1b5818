"""Supervised fine-tuning inputs from chats: ids, masks, positions and labels, without hand-written masking.

Two pieces, usable apart:

``tokenize_chats(tokenizer, chats, max_length=None, supervise_turn_end=True)``
    Encodes a batch of conversations with the tokenizer's chat template (``apply_chat_template`` with
    ``return_assistant_tokens_mask=True``) and returns plain lists, one row per chat: ``input_ids``,
    ``assistant_masks`` and ``labels`` (the id on supervised tokens, -100 elsewhere). Unpadded, so it is
    the function to give ``datasets.map(batched=True)``::

        ds = ds.map(lambda b: tokenize_chats(tok, b["messages"], max_length=2048), batched=True,
                    remove_columns=ds.column_names)

``SFTCollator(tokenizer, padding_side="right")``
    A data collator (``Trainer(data_collator=...)``, a ``DataLoader``'s ``collate_fn``) that takes rows of
    ``tokenize_chats`` -- or raw ``{"messages": chat}`` rows, which it tokenizes -- and pads them into
    ``input_ids``, ``attention_mask``, ``position_ids`` and ``labels`` tensors: pads on ``padding_side``
    with the pad id, attention 0, position 0 and label -100; positions 0..n-1 on the real tokens.

``use_marked_chat_template(tokenizer)``
    Sets the tokenizer's chat template to its marked copy (``glm4_tokfix.chat_templates``), which renders
    byte for byte like the original. Needed for tools that read ``tokenizer.chat_template`` themselves and
    want ``{% generation %}`` markers, such as TRL's ``SFTTrainer(assistant_only_loss=True)``.

What is supervised (labels are aligned with ``input_ids``; transformers' causal LM models shift them). A
"reply" is what the template writes after ``<|assistant|>`` for an assistant message (the assistant mask,
see ``glm4_tokfix.chat_templates``). By default (``supervise_turn_end=True``) labels do what GLM-4's own
fine-tuning script (finetune_demo/finetune.py) does, so the model learns to end its turn:

* every token of every reply, and
* the token right after each reply: the next turn's ``<|user|>`` / ``<|observation|>`` (``<|assistant|>``,
  ``<|system|>``: whatever the template writes next), and
* when the chat ends with a reply, one ``<|user|>`` appended to the row (GLM-4's "EOS for chat"; the
  generation config stops on ``<|endoftext|>``, ``<|user|>`` and ``<|observation|>``). Not after a reply
  cut by truncation, nor after a generation prompt (the chat then ends with ``<|assistant|>``).

``<|assistant|>`` itself, system/user/observation turns and ``[gMASK]<sop>`` are never supervised.
``supervise_turn_end=False`` gives labels on the reply tokens only (the assistant mask as it is) and appends
nothing. Every row of a batch, without its pads, is exactly the single encoding of that chat (plus the
appended ``<|user|>``).
"""

from __future__ import annotations

from collections import abc
from typing import Any, Dict, List, Mapping, Optional, Sequence

__all__ = [
    "IGNORE_INDEX", "SFTCollator", "TURN_END_TOKEN", "labels_from_mask", "tokenize_chats", "use_marked_chat_template",
]  # fmt: skip

#: The label of tokens the loss ignores (PyTorch's ``CrossEntropyLoss`` default).
IGNORE_INDEX = -100


def labels_from_mask(input_ids: Sequence[int], mask: Sequence[int], turn_end: bool = False) -> List[int]:
    """The id where ``mask`` is 1, ``IGNORE_INDEX`` where it is 0 (same lengths or ``ValueError``).

    ``turn_end=True`` also keeps the id of the token right after each run of 1s (the token that ends the
    reply), as GLM-4's fine-tuning script does; nothing is added past the end of ``input_ids``.
    """
    if len(input_ids) != len(mask):
        raise ValueError(f"input_ids has {len(input_ids)} tokens but the mask has {len(mask)}")
    if isinstance(input_ids, list) and isinstance(mask, list):
        try:
            flags = bytes(mask)  # masks are 0/1: the runs of ones are found in C, then copied as slices
        except (TypeError, ValueError):
            flags = None
        if flags is not None:
            flags = flags.translate(_NONZERO_AS_ONE)  # the runs of ones are found by bytes.find, in C
            n = len(input_ids)
            labels = [IGNORE_INDEX] * n
            start = flags.find(1)
            while start >= 0:
                stop = flags.find(0, start)
                if stop < 0:
                    stop = n
                end = min(stop + 1, n) if turn_end else stop
                labels[start:end] = input_ids[start:end]
                start = flags.find(1, stop)
            return labels
    if not turn_end:
        return [token if bit else IGNORE_INDEX for token, bit in zip(input_ids, mask)]
    out, previous = [], 0
    for token, bit in zip(input_ids, mask):
        out.append(token if bit or previous else IGNORE_INDEX)
        previous = bit
    return out


_NONZERO_AS_ONE = bytes([0] + [1] * 255)  # bytes.translate table: every nonzero byte -> 1


def use_marked_chat_template(tokenizer: Any) -> Any:
    """Give ``tokenizer`` the marked copy of its GLM-4 chat template, in place; returns ``tokenizer``.

    ``ValueError`` when its template is neither one of the known GLM-4 originals nor already marked.
    """
    from glm4_tokfix.chat_templates import TEMPLATE_NAMES, marked_template

    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str):
        raise ValueError(f"the tokenizer has no chat template to mark (chat_template={template!r})")
    marked = marked_template(template)
    if marked is None:
        raise ValueError(
            "the tokenizer's chat template is not one of the GLM-4 templates glm4-tokfix has a marked copy of "
            f"({', '.join(TEMPLATE_NAMES)}); add {{% generation %}}...{{% endgeneration %}} around its "
            "assistant replies yourself"
        )
    tokenizer.chat_template = marked
    return tokenizer


#: GLM-4's end of a chat turn, appended after a chat's last reply (its fine-tuning script's "EOS for chat").
TURN_END_TOKEN = "<|user|>"

# Keywords of apply_chat_template that would break what tokenize_chats promises (plain unpadded lists of
# input_ids, assistant_masks and labels, truncated only through max_length), or whose output it would drop.
_REFUSED = (
    "tokenize", "return_dict", "return_assistant_tokens_mask", "padding", "pad_to_multiple_of", "padding_side",
    "return_tensors", "truncation", "stride", "return_overflowing_tokens", "return_attention_mask",
    "return_token_type_ids", "return_special_tokens_mask", "return_offsets_mapping", "return_length",
)  # fmt: skip


def _own_rows(rows: Sequence[Any]) -> List[List[int]]:
    """The rows of an encoding made for this call, as lists (those that are lists already are not copied:
    nothing else holds them)."""
    return [row if type(row) is list else list(row) for row in rows]


def _check_template_kwargs(template_kwargs: Mapping[str, Any]) -> None:
    nested = template_kwargs.get("tokenizer_kwargs") or {}
    if not isinstance(nested, abc.Mapping):
        raise TypeError(f"tokenizer_kwargs must be a dict, got {type(nested).__name__}")
    for where, given in (("", template_kwargs), ("tokenizer_kwargs ", nested)):
        refused = [key for key in _REFUSED if key in given]
        if refused:
            raise TypeError(
                f"tokenize_chats() does not take {where}{', '.join(f'{k}={given[k]!r}' for k in refused)}: it returns "
                "unpadded lists of input_ids, assistant_masks and labels (pad them with SFTCollator or "
                "tokenizer.pad, truncate with max_length)"
            )


def _turn_end_id(tokenizer: Any) -> int:
    token_id = tokenizer.convert_tokens_to_ids(TURN_END_TOKEN)
    if not isinstance(token_id, int) or token_id == getattr(tokenizer, "unk_token_id", None):
        raise ValueError(
            f"the tokenizer has no {TURN_END_TOKEN} token to end the last reply with; "
            "pass supervise_turn_end=False for labels on the replies only"
        )
    return token_id


def tokenize_chats(
    tokenizer: Any,
    chats: Sequence[Sequence[Mapping[str, Any]]],
    max_length: Optional[int] = None,
    supervise_turn_end: bool = True,
    **template_kwargs: Any,
) -> Dict[str, List[List[int]]]:
    """``input_ids``, ``assistant_masks`` and ``labels`` for each chat, unpadded.

    ``input_ids`` is the tokenizer's encoding of the rendered chat; with ``supervise_turn_end=True``
    (default) a chat that ends with a reply gets ``<|user|>`` appended. ``assistant_masks`` is the
    template's mask of the reply tokens (0 on the appended ``<|user|>``). ``labels`` holds the id on every
    reply token and, by default, on the token right after each reply (the next turn's ``<|user|>`` /
    ``<|observation|>``, or the appended ``<|user|>``): what GLM-4's own fine-tuning script supervises, so
    the model learns to stop. ``supervise_turn_end=False``: labels on the reply tokens only, nothing appended.

    ``max_length`` truncates each row on the tokenizer's ``truncation_side`` and bounds the appended token
    too: a row cut on the right gets no ``<|user|>`` (its last reply is unfinished); cut on the left, it keeps
    its end and room for the ``<|user|>``. ``template_kwargs`` (tools, chat_template,
    add_generation_prompt, sanitize_control_tokens, template variables, ...) go to
    ``apply_chat_template``; keywords that would pad, give tensors, truncate other than by ``max_length``
    or add outputs (``padding``, ``return_tensors``, ``truncation``, ``return_offsets_mapping``, ...) are a
    ``TypeError``. A chat is a list of message dicts, or any other sequence of mappings (a tuple, a numpy object
    array or a pandas Series, as pandas, pyarrow's ``to_pandas()`` and ``datasets`` hand chats over).
    """
    chats = list(chats)
    if not isinstance(supervise_turn_end, bool):
        raise TypeError(f"supervise_turn_end must be True or False, got {supervise_turn_end!r}")
    _check_template_kwargs(template_kwargs)
    if not chats:
        return {"input_ids": [], "assistant_masks": [], "labels": []}
    for i, chat in enumerate(chats):
        # any sequence of mappings: lists, tuples, numpy object arrays (pandas, pyarrow's to_pandas(), datasets in
        # numpy/pandas format, Ray Data's pandas batches hand those over), pandas Series; not texts, dicts or sets
        sequence = isinstance(chat, (list, tuple)) or (
            not isinstance(chat, (str, bytes, abc.Mapping)) and hasattr(chat, "__getitem__")
            and hasattr(chat, "__len__") and getattr(chat, "ndim", 1) == 1
        )  # fmt: skip
        if not sequence or not all(isinstance(m, abc.Mapping) for m in chat):  # not typing's: slow
            raise TypeError(
                f"chat {i} must be a list of message dicts (or another sequence of mappings: a tuple, a numpy "
                f"object array, a pandas Series), got {type(chat).__name__}"
            )
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
    end_id = _turn_end_id(tokenizer) if supervise_turn_end else None

    # the attention mask of unpadded rows is all ones, and not returned: the tokenizer need not build it
    template_kwargs = dict(template_kwargs)
    template_kwargs["tokenizer_kwargs"] = {
        **(template_kwargs.get("tokenizer_kwargs") or {}),
        "return_attention_mask": False,
    }

    def encode(rows: List[List[Mapping[str, Any]]], limit: Optional[int]) -> Any:
        return tokenizer.apply_chat_template(
            rows, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
            truncation=limit is not None, max_length=limit, **template_kwargs,
        )  # fmt: skip

    out = encode([chat if type(chat) is list else list(chat) for chat in chats], None)  # read, not changed
    ids, masks = _own_rows(out["input_ids"]), _own_rows(out["assistant_masks"])
    appended = [bool(supervise_turn_end and mask and mask[-1]) for mask in masks]
    too_long = [k for k in range(len(chats)) if max_length is not None and len(ids[k]) + appended[k] > max_length]
    if too_long:  # the tokenizer truncates them (keeping its prefix rule), with room for the <|user|> if kept
        keeps_end = getattr(tokenizer, "truncation_side", "right") == "left"
        for limit in sorted({max_length - (appended[k] and keeps_end) for k in too_long}):  # type: ignore[operator]  # too_long is empty when max_length is None
            group = [k for k in too_long if max_length - (appended[k] and keeps_end) == limit]  # type: ignore[operator]  # as above
            cut = encode([list(chats[k]) for k in group], limit)
            for j, k in enumerate(group):
                ids[k], masks[k] = list(cut["input_ids"][j]), list(cut["assistant_masks"][j])
                appended[k] = appended[k] and keeps_end
    for k in range(len(chats)):
        if appended[k]:
            ids[k].append(end_id)  # type: ignore[arg-type]  # set: appended needs supervise_turn_end
            masks[k].append(0)
    labels = [labels_from_mask(i, m, turn_end=supervise_turn_end) for i, m in zip(ids, masks)]
    return {"input_ids": ids, "assistant_masks": masks, "labels": labels}


class SFTCollator:
    """Pad SFT rows into ``input_ids``, ``attention_mask``, ``position_ids`` and ``labels``.

    Rows are dicts with ``input_ids`` and ``labels`` (or ``assistant_masks``), as ``tokenize_chats`` makes
    them, or dicts with ``messages`` (a chat), tokenized here by ``tokenize_chats`` with ``max_length`` and
    ``supervise_turn_end``. A row with ``assistant_masks`` but no ``labels`` gets
    ``labels_from_mask(ids, mask, turn_end=supervise_turn_end)``: the token after each reply is supervised,
    but nothing is appended (use ``tokenize_chats`` rows for the final ``<|user|>``). Padding goes through the
    tokenizer's own ``pad`` on ``padding_side`` (``"right"`` by default, as training usually pads), then the
    labels get -100 on the same side. Rows that carry ``position_ids`` (packed documents) keep them (pads get 0);
    otherwise they count each row's real tokens. ``return_tensors`` is ``"pt"`` (default), ``"np"`` or ``None`` (lists).
    """

    def __init__(
        self,
        tokenizer: Any,
        padding_side: str = "right",
        max_length: Optional[int] = None,
        pad_to_multiple_of: Optional[int] = None,
        return_tensors: Optional[str] = "pt",
        supervise_turn_end: bool = True,
    ) -> None:
        if not isinstance(supervise_turn_end, bool):
            raise TypeError(f"supervise_turn_end must be True or False, got {supervise_turn_end!r}")
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if return_tensors not in ("pt", "np", None):
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        self.tokenizer = tokenizer
        self.padding_side = padding_side
        self.max_length = max_length
        self.pad_to_multiple_of = pad_to_multiple_of
        self.return_tensors = return_tensors
        self.supervise_turn_end = supervise_turn_end

    def _rows(self, features: Sequence[Mapping[str, Any]]) -> List[Dict[str, List[int]]]:
        rows: List[Optional[Dict[str, List[int]]]] = [None] * len(features)
        chats = [(k, f["messages"]) for k, f in enumerate(features) if "input_ids" not in f and "messages" in f]
        if chats:
            encoded = tokenize_chats(
                self.tokenizer, [chat for _, chat in chats], max_length=self.max_length,
                supervise_turn_end=self.supervise_turn_end,
            )  # fmt: skip
            for j, (k, _) in enumerate(chats):
                rows[k] = {"input_ids": encoded["input_ids"][j], "labels": encoded["labels"][j]}
        for k, feature in enumerate(features):
            if rows[k] is not None:
                continue
            if "input_ids" not in feature:
                raise ValueError(f"row {k} has neither input_ids nor messages (keys: {sorted(feature)})")
            ids = _as_list(feature["input_ids"])
            if "labels" in feature:
                labels = _as_list(feature["labels"])
            elif "assistant_masks" in feature:
                labels = labels_from_mask(ids, _as_list(feature["assistant_masks"]), turn_end=self.supervise_turn_end)
            else:
                raise ValueError(f"row {k} has input_ids but neither labels nor assistant_masks")
            if len(labels) != len(ids):
                raise ValueError(f"row {k}: input_ids has {len(ids)} tokens but labels has {len(labels)}")
            row = rows[k] = {"input_ids": ids, "labels": labels}
            if "position_ids" in feature:  # packed rows: kept as given (pad() pads them with 0)
                positions = row["position_ids"] = _as_list(feature["position_ids"])
                if len(positions) != len(ids):
                    raise ValueError(f"row {k}: input_ids has {len(ids)} tokens but position_ids has {len(positions)}")
        return rows  # type: ignore[return-value]  # every row is filled in above

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> Any:
        if not features:
            raise ValueError("cannot collate an empty batch")
        rows = self._rows(features)
        given = {"input_ids": [row["input_ids"] for row in rows]}
        with_positions = sum("position_ids" in row for row in rows)
        if with_positions:
            if with_positions != len(rows):
                raise ValueError(f"{with_positions} of {len(rows)} rows have position_ids: give them for every row "
                                 "or for none")  # fmt: skip
            given["position_ids"] = [row["position_ids"] for row in rows]
        padded = self.tokenizer.pad(
            given,
            padding=True,
            pad_to_multiple_of=self.pad_to_multiple_of,
            padding_side=self.padding_side,
            return_attention_mask=True,
        )
        width = len(padded["input_ids"][0])
        labels = []
        for row in rows:
            pads = [IGNORE_INDEX] * (width - len(row["labels"]))
            labels.append(pads + row["labels"] if self.padding_side == "left" else row["labels"] + pads)
        batch = {key: padded[key] for key in ("input_ids", "attention_mask", "position_ids") if key in padded}
        if "position_ids" not in batch:  # a tokenizer whose pad does not give positions: count the real tokens
            batch["position_ids"] = [_positions(mask) for mask in batch["attention_mask"]]
        batch["labels"] = labels
        if self.return_tensors is None:
            return batch
        from transformers.tokenization_utils_base import BatchEncoding

        return dict(BatchEncoding(batch, tensor_type=self.return_tensors))


def _as_list(values: Any) -> List[int]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def _positions(mask: Sequence[int]) -> List[int]:
    out, count = [], 0
    for bit in mask:
        out.append(count if bit else 0)
        count += 1 if bit else 0
    return out
