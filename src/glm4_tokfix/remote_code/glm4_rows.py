# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""``GLM4RowBuilder``: plain texts to padded rows in one pass (both tokenizer kinds); ``GLM4BatchEncoder``: the slow
tokenizer's fast path over it."""

from __future__ import annotations

import os
from itertools import chain
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import tiktoken
from transformers import BatchEncoding
from transformers.tokenization_utils_base import TruncationStrategy
from transformers.utils import PaddingStrategy

from .glm4_encoders import (
    _BACKENDS,
    _FEW_LITERALS,
    FastokensBackend,
    GLM4EncoderBackend,
    TiktokenBackend,
    _encode_in_threads,
    _overlapping,
    resolve_encoder_name,
)
from .glm4_offsets import _offset_arrays, _OffsetRows
from .glm4_padding import _as_framework, _int_dtype, _real_region, _tensor_kind
from .glm4_spec import _max_length_too_small
from .glm4_state import (
    _ADDED_STATE,
    _OFFSET_ROWS,
    _ONE_ENCODE_PLUS,
    _Cache,
    _NameSet,
    _RowHost,
    _SlowHost,
)
from .glm4_tokens import PAIR_SUFFIX_TOKEN
from .glm4_vocab import _ChatGLM4Vocab

__all__ = ["GLM4BatchEncoder", "GLM4RowBuilder"]


# tokenizer -> (added-tokens key, signature, content -> id of the literals a backend splits out), see
# _glm4_added_literals
_ADDED_LITERALS: _Cache[Any, Tuple[Any, Any, Optional[Dict[str, int]]]] = _Cache()


# tokenizer -> {(encoder name, split): (literals, encoding, backend)}: the backends _glm4_backend last found for it
_LAST_BACKEND: _Cache[Any, Dict[Tuple[str, bool], Tuple[Any, Any, GLM4EncoderBackend]]] = _Cache()


# tokenizer -> (those literals, tiktoken encoding with them as special tokens), see _glm4_special_encoding
_SPECIAL_ENCODINGS: _Cache[Any, Tuple[Any, Optional[tiktoken.Encoding]]] = _Cache()


def _glm4_pair_rows(rows: Any) -> Optional[Tuple[List[str], List[str]]]:
    """A batch whose every row is a 2-tuple/list of texts, as (first texts, second texts); None otherwise."""
    if not all(
        isinstance(row, (list, tuple)) and len(row) == 2 and all(isinstance(t, str) for t in row) for row in rows
    ):
        return None
    return [row[0] for row in rows], [row[1] for row in rows]


def _glm4_word_rows(text: Any, batch_only: bool = False) -> Optional[Tuple[List[List[str]], bool]]:
    """``is_split_into_words`` input as (rows of words, batched), when every row is a non-empty list of str
    words (a tuple row may be a pair in transformers 5: the generic path decides). None otherwise."""
    if not isinstance(text, (list, tuple)) or not text:
        return None
    if all(isinstance(word, str) for word in text):
        return None if batch_only else ([list(text)], False)
    if all(type(row) is list and row and all(isinstance(word, str) for word in row) for row in text):
        return [list(row) for row in text], True
    return None


def _padded_body_field(
    values: List[List[Any]],
    fill: Any,
    n_prefix: int,
    gaps: List[int],
    left: bool,
    heads: Optional[List[Optional[Sequence[Any]]]] = None,
) -> List[List[Any]]:
    """Per-token values of each row's body, with ``fill`` on the ``gaps[i]`` pads and under the prefix (or
    ``heads[i]`` there, when given and not None: e.g. a literal prefix's own offsets).

    The rows of ``values`` are this call's own (made for it): they are extended in place, so a long row's
    values are moved once, not copied item by item."""
    rows = []
    for i, (row, d) in enumerate(zip(values, gaps)):
        head = heads[i] if heads is not None and heads[i] is not None else [fill] * n_prefix
        if left:
            lead = [fill] * d if d else []
            lead += head  # type: ignore[arg-type]  # heads[i] is checked above; mypy does not narrow an indexed item
            row[:0] = lead
        else:
            row[:0] = head  # type: ignore[assignment]  # as above: heads[i] is checked
            if d:
                row += [fill] * d
        rows.append(row)
    return rows


