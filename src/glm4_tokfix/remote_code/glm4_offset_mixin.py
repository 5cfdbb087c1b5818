# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""``GLM4OffsetsMixin``: character offsets of a tokenizer's ids, and ``return_offsets_mapping`` on the slow tokenizer.

transformers' slow tokenizers have no offsets (``return_offsets_mapping=True`` is a ``NotImplementedError``); the fix
gives them, as a byte-level HF fast tokenizer with ``trim_offsets=False`` does. ``_glm4_offsets`` computes one text's
offsets from per-id tables (``glm4_offsets``). On transformers' generic path (pairs, overflow, a call the accelerator
does not take) the offsets of each row are computed first and handed to ``prepare_for_model``, which truncates and
pads them with the ids (``_glm4_generic_offsets``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from transformers import BatchEncoding
from transformers.utils import PaddingStrategy

from .glm4_offsets import _offset_tables, offsets_from_tables, token_char_offsets
from .glm4_state import _OFFSET_ROWS, _TRUNCATION_LOG, _Cache, _SlowHost

__all__ = ["GLM4OffsetsMixin"]


# tiktoken encoding -> ((added-tokens key), (chars started per id, begins-inside-a-character per id))
_OFFSET_TABLES: _Cache[Any, Any] = _Cache()


def _glm4_row(text: Any, pair: Any) -> Tuple[Any, Any]:
    """One batch item as (text, text_pair): a 2-tuple/list of texts is a pair, as in transformers."""
    if pair is None and isinstance(text, (list, tuple)) and len(text) == 2 and all(isinstance(t, str) for t in text):
        return text[0], text[1]
    return text, pair


class GLM4OffsetsMixin(_SlowHost):
    """Offsets of a GLM-4 tokenizer's ids, and ``return_offsets_mapping`` through transformers' generic path."""

    # ------------------------------------------------------------ where transformers encodes
    def _encode_plus(self, text: Any = None, text_pair: Any = None, **kwargs: Any):  # type: ignore[override]  # one signature for 4.x's and 5.x's (they differ)
        if kwargs.get("return_offsets_mapping"):
            if isinstance(text, (list, tuple)) and text and not isinstance(text[0], int):  # a batch (5.x)
                if text_pair is not None and (not isinstance(text_pair, (list, tuple)) or len(text_pair) != len(text)):
                    raise ValueError("If `text` is a batch, `text_pair` must also be a batch of the same length.")
                rows = [_glm4_row(t, p) for t, p in zip(text, text_pair or [None] * len(text))]
            else:
                rows = [(text, text_pair)]
            encode = functools.partial(super()._encode_plus, text=text, text_pair=text_pair)
            return self._glm4_generic_offsets(encode, rows, kwargs)
        return super()._encode_plus(text=text, text_pair=text_pair, **kwargs)

    def _batch_encode_plus(self, batch_text_or_text_pairs: Any, **kwargs: Any):
        # transformers 4.x batch path (5.x has no _batch_encode_plus and never calls this)
        if kwargs.get("return_offsets_mapping"):
            rows = [_glm4_row(row, None) for row in batch_text_or_text_pairs]
            encode = functools.partial(super()._batch_encode_plus, batch_text_or_text_pairs)  # type: ignore[misc]  # transformers 4.x only (5.x's stubs have no _batch_encode_plus)
            return self._glm4_generic_offsets(encode, rows, kwargs)
        return super()._batch_encode_plus(batch_text_or_text_pairs, **kwargs)  # type: ignore[misc]  # as above: 4.x only

    # ------------------------------------------------------------ offsets on the generic path
    def _glm4_generic_offsets(self, encode: Callable[..., Any], rows: List[Tuple[Any, Any]], kwargs: Dict[str, Any]):
        """Run transformers' generic ``encode`` (``_encode_plus``/``_batch_encode_plus``) with offsets.

        ``rows`` are the (text, text_pair) of each row. Their ids and offsets are computed here and
        handed to ``prepare_for_model`` (one row per call), which truncates and pads the offsets with
        the ids; ``_pad`` pads them with ``(0, 0)``.
        """
        if kwargs.get("is_split_into_words"):
            raise ValueError(
                "return_offsets_mapping=True needs plain texts; it is not available with is_split_into_words"
            )
        if kwargs.get("sanitize_control_tokens"):
            raise ValueError("return_offsets_mapping=True is not available with sanitize_control_tokens=True")
        split = kwargs.get("split_special_tokens")
        pending: List[Any] = []
        for row in rows:
            encoded: List[Optional[Tuple[List[int], List[Tuple[int, int]]]]] = []
            for text in row:
                if text is None:
                    encoded.append(None)
                    continue
                if not isinstance(text, str):
                    raise ValueError(
                        f"return_offsets_mapping=True needs texts (str), got {type(text).__name__}: offsets are "
                        "character positions in a text"
                    )
                ids = self.encode(text, add_special_tokens=False, split_special_tokens=split)
                encoded.append((ids, self._glm4_offsets(ids, text)))
            pending.append(encoded)
        kwargs = dict(kwargs, return_offsets_mapping=False)
        token = _OFFSET_ROWS.set(pending)
        try:
            out = encode(**kwargs)
        finally:
            _OFFSET_ROWS.reset(token)
        if pending:
            raise RuntimeError(f"internal error: {len(pending)} rows of offsets were not used")
        return out

    def prepare_for_model(self, ids: List[int], pair_ids: Optional[List[int]] = None, *args: Any, **kwargs: Any):
        """The spec's ``prepare_for_model``; a row of ``_glm4_generic_offsets`` also gets its offsets."""
        rows = _OFFSET_ROWS.get()
        if rows:
            if args:
                raise TypeError("prepare_for_model: pass its options by keyword")
            row = rows.pop(0)
            token = _OFFSET_ROWS.set(None)
            try:
                return self._glm4_prepare_with_offsets(ids, pair_ids, row, dict(kwargs))
            finally:
                _OFFSET_ROWS.reset(token)
        return super().prepare_for_model(ids, pair_ids, *args, **kwargs)

    def _glm4_prepare_with_offsets(
        self, ids: List[int], pair_ids: Optional[List[int]], row: List[Any], kwargs: Dict[str, Any]
    ):
        """``prepare_for_model`` for one row of ``_glm4_generic_offsets``: ids, then offsets, then padding."""
        for given, expected in zip((ids, pair_ids), row):
            if (given is None) != (expected is None) or (given is not None and list(given) != expected[0]):
                raise RuntimeError("internal error: the ids of a row differ from those its offsets were computed on")
        offsets = list(row[0][1])
        pair_offsets = list(row[1][1]) if row[1] is not None else None
        add_special = kwargs.get("add_special_tokens", True)
        head: List[Tuple[int, int]] = []
        if add_special:
            prefix = self.get_prefix_tokens()
            if self._glm4_has_prefix(ids, prefix):  # a literal prefix maps to its own characters
                head, offsets = offsets[: len(prefix)], offsets[len(prefix) :]
            else:
                head = [(0, 0)] * len(prefix)
        padding = kwargs.pop("padding", False)
        max_length = kwargs.get("max_length")
        pad_to_multiple_of = kwargs.pop("pad_to_multiple_of", None)
        padding_side = kwargs.pop("padding_side", None)
        return_tensors = kwargs.pop("return_tensors", None)
        prepend_batch_axis = kwargs.pop("prepend_batch_axis", False)
        return_attention_mask = kwargs.pop("return_attention_mask", None)
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        return_length = kwargs.pop("return_length", False)
        log: List[Tuple[int, int]] = []
        token = _TRUNCATION_LOG.set(log)
        try:
            encoded: Any = dict(
                super().prepare_for_model(ids, pair_ids, padding=False, return_attention_mask=False, **kwargs)
            )
        finally:
            _TRUNCATION_LOG.reset(token)
        left = self.truncation_side == "left"
        if log:
            kept, kept_pair = log[-1]
            offsets = offsets[len(offsets) - kept :] if left else offsets[:kept]
            if pair_offsets is not None:
                pair_offsets = pair_offsets[len(pair_offsets) - kept_pair :] if left else pair_offsets[:kept_pair]
        row_offsets = head + offsets + (pair_offsets or [])
        if add_special and pair_offsets is not None:
            row_offsets.append((0, 0))  # the <|endoftext|> that closes a pair
        if len(row_offsets) != len(encoded["input_ids"]):
            raise RuntimeError("internal error: offsets and ids of a row differ in length")
        encoded["offset_mapping"] = row_offsets
        strategy, _, max_length, _ = self._get_padding_truncation_strategies(
            padding=padding, max_length=max_length, pad_to_multiple_of=pad_to_multiple_of, verbose=False
        )
        if strategy != PaddingStrategy.DO_NOT_PAD or return_attention_mask:
            encoded = self.pad(
                encoded,
                max_length=max_length,
                padding=strategy.value,
                pad_to_multiple_of=pad_to_multiple_of,
                padding_side=padding_side,
                return_attention_mask=return_attention_mask,
            )
        if return_length:
            encoded["length"] = len(encoded["input_ids"])
        return BatchEncoding(encoded, tensor_type=return_tensors, prepend_batch_axis=prepend_batch_axis)

    def truncate_sequences(self, *args: Any, **kwargs: Any) -> Tuple[List[int], Optional[List[int]], List[int]]:  # type: ignore[override]  # the spec's, logged
        """The spec's ``truncate_sequences``; while ``_glm4_prepare_with_offsets`` runs, how many tokens of each
        sequence it kept is logged, so the row's offsets are cut the same way."""
        result = super().truncate_sequences(*args, **kwargs)
        log = _TRUNCATION_LOG.get()
        if log is not None:
            log.append((len(result[0]), len(result[1]) if result[1] is not None else 0))
        return result

    # ------------------------------------------------------------ offsets of one text's ids
    def _glm4_offsets(self, ids: Sequence[int], text: Optional[str] = None) -> List[Tuple[int, int]]:
        """Character offsets of ``ids``, the tokens of one whole text (no added prefix), into that text.

        The same as ``token_char_offsets`` over the tokens' bytes, computed from per-id tables (characters
        each token starts, and whether it begins inside a character) so the walk runs in C. When an added
        token strips whitespace (``lstrip``/``rstrip``), the tokens' bytes no longer cover the text: given
        ``text``, such a token then covers the whitespace it took, as in HF fast tokenizers.
        """
        if text is not None and self._glm4_stripping_ids():
            return self._glm4_aligned_offsets(ids, text)
        tables = self._glm4_offset_tables()
        if tables is None:
            decoder, added = self.decoder, self._added_tokens_decoder
            return token_char_offsets([decoder.get(i) or added[i].content.encode("utf-8") for i in ids])
        return offsets_from_tables(ids, tables)

    def _glm4_stripping_ids(self) -> Dict[int, Any]:
        """id -> added token, for the added tokens that strip whitespace next to them."""
        return {i: t for i, t in self._added_tokens_decoder.items() if t.lstrip or t.rstrip}

    def _glm4_aligned_offsets(self, ids: Sequence[int], text: str) -> List[Tuple[int, int]]:
        """``_glm4_offsets`` walking ``text``: BPE tokens take their characters, an added token its literal
        plus the whitespace transformers stripped next to it (lstrip: before it, rstrip: after it)."""
        decoder, added = self.decoder, self._added_tokens_decoder
        offsets: List[Tuple[int, int]] = []
        position, size = 0, len(text)
        for index in ids:
            token = added.get(index)
            piece = decoder.get(index) if token is None else None
            if piece is not None or token is None:
                ((start, end),) = token_char_offsets([piece or b""], position)
                offsets.append((start, end))
                position = end
                continue
            content = token.content
            start = position
            found = position
            while found < size and not text.startswith(content, found) and text[found].isspace():
                found += 1
            if not text.startswith(content, found):  # not where expected: its length, as the bytes say
                found = position
            end = found + len(content)
            if token.rstrip:
                while end < size and text[end].isspace():
                    end += 1
            offsets.append((start, end))
            position = end
        return offsets

    def _glm4_offset_tables(self) -> Optional[Tuple[List[int], List[int], frozenset]]:
        """Per token id: how many characters it starts, and 1 if it begins inside a character (and the set
        of the ids that do).

        Built once per vocabulary and set of added tokens (kept next to the tiktoken encoding, outside
        the tokenizer, so pickles stay small); None when the tokenizer has no tiktoken encoding.
        """
        encoding = getattr(self, "tokenizer", None)
        added = self._added_tokens_decoder
        key = (id(added), len(added))
        try:
            cached = _OFFSET_TABLES.get(encoding)
        except TypeError:  # not weak-referenceable
            return None
        if cached is not None and cached[0] == key:
            return cached[1]
        pieces = dict(self.decoder)
        pieces.update((i, token.content.encode("utf-8")) for i, token in added.items())
        tables = _offset_tables(pieces)
        _OFFSET_TABLES[encoding] = (key, tables)
        return tables
