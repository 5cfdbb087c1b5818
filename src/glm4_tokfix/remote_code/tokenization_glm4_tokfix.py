# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""The spec: ``GLM4FixMixin`` (prefix, pairs, truncation, decode) and ``ChatGLM4Tokenizer``.

``GLM4FixMixin`` can be laid over any GLM-4 tokenizer class (ours, or upstream's remote-code class) that has
``decoder`` (id -> bytes), ``mergeable_ranks`` (bytes -> id), ``tokenizer`` (a ``tiktoken.Encoding``) and the 14
GLM-4 tokens registered as added tokens. ``ChatGLM4Tokenizer`` is the mixin over ``_ChatGLM4Vocab``: same ids as
upstream for every text. The bundle (this folder) imports only the standard library, ``regex``, ``tiktoken`` and
``transformers`` (``fastokens``, ``numpy``, ``torch`` lazily), so a model folder loads it with
``trust_remote_code=True`` and without glm4-tokfix installed.

What the fix guarantees, on transformers 4.45+ and 5.x:

* ``[gMASK]<sop>`` is added exactly when it is missing. A rendered chat
  template already starts with it and gets no second copy::

      >>> tok("[gMASK]<sop><|user|>\\nhi").input_ids == tok("<|user|>\\nhi").input_ids
      True

  Only one leading copy is ever recognised: a text that itself starts with the
  prefix twice keeps both (user content is never deleted).
* Pairs are ``[gMASK]<sop> A B <|endoftext|>``.
* ``truncation=True, max_length=L`` returns exactly ``L`` tokens and keeps the
  prefix, on either ``truncation_side``.
* ``_pad`` honours ``padding_side`` (call time first, then the tokenizer's),
  pads ``input_ids`` with the pad id, ``attention_mask`` and ``token_type_ids``
  with 0, ``special_tokens_mask`` with 1; given ``position_ids`` are kept and
  padded with 0 (packed rows), absent ones count the real tokens (0..n-1) and
  are 0 on pads. Padding is idempotent.
* ``decode`` is exact around special tokens on both transformers lines, and an
  id outside the vocabulary is a ``ValueError``.
"""

from __future__ import annotations

import inspect
import itertools
import operator
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from transformers.tokenization_utils_base import BatchEncoding, PreTrainedTokenizerBase, TruncationStrategy
from transformers.utils import PaddingStrategy

from .glm4_chat import GLM4ChatMixin
from .glm4_encoders import _disjoint_literals
from .glm4_offsets import _offset_tables, token_char_offsets
from .glm4_padding import GLM4PaddingMixin
from .glm4_rows import GLM4BatchEncoder, _max_length_too_small

# transformers 4.x copies only the files a remote-code module imports itself (not their imports): name
# every bundle module this one needs
from .glm4_spans import _ROLE_LITERAL as _glm4_spans  # noqa: F401
from .glm4_state import _OFFSET_ROWS, _PREFIX_STRIPPED, _SPLIT_SPECIAL, _TRUNCATION_LOG, _Cache
from .glm4_templates import _GENERATION as _glm4_templates  # noqa: F401
from .glm4_tokens import GLM4_SPECIAL_TOKENS, PAIR_SUFFIX_TOKEN, PREFIX_TOKENS, _as_id_list
from .glm4_vocab import _ChatGLM4Vocab

__all__ = ["ChatGLM4Tokenizer", "GLM4FixMixin", "GLM4_SPEC_HOOKS", "glm4_fixed_class", "glm4_host_methods"]


# tiktoken encoding -> ((added-tokens key), (chars started per id, begins-inside-a-character per id))
_OFFSET_TABLES: _Cache[Any, Any] = _Cache()


# tokenizer -> (its added-token literals, those _glm4_mask_literals counts or None), see there
_MASK_LITERALS: _Cache[Any, Tuple[Any, Optional[Dict[str, int]]]] = _Cache()


# class -> (names, defaults) of transformers' prepare_for_model arguments, see _glm4_prepare_params
_PREPARE_PARAMS: _Cache[type, Tuple[Tuple[str, ...], Dict[str, Any]]] = _Cache()


class GLM4FixMixin(GLM4ChatMixin, GLM4BatchEncoder, GLM4PaddingMixin):
    """The GLM-4 batch-encoding fix, as methods to lay over a tokenizer class.

    Put it first in the bases (``class Fixed(GLM4FixMixin, UpstreamTokenizer)``).
    It relies only on transformers' slow-tokenizer API plus the attributes every
    GLM-4 tokenizer revision has: ``decoder`` (id -> bytes) and
    ``mergeable_ranks`` (bytes -> id). Its methods are the specification of the
    fix; it inherits the padding rules (``GLM4PaddingMixin``), the fast path
    that gives the same output faster (``GLM4BatchEncoder``) and the chat
    template's training options (``GLM4ChatMixin``).
    """

    # ----------------------------------------------------------------- ids
    def _glm4_token_id(self, token: str) -> int:
        """The id of one of the 14 GLM-4 added tokens; ValueError if it is not registered."""
        try:  # one lookup: this runs for every encode() call
            return self._added_tokens_encoder[token]
        except KeyError:
            raise ValueError(
                f"token {token!r} is not registered on this tokenizer; a GLM-4 tokenizer needs the 14 "
                f"added tokens of its tokenizer_config.json ({', '.join(GLM4_SPECIAL_TOKENS[:5])}, ...)"
            ) from None

    def get_prefix_tokens(self) -> List[int]:
        """The ids of ``[gMASK]<sop>``, the prefix every GLM-4 prompt starts with."""
        return [self._glm4_token_id(t) for t in PREFIX_TOKENS]

    def get_command(self, token: str) -> int:
        """The id of a GLM-4 added token such as ``"<|user|>"`` (ValueError if unknown)."""
        return self._glm4_token_id(token)

    def _glm4_has_prefix(self, ids: Sequence[int], prefix: Sequence[int]) -> bool:
        n = len(prefix)
        return len(ids) >= n and list(ids[:n]) == list(prefix)

    def _convert_token_to_id(self, token: Union[str, bytes]) -> int:
        if type(token) is bytes:  # the common case first: a BPE token straight from _tokenize
            rank = self.mergeable_ranks.get(token)
            if rank is not None:
                return rank
        if isinstance(token, str):
            if token in self._added_tokens_encoder:
                return self._added_tokens_encoder[token]
            key = token.encode("utf-8")
        elif isinstance(token, (bytes, bytearray)):
            key = bytes(token)
        else:
            raise TypeError(f"a token is str or bytes, got {type(token).__name__} ({token!r})")
        rank = self.mergeable_ranks.get(key)
        if rank is None:
            raise ValueError(f"token {token!r} is not in the GLM-4 vocabulary")
        return rank

    def convert_tokens_to_ids(self, tokens: Any) -> Any:
        """Token(s) to id(s). One ``bytes`` token -- what ``tokenize`` and ``convert_ids_to_tokens`` give -- is
        one token (not a sequence of ints), so ``convert_tokens_to_ids(convert_ids_to_tokens(i)) == i``."""
        if isinstance(tokens, (bytes, bytearray)):
            return self._convert_token_to_id(bytes(tokens))
        return super().convert_tokens_to_ids(tokens)

    def _convert_id_to_token(self, index: int) -> Union[str, bytes]:  # type: ignore[override]  # upstream's tokens: bytes (ranks) or str (added tokens)
        token = self.decoder.get(index)
        if token is None:
            added = self._added_tokens_decoder.get(index)
            if added is not None:
                return added.content
            raise ValueError(f"token id {index!r} is outside the vocabulary (0..{len(self) - 1})")
        return token

    # -------------------------------------------------------------- offsets
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
        starts_chars, begins_inside, inside_ids = tables
        ends = list(itertools.accumulate(map(starts_chars.__getitem__, ids)))
        if inside_ids.isdisjoint(ids):  # the common case: every token starts where the previous one ended
            return list(zip(itertools.chain((0,), ends), ends))
        starts = map(operator.sub, itertools.chain((0,), ends), map(begins_inside.__getitem__, ids))
        return list(zip(starts, ends))

    def _glm4_mask_literals(self) -> Optional[Dict[str, int]]:
        literals = self._glm4_added_literals()  # None: stripping, single-word or overlapping tokens
        cached = _MASK_LITERALS.get(self)
        if cached is not None and cached[0] is literals:  # decided once per set of literals (one cached dict)
            return cached[1]
        chosen = literals
        if (
            literals is None
            or any(index in self.decoder for index in literals.values())
            or not _disjoint_literals(tuple(sorted(literals)))
        ):
            chosen = None
        _MASK_LITERALS[self] = (literals, chosen)
        return chosen

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

    def _glm4_prepare_with_offsets(
        self, ids: List[int], pair_ids: Optional[List[int]], row: List[Any], kwargs: Dict[str, Any]
    ):
        """``prepare_for_model`` for one row of ``_glm4_generic_offsets``: ids, then offsets, then padding."""
        from transformers.tokenization_utils_base import BatchEncoding

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
            encoded: Any = dict(self._glm4_prepare(ids, pair_ids, padding=False, return_attention_mask=False, **kwargs))
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

    # ------------------------------------------------------ special tokens
    def _glm4_special_ids(self) -> set:
        """``all_special_ids`` and the ids of the 14 GLM-4 tokens.

        ``add_special_tokens({"additional_special_tokens": [...]})`` replaces the list that holds the 14, but
        they stay special: ``skip_special_tokens=True`` drops them and the special-tokens mask marks them.
        """
        ids = set(self.all_special_ids)
        encoder = self._added_tokens_encoder
        ids.update(encoder[t] for t in GLM4_SPECIAL_TOKENS if t in encoder)
        return ids

    def build_inputs_with_special_tokens(
        self, token_ids_0: List[int], token_ids_1: Optional[List[int]] = None
    ) -> List[int]:
        """Add ``[gMASK]<sop>`` in front, unless ``token_ids_0`` already starts with it.

        Idempotent: applied to its own output it changes nothing. Pairs become
        ``[gMASK]<sop> A B <|endoftext|>``. Empty lists are fine::

            >>> tok.build_inputs_with_special_tokens([])  # [gMASK]<sop>
            [151331, 151333]
        """
        prefix = self.get_prefix_tokens()
        first = list(token_ids_0)
        if _PREFIX_STRIPPED.get() or not self._glm4_has_prefix(first, prefix):
            first = prefix + first
        if token_ids_1 is None:
            return first
        return first + list(token_ids_1) + [self._glm4_token_id(PAIR_SUFFIX_TOKEN)]

    if not hasattr(PreTrainedTokenizerBase, "batch_encode_plus"):  # transformers 5 removed it

        def batch_encode_plus(
            self, batch_text_or_text_pairs: Any, add_special_tokens: bool = True, padding: Any = False,
            truncation: Any = None, max_length: Optional[int] = None, stride: int = 0,
            is_split_into_words: bool = False, pad_to_multiple_of: Optional[int] = None, **kwargs: Any,
        ) -> BatchEncoding:  # fmt: skip
            """transformers 4.x's ``batch_encode_plus`` (its parameters in its order), which transformers 5
            removed: ``self(batch, ...)``, the same meaning. A class laid under the fix may call it (GLM-4V-9B's
            ``apply_chat_template`` does, with rows of ids and ``is_split_into_words=True``)."""
            if not isinstance(batch_text_or_text_pairs, (list, tuple)):
                got = type(batch_text_or_text_pairs).__name__
                raise TypeError(f"batch_encode_plus takes a list of texts or text pairs, got {got}")
            return self(
                list(batch_text_or_text_pairs), add_special_tokens=add_special_tokens, padding=padding,
                truncation=truncation, max_length=max_length, stride=stride, is_split_into_words=is_split_into_words,
                pad_to_multiple_of=pad_to_multiple_of, **kwargs,
            )  # fmt: skip

    def _glm4_adds_prefix(self, token_ids_0: Sequence[int]) -> bool:
        return _PREFIX_STRIPPED.get() or not self._glm4_has_prefix(token_ids_0, self.get_prefix_tokens())

    def get_special_tokens_mask(
        self,
        token_ids_0: List[int],
        token_ids_1: Optional[List[int]] = None,
        already_has_special_tokens: bool = False,
    ) -> List[int]:
        """1 where ``build_inputs_with_special_tokens`` puts a special token, 0 on the text."""
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError("token_ids_1 must be None when already_has_special_tokens=True")
            special = self._glm4_special_ids()
            return [1 if i in special else 0 for i in token_ids_0]
        if self._glm4_adds_prefix(token_ids_0):
            mask = [1, 1] + [0] * len(token_ids_0)
        else:
            mask = [1, 1] + [0] * (len(token_ids_0) - 2)
        if token_ids_1 is not None:
            mask += [0] * len(token_ids_1) + [1]
        return mask

    def create_token_type_ids_from_sequences(
        self, token_ids_0: List[int], token_ids_1: Optional[List[int]] = None
    ) -> List[int]:
        """GLM-4 has no segment embeddings: all zeros, as long as the built sequence."""
        n = len(token_ids_0) + (2 if self._glm4_adds_prefix(token_ids_0) else 0)
        if token_ids_1 is not None:
            n += len(token_ids_1) + 1
        return [0] * n

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 3 if pair else 2

    def _get_padding_truncation_strategies(
        self, padding: Any = False, truncation: Any = None, max_length: Any = None, *args: Any, **kwargs: Any
    ):
        """transformers' argument check, plus: ``max_length`` is an int (TypeError naming it otherwise), and
        truncating to ``max_length`` 0 or below is the ValueError a too-small ``max_length`` gets (transformers
        takes 0 for "no limit" and returned the whole text)."""
        if max_length is not None:
            if isinstance(max_length, bool) or not hasattr(type(max_length), "__index__"):
                raise TypeError(f"max_length must be an int or None, got {type(max_length).__name__} ({max_length!r})")
            max_length = max_length.__index__()  # numpy and torch integers become a plain int
        result = super()._get_padding_truncation_strategies(padding, truncation, max_length, *args, **kwargs)
        if result[1] != TruncationStrategy.DO_NOT_TRUNCATE and result[2] is not None and result[2] < 1:
            raise ValueError(f"max_length is too small: truncation needs max_length >= 1, got {result[2]}")
        return result

    def tokenize(self, text: Any, **kwargs: Any) -> List[Union[str, bytes]]:  # type: ignore[override]  # bytes tokens as above; pair/add_special_tokens go through **kwargs
        split = _SPLIT_SPECIAL.get()
        if split is not None:
            kwargs.setdefault("split_special_tokens", split)
        return super().tokenize(text, **kwargs)  # type: ignore[return-value]  # transformers' list[str] holds bytes tokens here

    @classmethod
    def _glm4_prepare_params(cls) -> Tuple[Tuple[str, ...], Dict[str, Any]]:
        """The names of transformers' ``prepare_for_model`` arguments after ``pair_ids``, and their defaults."""
        cached = _PREPARE_PARAMS.get(cls)
        if cached is None:
            params = list(inspect.signature(super().prepare_for_model).parameters.values())[3:]
            names = tuple(p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD)
            defaults = {p.name: p.default for p in params if p.default is not p.empty}
            cached = _PREPARE_PARAMS[cls] = (names, defaults)
        return cached

    def prepare_for_model(self, ids: List[int], pair_ids: Optional[List[int]] = None, *args: Any, **kwargs: Any):
        """transformers' ``prepare_for_model`` with an idempotent prefix, exact pairs and overflow.

        When special tokens are added and ``ids`` already starts with
        ``[gMASK]<sop>``, that copy is taken off before truncation and put back
        by ``build_inputs_with_special_tokens``, so length accounting and
        ``truncation_side`` see the prefix exactly once (``_glm4_prepare``); rows
        of ``_glm4_generic_offsets`` also get their offsets.
        """
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
        return self._glm4_prepare(ids, pair_ids, *args, **kwargs)

    def _glm4_prepare(self, ids: List[int], pair_ids: Optional[List[int]] = None, *args: Any, **kwargs: Any):
        """``prepare_for_model`` with an idempotent prefix, exact pairs and overflow.

        A pair truncated to fewer than its 3 special tokens is a ValueError. With
        ``return_overflowing_tokens=True`` the result always holds ``overflowing_tokens`` (``[]`` when nothing
        was cut) and ``num_truncated_tokens`` (0 then), also as tensors, on both transformers lines, so a
        batch's rows line up with single calls.
        """
        names, defaults = self._glm4_prepare_params()
        params = {**defaults, **dict(zip(names, args)), **kwargs}
        add_special_tokens = params["add_special_tokens"]
        ids = list(ids)
        overflow = params["return_overflowing_tokens"]
        truncating = False
        if overflow or (pair_ids is not None and add_special_tokens):
            _, strategy, max_length, _ = self._get_padding_truncation_strategies(
                padding=params["padding"], truncation=params["truncation"], max_length=params["max_length"],
                pad_to_multiple_of=params["pad_to_multiple_of"], verbose=False,
            )  # fmt: skip
            truncating = strategy != TruncationStrategy.DO_NOT_TRUNCATE and max_length is not None
        if truncating and pair_ids is not None and add_special_tokens and max_length < 3:
            raise _max_length_too_small(3, len(ids) + len(pair_ids) + 3 - max_length, len(ids) + len(pair_ids))
        prefix = self.get_prefix_tokens() if add_special_tokens else []
        if prefix and self._glm4_has_prefix(ids, prefix):
            ids = ids[len(prefix) :]
        if overflow:  # build lists here and make tensors below, so nothing is dropped on the way
            tensors, batch_axis = params["return_tensors"], params["prepend_batch_axis"]
            params.update(return_tensors=None, prepend_batch_axis=False, return_overflowing_tokens=truncating)
        token = _PREFIX_STRIPPED.set(bool(prefix))
        try:
            encoded = super().prepare_for_model(ids, pair_ids, **params)
        finally:
            _PREFIX_STRIPPED.reset(token)
        if not overflow:
            return encoded
        from transformers.tokenization_utils_base import BatchEncoding

        total = len(ids) + len(pair_ids or ()) + (self.num_special_tokens_to_add(pair_ids is not None) if prefix else 0)
        data = dict(encoded)
        data["overflowing_tokens"] = list(data.get("overflowing_tokens", []))
        data["num_truncated_tokens"] = max(0, total - max_length) if truncating else 0
        return BatchEncoding(data, tensor_type=tensors, prepend_batch_axis=batch_axis)

    def truncate_sequences(  # type: ignore[override]  # None for a missing pair, as transformers' own returns
        self,
        ids: List[int],
        pair_ids: Optional[List[int]] = None,
        num_tokens_to_remove: int = 0,
        truncation_strategy: Union[str, TruncationStrategy] = "longest_first",
        stride: int = 0,
    ) -> Tuple[List[int], Optional[List[int]], List[int]]:
        """Exact truncation of a single sequence; pairs as in transformers.

        transformers 4.x silently skips truncation when every text token has to
        go; here that cuts to the prefix alone, and a ``max_length`` too small
        for the special tokens themselves is a ValueError.
        """
        result = self._glm4_truncate(ids, pair_ids, num_tokens_to_remove, truncation_strategy, stride)
        log = _TRUNCATION_LOG.get()
        if log is not None:
            log.append((len(result[0]), len(result[1]) if result[1] is not None else 0))
        return result

    def _glm4_truncate(
        self,
        ids: List[int],
        pair_ids: Optional[List[int]],
        num_tokens_to_remove: int,
        truncation_strategy: Union[str, TruncationStrategy],
        stride: int,
    ) -> Tuple[List[int], Optional[List[int]], List[int]]:
        strategy = TruncationStrategy(truncation_strategy)
        single = pair_ids is None and strategy in (TruncationStrategy.ONLY_FIRST, TruncationStrategy.LONGEST_FIRST)
        if num_tokens_to_remove > 0 and pair_ids is not None:
            return self._glm4_truncate_pair(ids, pair_ids, num_tokens_to_remove, strategy, stride)
        if num_tokens_to_remove <= 0 or not single:
            return super().truncate_sequences(ids, pair_ids, num_tokens_to_remove, truncation_strategy, stride)
        if num_tokens_to_remove > len(ids):
            raise _max_length_too_small(self.num_special_tokens_to_add(), num_tokens_to_remove, len(ids))
        if self.truncation_side not in ("left", "right"):
            raise ValueError(f"truncation_side must be 'left' or 'right', got {self.truncation_side!r}")
        window = min(len(ids), stride + num_tokens_to_remove)
        if self.truncation_side == "left":
            return ids[num_tokens_to_remove:], None, ids[:window]
        return ids[: len(ids) - num_tokens_to_remove], None, ids[len(ids) - window :]

    def _glm4_truncate_pair(
        self, ids: List[int], pair_ids: List[int], remove: int, strategy: TruncationStrategy, stride: int
    ) -> Tuple[List[int], Optional[List[int]], List[int]]:
        """A pair's truncation, the same on both transformers lines and as on the fast tokenizer.

        ``only_first``/``only_second`` that would have to remove the whole text is a ``ValueError`` (4.x logged
        an error and kept the pair too long; 5.x deleted the text). ``longest_first`` is transformers' own, but
        an empty second text stays a (empty) second text: 5.x turned it into no second text with
        ``truncation_side="left"``, losing the pair's ``<|endoftext|>``.
        """
        if strategy in (TruncationStrategy.ONLY_FIRST, TruncationStrategy.ONLY_SECOND):
            which, target = ("first", ids) if strategy == TruncationStrategy.ONLY_FIRST else ("second", pair_ids)
            if remove >= len(target):
                raise ValueError(
                    f"truncation={strategy.value!r} cannot fit this pair: it would have to remove {remove} tokens "
                    f"from the {which} text, which has {len(target)} (the texts have {len(ids)} + {len(pair_ids)} "
                    f"tokens without special tokens); nothing is dropped silently -- use a larger max_length or "
                    f"truncation='longest_first'"
                )
        first, second, overflow = super().truncate_sequences(ids, pair_ids, remove, strategy, stride)
        return first, ([] if second is None else second), overflow

    # -------------------------------------------------------------- saving
    def save_chat_templates(self, save_directory: Any, tokenizer_config: Dict[str, Any], *args: Any, **kwargs: Any):
        """transformers' step of ``save_pretrained`` that finishes ``tokenizer_config.json`` (both lines call
        it just before writing): here the config is also made to load on either transformers line.

        transformers 5 writes the added special tokens as an ``extra_special_tokens`` list, which 4.x cannot
        read (it expects a dict of named tokens and fails on ``.keys()``); both lines read the list as
        ``additional_special_tokens``, so it is written under that name.
        """
        extra = tokenizer_config.get("extra_special_tokens")
        if isinstance(extra, (list, tuple)):
            tokenizer_config = dict(tokenizer_config)
            del tokenizer_config["extra_special_tokens"]
            tokenizer_config["additional_special_tokens"] = list(extra)
        return super().save_chat_templates(save_directory, tokenizer_config, *args, **kwargs)

    # -------------------------------------------------------------- decoding
    def convert_tokens_to_string(self, tokens: List[Union[str, bytes]]) -> str:  # type: ignore[override]  # bytes tokens as above
        """Join tokens: runs of byte tokens are UTF-8 decoded together, str tokens kept as they are."""
        parts: List[str] = []
        buffer = bytearray()
        for token in tokens:
            if isinstance(token, (bytes, bytearray)):
                buffer += token
            elif isinstance(token, str):
                if buffer:
                    parts.append(buffer.decode("utf-8", errors="replace"))
                    buffer = bytearray()
                parts.append(token)
            else:
                raise TypeError(f"a token is str or bytes, got {type(token).__name__} ({token!r})")
        if buffer:
            parts.append(buffer.decode("utf-8", errors="replace"))
        return "".join(parts)

    def _decode(
        self,
        token_ids: Union[int, List[int]],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: Optional[bool] = None,
        **kwargs: Any,
    ) -> str:
        """Exact decoding: ``decode(encode(s, add_special_tokens=False)) == s``.

        Special tokens come back as their literal text (no spaces are inserted
        around them) unless ``skip_special_tokens=True`` drops them.
        """
        ids = _as_id_list(token_ids, "token_ids")
        skip = self._glm4_special_ids() if skip_special_tokens else ()
        added = self._added_tokens_decoder
        decoder = self.decoder
        parts: List[str] = []
        buffer = bytearray()
        for index in ids:
            if index in skip:
                continue
            piece = decoder.get(index)
            if piece is not None:
                buffer += piece
                continue
            token = added.get(index)
            if token is None:
                raise ValueError(f"token id {index} is outside the vocabulary (0..{len(self) - 1})")
            if buffer:
                parts.append(buffer.decode("utf-8", errors="replace"))
                buffer = bytearray()
            parts.append(token.content)
        if buffer:
            parts.append(buffer.decode("utf-8", errors="replace"))
        text = "".join(parts)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        if clean_up_tokenization_spaces:
            text = self.clean_up_tokenization(text)
        return text


#: What the fix lays over a host class even where the host defines it itself: the spec hooks (special tokens,
#: truncation, padding, decode) and the vocabulary lookups they rest on. Any other method the host's own code
#: defines -- GLM-4V-9B's ``apply_chat_template`` with its images, say -- stays the host's.
GLM4_SPEC_HOOKS = frozenset({
    "build_inputs_with_special_tokens", "get_special_tokens_mask", "create_token_type_ids_from_sequences",
    "num_special_tokens_to_add", "prepare_for_model", "truncate_sequences", "_get_padding_truncation_strategies",
    "_pad", "pad", "_decode", "convert_tokens_to_string", "_convert_token_to_id", "_convert_id_to_token",
    "convert_tokens_to_ids", "get_prefix_tokens", "get_command", "batch_encode_plus",
})  # fmt: skip


def glm4_host_methods(host: type, mixin: type) -> Dict[str, Any]:
    """The methods of ``host``'s own code (its classes outside transformers) that ``mixin`` also defines and
    that are not spec hooks (``GLM4_SPEC_HOOKS``): name -> the host's attribute, to keep over the fix."""
    own = [k for k in host.__mro__[:-1] if (k.__module__ or "").split(".")[0] != "transformers"]
    defined = {name for k in mixin.__mro__[:-1] for name in vars(k) if not name.startswith("__")}
    kept = {}
    for name in sorted(defined - GLM4_SPEC_HOOKS):
        if any(name in vars(k) for k in own):
            kept[name] = inspect.getattr_static(host, name)
    return kept


def glm4_fixed_class(host: type, mixin: type = GLM4FixMixin, namespace: Optional[Dict[str, Any]] = None,
                     first: Tuple[type, ...] = ()) -> type:  # fmt: skip
    """``class Fixed(*first, mixin, host)``, named as ``host``: the fix laid over a tokenizer's own class.

    The fix replaces the spec hooks; every other method ``host``'s own code defines stays the host's
    (``glm4_host_methods``), so GLM-4V-9B's image chat keeps working. ``namespace`` adds attributes.
    """
    body = {"__module__": host.__module__, "__qualname__": host.__qualname__, "__doc__": host.__doc__}
    body.update(glm4_host_methods(host, mixin))
    body.update(namespace or {})
    return type(host.__name__, (*first, mixin, host), body)


class ChatGLM4Tokenizer(GLM4FixMixin, _ChatGLM4Vocab):
    """GLM-4 tokenizer with idempotent ``[gMASK]<sop>``, exact padding and decoding.

    Load it from a glm-4-9b-chat folder::

        tok = ChatGLM4Tokenizer.from_pretrained("path/to/glm-4-9b-chat")
        batch = tok([tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
                     for m in chats], padding=True, return_tensors="pt")

    Every row of ``batch`` holds one prefix, the pads sit together on
    ``padding_side`` with attention 0 and position 0, and the real tokens of
    row ``i`` equal ``tok(texts[i])``. ``save_pretrained`` writes this module (and
    the bundle modules it imports) next to the vocabulary so the folder loads the fixed class through
    ``AutoTokenizer.from_pretrained(folder, trust_remote_code=True)``.
    """

    _auto_class = "AutoTokenizer"