class GLM4RowBuilder(_RowHost):
    """Plain texts to padded rows in one pass: the row-building machinery the slow and the fast tokenizer share.

    The texts are encoded by an encoder backend (tiktoken or fastokens, in threads for a large batch), their
    bodies cut and the rows built as lists (``_glm4_row_lists``) or, for ``return_tensors="pt"``/``"np"``, as
    arrays directly (``_glm4_row_arrays``). What the rows are made of comes from the tokenizer kind's hooks
    (``_RowHost``): ``_glm4_text_encoder`` (text -> ids), ``_glm4_call_prefix`` (the ids a text lacking them
    gets), ``_glm4_offset_tables``/``_glm4_offsets`` (offsets); ``GLM4BatchEncoder`` (the slow tokenizer) and
    ``GLM4FastRouteMixin`` (the fast tokenizer's accelerator) define them.
    """

    #: Threads that encode one large batch on the fast path (tiktoken's core releases the GIL while it
    #: merges, as in its own ``encode_batch``). None (the default) uses up to 8 of the CPUs this process
    #: may run on, or 1 when the environment sets ``TOKENIZERS_PARALLELISM`` to false/0/off/no -- the
    #: switch transformers' fast tokenizers read -- or when the backend holds the GIL (fastokens: threads
    #: only slow it down). 1 encodes serially; N > 1 uses up to N threads with any backend. Rows are
    #: identical either way.
    glm4_encode_threads: Optional[int] = None
    #: A batch is split across threads only from this many characters on (a thread costs ~0.1 ms).
    glm4_parallel_min_chars = 65_536
    #: The encoder backend of the fast path: "tiktoken" or "fastokens" (see the module's "encoder
    #: backends"). None (the default) reads $GLM4_TOKFIX_ENCODER, and when that is unset too takes
    #: fastokens when it is installed, else tiktoken. ``glm4_encoder_name()`` says which one runs.
    glm4_encoder: Optional[str] = None

    def glm4_encoder_name(self) -> str:
        """The encoder backend this tokenizer's fast path runs on: ``"tiktoken"`` or ``"fastokens"``.

        ``glm4_encoder`` when set, else ``$GLM4_TOKFIX_ENCODER``, else fastokens when installed, else
        tiktoken. An unknown name is a ValueError; fastokens asked for but not installed an ImportError.
        """
        return resolve_encoder_name(self.glm4_encoder)

    def _glm4_thread_count(self, texts: List[str]) -> int:
        """How many threads encode this batch (1: serially, in the calling thread)."""
        threads = self.glm4_encode_threads
        if threads is None:
            if os.environ.get("TOKENIZERS_PARALLELISM", "").strip().lower() in ("0", "false", "off", "no"):
                return 1
            try:
                threads = min(8, len(os.sched_getaffinity(0)))
            except AttributeError:  # not on Linux
                threads = min(8, os.cpu_count() or 1)
        elif isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"glm4_encode_threads must be None or an int >= 1, got {threads!r}")
        if threads < 2 or len(texts) < 2:
            return 1
        min_chars = self.glm4_parallel_min_chars
        if isinstance(min_chars, bool) or not isinstance(min_chars, int) or min_chars < 0:
            raise ValueError(f"glm4_parallel_min_chars must be an int >= 0, got {min_chars!r}")
        if sum(map(len, texts)) < min_chars:
            return 1
        return min(threads, len(texts))

    def _glm4_encode_texts(self, texts: List[str], encode: Callable[[str], List[int]]) -> List[List[int]]:
        """``[encode(t) for t in texts]``, split across threads for a large batch (see glm4_encode_threads;
        by default only with a backend whose engine releases the GIL)."""
        if self.glm4_encode_threads is None and not getattr(encode, "threads_help", True):
            return [encode(text) for text in texts]
        return _encode_in_threads(texts, encode, self._glm4_thread_count(texts))

    def _glm4_fast_encode(
        self,
        texts: List[str],
        batched: bool,
        add_special_tokens: bool = True,
        padding_strategy: Union[PaddingStrategy, str] = PaddingStrategy.DO_NOT_PAD,
        truncation_strategy: Union[TruncationStrategy, str] = TruncationStrategy.DO_NOT_TRUNCATE,
        max_length: Optional[int] = None,
        pad_to_multiple_of: Optional[int] = None,
        padding_side: Optional[str] = None,
        return_tensors: Any = None,
        return_token_type_ids: Optional[bool] = None,
        return_attention_mask: Optional[bool] = None,
        return_special_tokens_mask: bool = False,
        return_length: bool = False,
        return_offsets_mapping: bool = False,
        verbose: bool = True,
        split_special_tokens: Optional[bool] = None,
        words: bool = False,
        pairs: Optional[List[str]] = None,
        **_ignored: Any,  # stride, is_split_into_words, return_overflowing_tokens=False, ...
    ) -> BatchEncoding:
        """``tok(texts, ...)`` for plain texts: what transformers' generic path returns, built directly.

        ``words=True``: each of ``texts`` is a list of words (``is_split_into_words=True``), encoded word by
        word and joined, as transformers' generic path does. ``pairs``: the second text of each row
        (``[gMASK]<sop> A B <|endoftext|>``; special tokens added, no truncation, no special-tokens mask or
        offsets -- ``_glm4_fast_pairs_apply``).
        """
        padding_strategy = PaddingStrategy(padding_strategy)
        truncate = TruncationStrategy(truncation_strategy) != TruncationStrategy.DO_NOT_TRUNCATE and bool(max_length)
        encode = self._glm4_text_encoder(split_special_tokens)
        prefix = self._glm4_call_prefix(add_special_tokens)
        head = prefix if prefix is not None else []
        if truncate and self.truncation_side not in ("left", "right"):
            raise ValueError(f"truncation_side must be 'left' or 'right', got {self.truncation_side!r}")

        if words:
            flat = self._glm4_encode_texts([word for row in texts for word in row], encode)  # type: ignore[arg-type]  # not None: the fast path runs only when it applies
            encoded, at = [], 0
            for row in texts:
                encoded.append(list(chain.from_iterable(flat[at : at + len(row)])))
                at += len(row)
            del flat
        else:
            encoded = self._glm4_encode_texts(texts, encode)  # type: ignore[arg-type]  # not None: the fast path runs only when it applies
        offset_arrays = offset_lists = literal = None
        if return_offsets_mapping:  # from the full ids, before the bodies are cut out of them in place
            literal = [prefix is not None and ids[: len(head)] == head for ids in encoded]
            offset_arrays = _offset_arrays(self._glm4_offset_tables(), encoded) if encoded else None
            if offset_arrays is None:  # no numpy or tables: each row's own offsets
                offset_lists = [self._glm4_offsets(ids) for ids in encoded]
        bodies, kept = self._glm4_bodies(encoded, prefix, max_length if truncate else None)
        del encoded
        if pairs is not None:  # B and the closing <|endoftext|> follow A in the body
            suffix = [self._glm4_token_id(PAIR_SUFFIX_TOKEN)]
            for body, second in zip(bodies, self._glm4_encode_texts(pairs, encode)):  # type: ignore[arg-type]  # not None: the fast path runs only when it applies
                body += second
                body += suffix
        lengths = [len(b) + len(head) for b in bodies]
        for n in lengths:  # transformers' "longer than model_max_length" warning looks at the length only
            self._eventual_warn_about_too_long_sequence(range(n), max_length, verbose)  # type: ignore[arg-type]  # only the length is read
        # Optional per-row fields: name -> (each row's values, cut like its ids with ``kept``; the value
        # on pads and under an added prefix[; per row, the values under the prefix instead, or None]), or an
        # _OffsetRows that gives that tuple for lists (body_field) and builds its array itself (padded_array).
        body_fields: Dict[str, Any] = {}
        if literal is not None:  # an added prefix and pads map to no characters; a literal prefix to its own
            body_fields["offset_mapping"] = _OffsetRows(literal, len(head), kept, offset_arrays, offset_lists)

        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        want_mask = (
            "attention_mask" in self.model_input_names if return_attention_mask is None else return_attention_mask
        )
        # transformers pads a batch always (pad() after the rows) and a single text when it pads or masks;
        # pad() returns an empty single encoding untouched (only an empty attention_mask is added).
        pad_phase = batched or padding_strategy != PaddingStrategy.DO_NOT_PAD or want_mask
        empty_single = pad_phase and not batched and not lengths[0]
        if empty_single:
            pad_phase = False

        target: Optional[int] = None
        left = True
        if pad_phase:
            left = self._glm4_padding_side(padding_side, pad_to_multiple_of) == "left"
            if padding_strategy == PaddingStrategy.LONGEST:
                target = max(lengths)
            elif padding_strategy == PaddingStrategy.MAX_LENGTH:
                if max_length is None:
                    raise ValueError("padding='max_length' needs max_length (or a finite model_max_length)")
                target = max_length
            if target is not None and pad_to_multiple_of is not None and target % pad_to_multiple_of:
                target = (target // pad_to_multiple_of + 1) * pad_to_multiple_of
        gaps = [target - n if target is not None and target > n else 0 for n in lengths]
        if self.pad_token_id is None and any(gaps):
            raise ValueError("cannot pad: the tokenizer has no pad_token (GLM-4 uses <|endoftext|>)")

        width = max(max(lengths), target or 0)
        fields: Dict[str, Any] = dict(
            with_types=return_token_type_ids,
            with_special=return_special_tokens_mask,
            with_mask=pad_phase and want_mask,
            with_positions=pad_phase and "position_ids" in self.model_input_names,
            body_fields=body_fields,
        )
        kind = _tensor_kind(return_tensors) if batched else None
        if kind is not None and all(n + d == width for n, d in zip(lengths, gaps)):
            rows = self._glm4_row_arrays(kind, bodies, head, lengths, width, left, **fields)
        else:  # lists; transformers' BatchEncoding turns them into tensors if asked (ragged rows: its error)
            rows = self._glm4_row_lists(bodies, head, lengths, gaps, left, **fields)

        data: Dict[str, Any] = {}
        for key in ("input_ids", "token_type_ids", "special_tokens_mask", *body_fields):
            if key in rows:
                data[key] = rows.pop(key)
        if return_length and batched:
            data["length"] = lengths
        data.update(rows)  # attention_mask, position_ids
        if empty_single and want_mask:
            data["attention_mask"] = [[]]
        if return_length and not batched:  # a single text's length counts its pads, as in transformers
            data["length"] = [lengths[0] + gaps[0]]

        if not batched:
            data = {key: value[0] for key, value in data.items()}
            return BatchEncoding(data, tensor_type=return_tensors, prepend_batch_axis=True)
        return BatchEncoding(data, tensor_type=return_tensors)

    def _glm4_bodies(
        self, encoded: List[List[int]], prefix: Optional[List[int]], max_length: Optional[int]
    ) -> Tuple[List[List[int]], Tuple[List[int], List[int]]]:
        """Each text's ids without a leading prefix, truncated to leave ``max_length`` with the prefix.

        Returns the bodies (tiktoken's own lists, changed in place) and ``(starts, stops)``: per text, where
        the ids its body keeps start and stop (ints, not slices: one object less per row to collect).
        ``prefix`` None: no special tokens are added (nothing is taken off).
        """
        n_prefix = len(prefix) if prefix is not None else 0
        left_cut = self.truncation_side == "left"
        bodies: List[List[int]] = []
        starts: List[int] = []
        for ids in encoded:
            start = 0
            if prefix is not None and ids[:n_prefix] == prefix:
                del ids[:n_prefix]
                start = n_prefix
            remove = len(ids) + n_prefix - max_length if max_length is not None else 0
            if remove > 0:
                if remove > len(ids):
                    raise _max_length_too_small(n_prefix, remove, len(ids))
                if left_cut:
                    del ids[:remove]
                    start += remove
                else:
                    del ids[len(ids) - remove :]
            bodies.append(ids)
            starts.append(start)
        return bodies, (starts, [start + len(ids) for start, ids in zip(starts, bodies)])

    def _glm4_row_lists(
        self,
        bodies: List[List[int]],
        head: List[int],
        lengths: List[int],
        gaps: List[int],
        left: bool,
        with_types: bool,
        with_special: bool,
        with_mask: bool,
        with_positions: bool,
        body_fields: Dict[str, Any],
    ) -> Dict[str, List[List[Any]]]:
        """Rows as lists: ``head + body`` with ``gaps[i]`` pads on the ``left`` or right, and the fields asked for.

        Every row is cut from shared runs: about one copy per row and field, no per-token Python work. Each
        body becomes its row in place (tiktoken's fresh list is referenced nowhere else), and is let go of
        in ``bodies`` once its row is built.
        """
        n_prefix = len(head)
        gap = max(gaps)
        # zeros_ones[W-d : W+n] is d zeros then n ones; zeros_counting[W-d : W+n] is d zeros then 0..n-1;
        # ones_zeros[W-n : W+d] is n ones then d zeros (W = width >= n + d).
        width = max(n + d for n, d in zip(lengths, gaps))
        zeros, ones, counting = [0] * width, [1] * width, list(range(width))
        zeros_ones, zeros_counting, ones_zeros = zeros + ones, zeros + counting, ones + zeros
        pads = [self.pad_token_id] * gap
        pads_head = pads + head  # pads_head[gap - d : gap + n_prefix] is d pads then the prefix
        type_pads = [self.pad_token_type_id] * gap
        ids_rows: List[List[int]] = []
        masks, positions, type_ids, special = [], [], [], []
        for i, (n, d) in enumerate(zip(lengths, gaps)):
            body, bodies[i] = bodies[i], None  # type: ignore[call-overload]  # frees each row as it is consumed
            if left:
                body[:0] = pads_head[gap - d :] if d else head
            else:
                body[:0] = head
                if d:
                    body += pads[:d]
            ids_rows.append(body)
            if with_types:
                type_ids.append(type_pads[:d] + zeros[:n] if left else zeros[:n] + type_pads[:d])
            if with_special:
                body_zeros = zeros[: n - n_prefix]
                special.append(ones[: d + n_prefix] + body_zeros if left else ones[:n_prefix] + body_zeros + ones[:d])
            if with_mask:
                masks.append(zeros_ones[width - d : width + n] if left else ones_zeros[width - n : width + d])
            if with_positions:
                if left:
                    positions.append(zeros_counting[width - d : width + n])
                else:
                    positions.append(counting[:n] + zeros[:d] if d else counting[:n])

        rows: Dict[str, List[List[Any]]] = {"input_ids": ids_rows}
        if with_types:
            rows["token_type_ids"] = type_ids
        if with_special:
            rows["special_tokens_mask"] = special
        for key, spec in body_fields.items():
            values, fill, *heads = spec.body_field() if isinstance(spec, _OffsetRows) else spec
            rows[key] = _padded_body_field(values, fill, n_prefix, gaps, left, *heads)
        if with_mask:
            rows["attention_mask"] = masks
        if with_positions:
            rows["position_ids"] = positions
        return rows

    def _glm4_row_arrays(
        self,
        kind: str,
        bodies: List[List[int]],
        head: List[int],
        lengths: List[int],
        width: int,
        left: bool,
        with_types: bool,
        with_special: bool,
        with_mask: bool,
        with_positions: bool,
        body_fields: Dict[str, Any],
    ) -> Dict[str, Any]:
        """The rows of ``_glm4_row_lists`` when every row is ``width`` long, as arrays of ``kind`` ('np'/'pt').

        The ids are copied once, from tiktoken's lists into one array; masks, positions and the other
        fields come from the row lengths. Same dtype and values as transformers' conversion of the lists.
        """
        import numpy as np

        dtype = _int_dtype(np, kind)
        real, index = _real_region(np, lengths, width, left)
        ids = np.full(real.shape, self.pad_token_id if self.pad_token_id is not None else 0, dtype=dtype)
        offsets = body_fields.get("offset_mapping")
        placement = offsets.placement(lengths, width, left) if isinstance(offsets, _OffsetRows) else None
        if placement is not None:  # the arrays the offsets came from hold the ids already
            ids[real] = offsets.token_ids(head, placement)  # type: ignore[union-attr]  # placement is set only for _OffsetRows
        else:
            flat = chain.from_iterable(part for body in bodies for part in (head, body))
            ids[real] = np.fromiter(flat, dtype=dtype, count=sum(lengths))
        bodies.clear()
        rows: Dict[str, Any] = {"input_ids": ids}
        if with_types:
            rows["token_type_ids"] = np.where(real, 0, self.pad_token_type_id).astype(dtype)
        if with_special:
            rows["special_tokens_mask"] = (~real | (index < len(head))).astype(dtype)
        for key, spec in body_fields.items():  # as transformers converts them (per-token values)
            if isinstance(spec, _OffsetRows):
                if placement is not None:
                    rows[key] = spec.padded_array(placement)
                    continue
                spec = spec.body_field()
            values, fill, *heads = spec
            gaps = [width - n for n in lengths]
            padded = np.asarray(_padded_body_field(values, fill, len(head), gaps, left, *heads))
            if not padded.size:  # no tokens at all: ints all the same, as transformers' own rows give
                padded = padded.astype(np.int64)
            rows[key] = padded
        if with_mask:
            rows["attention_mask"] = real.astype(dtype)
        if with_positions:
            rows["position_ids"] = np.where(real, index, 0).astype(dtype)
        return _as_framework(rows, kind)


class GLM4BatchEncoder(GLM4RowBuilder, _SlowHost):
    """The fast path: plain texts encoded by tiktoken in one call each, rows built in one pass.

    Same output as transformers' generic path through the spec (``glm4_spec.GLM4SpecMixin``;
    ``tests/accelerator/test_accelerator_equals_spec.py`` compares the two): a call it cannot reproduce exactly
    goes on to the layers below (``super()``), down to the spec. Rows are lists
    (``_glm4_row_lists``) or, for ``return_tensors="pt"``/``"np"``, arrays built
    directly (``_glm4_row_arrays``). Used through ``GLM4FixMixin``, over
    ``ChatGLM4Tokenizer``'s vocabulary; on any other class (a patched upstream
    tokenizer), or under someone else's ``_pad``, it steps aside.
    """

    #: When True (the default), plain-text calls skip transformers' per-token Python path: tiktoken
    #: splits the added tokens and encodes in one call per text, and the padded rows are built in one
    #: pass. The output is identical to the generic path (set False to use that one; tests compare both).
    glm4_fast_path = True
    #: transformers lowercases text before splitting when a tokenizer sets this (GLM-4 never does; the fast
    #: path then steps aside). Declared here so reading it skips transformers 5's slow ``__getattr__``.
    do_lower_case = False

    def _encode_plus(self, text: Any = None, text_pair: Any = None, **kwargs: Any):  # type: ignore[override]  # one signature for 4.x's and 5.x's (they differ)
        # transformers 5: every __call__/encode goes through here (a batch too); 4.x: single texts only.
        if text_pair is not None and _OFFSET_ROWS.get() is None and self._glm4_fast_pairs_apply(kwargs):
            if isinstance(text, str) and isinstance(text_pair, str):
                return self._glm4_fast_encode([text], batched=False, pairs=[text_pair], **kwargs)
            if (
                isinstance(text, (list, tuple)) and isinstance(text_pair, (list, tuple))
                and text and len(text) == len(text_pair)
                and all(isinstance(t, str) for t in text) and all(isinstance(t, str) for t in text_pair)
            ):  # fmt: skip
                return self._glm4_fast_encode(list(text), batched=True, pairs=list(text_pair), **kwargs)
        if text_pair is None and _OFFSET_ROWS.get() is None and self._glm4_fast_applies(kwargs):
            if _ONE_ENCODE_PLUS and isinstance(text, (list, tuple)) and text and self._glm4_fast_pairs_apply(kwargs):
                rows: Any = _glm4_pair_rows(text)  # pair rows, word rows or (text, pair) rows below
                if rows is not None:
                    return self._glm4_fast_encode(rows[0], batched=True, pairs=rows[1], **kwargs)
            if kwargs.get("is_split_into_words"):
                rows = _glm4_word_rows(text)
                if rows is not None and not kwargs.get("return_offsets_mapping"):
                    return self._glm4_fast_encode(rows[0], batched=rows[1], words=True, **kwargs)
            elif isinstance(text, str):
                return self._glm4_fast_encode([text], batched=False, **kwargs)
            if (
                isinstance(text, (list, tuple))
                and text
                and not kwargs.get("is_split_into_words")
                and all(isinstance(t, str) for t in text)
            ):
                return self._glm4_fast_encode(list(text), batched=True, **kwargs)
        return super()._encode_plus(text=text, text_pair=text_pair, **kwargs)  # not provably equal: the spec

    def encode(
        self,
        text: Any,
        text_pair: Any = None,
        add_special_tokens: bool = True,
        padding: Any = False,
        truncation: Any = None,
        max_length: Optional[int] = None,
        **kwargs: Any,
    ) -> List[int]:
        """``tokenizer.encode``; a plain text without padding or truncation goes straight to tiktoken."""
        encode_text = (
            self._glm4_text_encoder(kwargs.get("split_special_tokens"))
            if isinstance(text, str)
            and text_pair is None
            and padding in (False, None, "do_not_pad")
            and not truncation
            and max_length is None
            and kwargs.keys() <= self._GLM4_ENCODE_FAST_KWARGS
            and kwargs.get("return_tensors") is None
            else None
        )
        if encode_text is not None:
            ids = encode_text(text)
            if add_special_tokens:
                prefix = self.get_prefix_tokens()
                if ids[: len(prefix)] != prefix:
                    ids[:0] = prefix  # in place: tiktoken's fresh list is ours
            if len(ids) > self.model_max_length:
                self._eventual_warn_about_too_long_sequence(ids, None, kwargs.get("verbose", True))
            return ids
        return super().encode(
            text,
            text_pair=text_pair,
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            **kwargs,
        )

    _GLM4_ENCODE_FAST_KWARGS = _NameSet({"split_special_tokens", "verbose", "return_tensors", "stride"})

    def _batch_encode_plus(self, batch_text_or_text_pairs: Any, **kwargs: Any):
        # transformers 4.x batch path (5.x has no _batch_encode_plus and never calls this).
        texts = batch_text_or_text_pairs
        if isinstance(texts, (list, tuple)) and texts and self._glm4_fast_pairs_apply(kwargs):
            rows: Any = _glm4_pair_rows(texts)  # pair rows, word rows or (text, pair) rows below
            if rows is not None:
                return self._glm4_fast_encode(rows[0], batched=True, pairs=rows[1], **kwargs)
        if kwargs.get("is_split_into_words") and not kwargs.get("return_offsets_mapping"):
            rows = _glm4_word_rows(texts, batch_only=True)
            if rows is not None and self._glm4_fast_applies(kwargs):
                return self._glm4_fast_encode(rows[0], batched=True, words=True, **kwargs)
        if (
            isinstance(texts, (list, tuple))
            and texts
            and all(isinstance(t, str) for t in texts)
            and not kwargs.get("is_split_into_words")
            and self._glm4_fast_applies(kwargs)
        ):
            return self._glm4_fast_encode(list(texts), batched=True, **kwargs)
        return super()._batch_encode_plus(batch_text_or_text_pairs, **kwargs)  # type: ignore[misc]  # 4.x only (5.x's stubs have no _batch_encode_plus); not provably equal: the spec

    _GLM4_FAST_KWARGS = _NameSet(
        {
            "add_special_tokens", "padding_strategy", "truncation_strategy", "max_length", "stride",
            "is_split_into_words", "pad_to_multiple_of", "padding_side", "return_tensors",
            "return_token_type_ids", "return_attention_mask", "return_overflowing_tokens",
            "return_special_tokens_mask", "return_offsets_mapping", "return_length", "verbose",
            "split_special_tokens",
        }
    )  # fmt: skip

    def _glm4_fast_pairs_apply(self, kwargs: Dict[str, Any]) -> bool:
        """Pairs take the fast path with special tokens added, no truncation, no special-tokens mask or offsets."""
        return (
            kwargs.get("add_special_tokens", True)
            and not kwargs.get("is_split_into_words")
            and not kwargs.get("return_special_tokens_mask")
            and not kwargs.get("return_offsets_mapping")
            and TruncationStrategy(kwargs.get("truncation_strategy", "do_not_truncate"))
            == TruncationStrategy.DO_NOT_TRUNCATE
            and self._glm4_fast_applies(kwargs)
        )

    def _glm4_fast_applies(self, kwargs: Dict[str, Any]) -> bool:
        """The fast path covers plain texts with every option of __call__ except overflow and pairs."""
        if self._glm4_text_encoder(kwargs.get("split_special_tokens")) is None:
            return False  # switched off, a custom _tokenize, do_lower_case, or added tokens tiktoken can't split
        if not self._GLM4_FAST_KWARGS.issuperset(kwargs) or not self._glm4_pads_by_these_rules():
            return False  # an option it does not cover, or a _pad of someone else's (transformers calls it)
        if kwargs.get("return_overflowing_tokens"):
            return False
        if TruncationStrategy(kwargs.get("truncation_strategy", "do_not_truncate")) == TruncationStrategy.ONLY_SECOND:
            return False
        # transformers 4.x refuses this combination; let it say so
        return not (kwargs.get("return_token_type_ids") and not kwargs.get("add_special_tokens", True))

    def _add_tokens(self, new_tokens: Any, special_tokens: bool = False) -> int:
        # Every route that adds tokens or re-adds one with new flags (add_tokens, add_special_tokens, loading) ends
        # here on both transformers lines: the caches of added-token literals compare this state (one assignment).
        try:
            return super()._add_tokens(new_tokens, special_tokens=special_tokens)
        finally:
            _ADDED_STATE[self] = object()

    def _glm4_added_literals(self) -> Optional[Dict[str, int]]:
        """content -> id of the added tokens, when a backend can split them out exactly as transformers does.

        Cached per set of added tokens: rebuilt when transformers' ``_add_tokens`` ran (which also re-adds a
        token with new flags) or the dict of added tokens is another one or has another size. None when an
        added token strips whitespace, is single-word, or overlaps another one (then transformers' own
        splitting is used).
        """
        added = self._added_tokens_decoder
        cached = _ADDED_LITERALS.get(self)
        key = (id(added), len(added), _ADDED_STATE.get(self))  # the state object is held here: never reused
        if cached is not None and cached[0] == key:
            return cached[2]
        signature = tuple(sorted((i, t.content, t.lstrip, t.rstrip, t.single_word) for i, t in added.items()))
        if cached is not None and cached[1] == signature:
            _ADDED_LITERALS[self] = (key, signature, cached[2])
            return cached[2]
        literals: Optional[Dict[str, int]] = None
        contents = [entry[1] for entry in signature]
        plain = not any(entry[2] or entry[3] or entry[4] for entry in signature)
        if plain and len(set(contents)) == len(contents) and all(contents) and not _overlapping(contents):
            literals = {entry[1]: entry[0] for entry in signature}
        _ADDED_LITERALS[self] = (key, signature, literals)
        return literals

    def _glm4_special_encoding(self) -> Optional[tiktoken.Encoding]:
        """A tiktoken encoding that splits out this tokenizer's added tokens exactly as transformers does.

        Built once per set of added tokens. None when ``_glm4_added_literals`` is None or tiktoken
        refuses the vocabulary (then transformers' own splitting is used).
        """
        literals = self._glm4_added_literals()
        cached = _SPECIAL_ENCODINGS.get(self)
        if cached is not None and cached[0] is literals:
            return cached[1]
        encoding: Optional[tiktoken.Encoding] = None
        if literals is not None:
            try:
                encoding = tiktoken.Encoding(
                    name="glm4-with-added-tokens",
                    pat_str=self.tokenizer._pat_str,
                    mergeable_ranks=self.mergeable_ranks,
                    special_tokens=literals,
                )
            except Exception:  # tiktoken refuses some vocabularies (e.g. ids clashing): use the generic path
                encoding = None
        _SPECIAL_ENCODINGS[self] = (literals, encoding)
        return encoding

    def _glm4_backend(self, split_special_tokens: bool = False) -> Optional[GLM4EncoderBackend]:
        """The encoder backend for this tokenizer's vocabulary and added tokens (None: the fast path does
        not apply). Built once per vocabulary, backend and set of added tokens, and kept next to the
        tiktoken encoding, outside the tokenizer (pickles stay small)."""
        name = self.glm4_encoder_name()
        literals = None if split_special_tokens else self._glm4_added_literals()
        if literals is None and not split_special_tokens:
            return None
        encoding = self.tokenizer
        found = _LAST_BACKEND.get(self, {})  # per backend name and split: no signature to build while the same
        last = found.get((name, literals is None))  # literals (one cached dict) and encoding are in use
        if last is not None and last[0] is literals and last[1] is encoding:
            return last[2]
        per_vocab = _BACKENDS.get(encoding)
        if per_vocab is None:
            per_vocab = _BACKENDS.setdefault(encoding, {})
        signature = tuple(sorted(literals.items())) if literals else ()
        backend = per_vocab.get((name, signature))
        if backend is None:
            if name == "tiktoken" and literals and len(literals) > _FEW_LITERALS:
                backend = TiktokenBackend.from_encodings(encoding, None, literals)  # split out by _Literals
            elif name == "tiktoken":
                special = self._glm4_special_encoding() if literals else None
                if literals and special is None:
                    return None
                backend = TiktokenBackend.from_encodings(encoding, special)
            else:
                base = per_vocab.get((name, ()))
                if base is None:
                    base = per_vocab[(name, ())] = FastokensBackend(self.mergeable_ranks, encoding._pat_str, {})
                backend = base.with_added_tokens(literals or {})  # type: ignore[attr-defined]  # a fastokens name's (name, ()) entry is a FastokensBackend
            per_vocab[(name, signature)] = backend
        _LAST_BACKEND[self] = {**found, (name, literals is None): (literals, encoding, backend)}  # one assignment
        return backend

    def _glm4_text_encoder(self, split_special_tokens: Optional[bool]) -> Optional[Callable[[str], List[int]]]:
        """text -> ids without special tokens added: literals of added tokens become their ids unless split.

        None when the fast path does not apply to this tokenizer (switched off, a custom ``_tokenize``,
        ``do_lower_case``, or added tokens the backend cannot split like transformers does).
        """
        if not self.glm4_fast_path or self.do_lower_case or type(self)._tokenize is not _ChatGLM4Vocab._tokenize:
            return None
        if split_special_tokens is None:
            split_special_tokens = self.split_special_tokens
        backend = self._glm4_backend(bool(split_special_tokens))
        return None if backend is None else backend.text_encoder(bool(split_special_tokens))

    def _glm4_call_prefix(self, add_special_tokens: bool) -> Optional[List[int]]:
        """The ids put in front of a text lacking them (None: nothing is added). A patched fast tokenizer that
        reuses this fast path gives its own post-processor's policy here."""
        return self.get_prefix_tokens() if add_special_tokens else None
