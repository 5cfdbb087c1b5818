# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""The spec: GLM-4's rules written once, as transformers' documented tokenizer hooks.

This module is the oracle of the fix. ``GLM4SpecMixin`` laid over a GLM-4 vocabulary class (ours, or upstream's
remote-code class) is, on its own, a complete and exact tokenizer: transformers' generic encoding path calls these
hooks and nothing else of the fix. Everything faster (``glm4_rows``, ``glm4_padding``'s batched ``pad``, the fast
tokenizer's route) is an accelerator that must give the same answer and hands a call it cannot prove equal back to
transformers' generic path, that is, to these hooks (``tests/accelerator`` holds them equal, option by option).

The rules, each in one place:

* **the prefix** -- ``build_inputs_with_special_tokens``: ``[gMASK]<sop>`` is added exactly when the ids do not
  already start with it, so a rendered chat template gets no second copy; pairs are
  ``[gMASK]<sop> A B <|endoftext|>``. ``get_special_tokens_mask``, ``create_token_type_ids_from_sequences`` and
  ``num_special_tokens_to_add`` follow it. Only one leading copy is ever recognised: a text that starts with the
  prefix twice keeps both (user content is never deleted).
* **padding** -- ``_pad`` (``GLM4PaddingRules``, shared with the fast tokenizer): pads go on ``padding_side`` (call
  time first, then the tokenizer's) and only pads get attention 0; ``input_ids`` take the pad id, ``token_type_ids``
  the pad type id, ``special_tokens_mask`` 1, offsets ``(0, 0)``; given ``position_ids`` are kept (packed rows) and
  padded with 0, absent ones are made (0..n-1 over the real tokens). Padding is idempotent.
* **truncation** -- ``prepare_for_model`` and ``truncate_sequences``: ``truncation=True, max_length=L`` returns
  exactly ``L`` tokens with the prefix counted once, on either ``truncation_side``; a ``max_length`` too small for
  the special tokens is a ``ValueError``.
* **decoding** -- ``_decode``: ``decode(encode(s, add_special_tokens=False)) == s``; special tokens come back as
  their text, an id outside the vocabulary is a ``ValueError``.

It relies only on transformers' slow-tokenizer API plus what every GLM-4 tokenizer revision has: ``decoder``
(id -> bytes), ``mergeable_ranks`` (bytes -> id) and the 14 GLM-4 tokens registered as added tokens.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from transformers import BatchEncoding
from transformers.tokenization_utils_base import TruncationStrategy
from transformers.utils import PaddingStrategy

from .glm4_state import _ONE_ENCODE_PLUS, _PREFIX_STRIPPED, _SPLIT_SPECIAL, _Cache, _Host, _SlowHost
from .glm4_tokens import GLM4_SPECIAL_TOKENS, PAIR_SUFFIX_TOKEN, PREFIX_TEXT, PREFIX_TOKENS, _as_id_list

__all__ = ["GLM4PaddingRules", "GLM4SpecMixin"]


#: the per-token keys ``_pad`` pads as given (with their own fill; given position_ids with 0, as upstream's ``_pad``:
#: packed rows restart them at each document); attention_mask it computes, and position_ids when absent
_PADDED_AS_GIVEN = ("token_type_ids", "special_tokens_mask", "offset_mapping", "position_ids")


# class -> (names, defaults) of transformers' prepare_for_model arguments, see GLM4SpecMixin._glm4_prepare_params
_PREPARE_PARAMS: _Cache[type, Tuple[Tuple[str, ...], Dict[str, Any]]] = _Cache()


class GLM4PaddingRules(_Host):
    """GLM-4's padding rules for one encoding, ``_pad``; shared by the slow and the fast tokenizer.

    Uses only transformers' generic tokenizer attributes (``model_input_names``, ``pad_token_id``,
    ``pad_token_type_id``, ``padding_side``). transformers' ``pad()`` calls ``_pad`` for each row.
    """

    def _glm4_padding_side(self, padding_side: Optional[str], pad_to_multiple_of: Optional[int]) -> str:
        """The side to pad on (call time first, then the tokenizer's); ValueError on bad arguments."""
        side = padding_side if padding_side is not None else self.padding_side
        if side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")
        if pad_to_multiple_of is not None and (
            isinstance(pad_to_multiple_of, bool) or not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of <= 0
        ):
            raise ValueError(f"pad_to_multiple_of must be a positive integer, got {pad_to_multiple_of!r}")
        return side

    def _pad(  # type: ignore[override]  # takes a str padding_strategy too; the base's annotation differs across 4.x/5.x
        self,
        encoded_inputs: Dict[str, Any],
        max_length: Optional[int] = None,
        padding_strategy: Union[PaddingStrategy, str] = PaddingStrategy.DO_NOT_PAD,
        pad_to_multiple_of: Optional[int] = None,
        padding_side: Optional[str] = None,
        return_attention_mask: Optional[bool] = None,
        **kwargs: Any,
    ) -> Dict[str, Any]:
        """Pad one encoding on the requested side; exact and idempotent.

        ``padding_side`` given here wins over ``self.padding_side``. Zeros
        already in ``attention_mask`` are kept. Given ``position_ids`` are kept
        (packed rows restart them at each document) and padded with 0; absent,
        they are made when the tokenizer takes them (0..n-1 over the mask's real
        tokens, 0 on pads), so padding a padded encoding again changes nothing
        but the new pads.
        With ``return_attention_mask=False`` no ``attention_mask`` is returned.
        Returns a new dict; the encoding passed in is left as it was.
        """
        main = self.model_input_names[0]
        if main not in encoded_inputs:
            raise ValueError(f"cannot pad an encoding without {main!r}; it has {sorted(encoded_inputs)}")
        encoded_inputs = dict(encoded_inputs)  # never mutate the caller's encoding
        ids = encoded_inputs[main]
        n = len(ids)
        strategy = PaddingStrategy(padding_strategy)
        side = self._glm4_padding_side(padding_side, pad_to_multiple_of)
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names

        mask = encoded_inputs.get("attention_mask")
        mask = [1] * n if mask is None else list(mask)
        if len(mask) != n:
            raise ValueError(f"{main} has {n} tokens but attention_mask has {len(mask)}")
        for key in _PADDED_AS_GIVEN:
            if key in encoded_inputs and len(encoded_inputs[key]) != n:
                raise ValueError(f"{main} has {n} tokens but {key} has {len(encoded_inputs[key])}")

        difference = 0
        if strategy != PaddingStrategy.DO_NOT_PAD:
            target = n if strategy == PaddingStrategy.LONGEST else max_length
            if target is None:
                raise ValueError("padding='max_length' needs max_length (or a finite model_max_length)")
            if pad_to_multiple_of is not None and target % pad_to_multiple_of:
                target = (target // pad_to_multiple_of + 1) * pad_to_multiple_of
            difference = max(0, target - n)
        if difference and self.pad_token_id is None:
            raise ValueError("cannot pad: the tokenizer has no pad_token (GLM-4 uses <|endoftext|>)")

        def padded(values: Iterable[Any], fill: Any) -> List[Any]:
            values = list(values)
            if not difference:
                return values
            if side == "left":
                return [fill] * difference + values
            return values + [fill] * difference

        encoded_inputs[main] = padded(ids, self.pad_token_id)
        full_mask = padded(mask, 0)
        if "token_type_ids" in encoded_inputs:
            encoded_inputs["token_type_ids"] = padded(encoded_inputs["token_type_ids"], self.pad_token_type_id)
        if "special_tokens_mask" in encoded_inputs:
            encoded_inputs["special_tokens_mask"] = padded(encoded_inputs["special_tokens_mask"], 1)
        if "offset_mapping" in encoded_inputs:  # pads map to no characters
            encoded_inputs["offset_mapping"] = padded(encoded_inputs["offset_mapping"], (0, 0))
        if return_attention_mask:
            encoded_inputs["attention_mask"] = full_mask
        else:
            encoded_inputs.pop("attention_mask", None)
        if "position_ids" in encoded_inputs:  # given: kept (packed documents), pads get 0
            encoded_inputs["position_ids"] = padded(encoded_inputs["position_ids"], 0)
        elif "position_ids" in self.model_input_names:
            # the common case: every given token is real
            encoded_inputs["position_ids"] = padded(range(n), 0) if 0 not in mask else _count_real(full_mask)
        return encoded_inputs


class GLM4SpecMixin(GLM4PaddingRules, _SlowHost):
    """The GLM-4 fix's rules as transformers' hooks, to lay over a GLM-4 vocabulary class (put it first in the bases).

    ``class Spec(GLM4SpecMixin, UpstreamTokenizer)`` is already exact on transformers' generic path; the fixed class
    adds the accelerator, offsets and chat features over it (``GLM4FixMixin``).
    """

    # ------------------------------------------------------------ the prefix and the special tokens
    def get_prefix_tokens(self) -> List[int]:
        """The ids of ``[gMASK]<sop>``, the prefix every GLM-4 prompt starts with."""
        return [self._glm4_token_id(t) for t in PREFIX_TOKENS]

    def get_command(self, token: str) -> int:
        """The id of a GLM-4 added token such as ``"<|user|>"`` (ValueError if unknown)."""
        return self._glm4_token_id(token)

    def _glm4_token_id(self, token: str) -> int:
        """The id of one of the 14 GLM-4 added tokens; ValueError if it is not registered."""
        try:  # one lookup: this runs for every encode() call
            return self._added_tokens_encoder[token]
        except KeyError:
            raise ValueError(
                f"token {token!r} is not registered on this tokenizer; a GLM-4 tokenizer needs the 14 "
                f"added tokens of its tokenizer_config.json ({', '.join(GLM4_SPECIAL_TOKENS[:5])}, ...)"
            ) from None

    def _glm4_has_prefix(self, ids: Sequence[int], prefix: Sequence[int]) -> bool:
        n = len(prefix)
        return len(ids) >= n and list(ids[:n]) == list(prefix)

    def _glm4_adds_prefix(self, token_ids_0: Sequence[int]) -> bool:
        """The prefix rule: True when ``[gMASK]<sop>`` goes in front of these ids (they lack it, or
        ``prepare_for_model`` already took their own copy off)."""
        return _PREFIX_STRIPPED.get() or not self._glm4_has_prefix(token_ids_0, self.get_prefix_tokens())

    def build_inputs_with_special_tokens(
        self, token_ids_0: List[int], token_ids_1: Optional[List[int]] = None
    ) -> List[int]:
        """Add ``[gMASK]<sop>`` in front, unless ``token_ids_0`` already starts with it.

        Idempotent: applied to its own output it changes nothing. Pairs become
        ``[gMASK]<sop> A B <|endoftext|>``. Empty lists are fine::

            >>> tok.build_inputs_with_special_tokens([])  # [gMASK]<sop>
            [151331, 151333]
        """
        first = list(token_ids_0)
        if self._glm4_adds_prefix(first):
            first = self.get_prefix_tokens() + first
        if token_ids_1 is None:
            return first
        return first + list(token_ids_1) + [self._glm4_token_id(PAIR_SUFFIX_TOKEN)]

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

    def _glm4_special_ids(self) -> set:
        """``all_special_ids`` and the ids of the 14 GLM-4 tokens.

        ``add_special_tokens({"additional_special_tokens": [...]})`` replaces the list that holds the 14, but
        they stay special: ``skip_special_tokens=True`` drops them and the special-tokens mask marks them.
        """
        ids = set(self.all_special_ids)
        encoder = self._added_tokens_encoder
        ids.update(encoder[t] for t in GLM4_SPECIAL_TOKENS if t in encoder)
        return ids

    # ------------------------------------------------------------ truncation
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

    def prepare_for_model(self, ids: List[int], pair_ids: Optional[List[int]] = None, *args: Any, **kwargs: Any):
        """transformers' ``prepare_for_model`` with the prefix counted once, exact pairs and overflow.

        When special tokens are added and ``ids`` already starts with ``[gMASK]<sop>``, that copy is taken off
        before truncation and put back by ``build_inputs_with_special_tokens``, so length accounting and
        ``truncation_side`` see the prefix exactly once. A pair truncated to fewer than its 3 special tokens is a
        ValueError. With ``return_overflowing_tokens=True`` the result always holds ``overflowing_tokens`` (``[]``
        when nothing was cut) and ``num_truncated_tokens`` (0 then), also as tensors, on both transformers lines,
        so a batch's rows line up with single calls.
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
        total = len(ids) + len(pair_ids or ()) + (self.num_special_tokens_to_add(pair_ids is not None) if prefix else 0)
        data = dict(encoded)
        data["overflowing_tokens"] = list(data.get("overflowing_tokens", []))
        data["num_truncated_tokens"] = max(0, total - max_length) if truncating else 0
        return BatchEncoding(data, tensor_type=tensors, prepend_batch_axis=batch_axis)

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

    def truncate_sequences(  # type: ignore[override]  # None for a missing pair, as transformers' own returns
        self,
        ids: List[int],
        pair_ids: Optional[List[int]] = None,
        num_tokens_to_remove: int = 0,
        truncation_strategy: Union[str, TruncationStrategy] = "longest_first",
        stride: int = 0,
    ) -> Tuple[List[int], Optional[List[int]], List[int]]:
        """Exact truncation of a single sequence; pairs as in transformers (``_glm4_truncate_pair``).

        transformers 4.x silently skips truncation when every text token has to go; here that cuts to the prefix
        alone, and a ``max_length`` too small for the special tokens themselves is a ValueError.
        """
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

    # ------------------------------------------------------------ decoding
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

    # ------------------------------------------------------------ the vocabulary
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

    # ------------------------------------------------------------ transformers' generic path, where it needs a hand
    # Two slips of transformers' own encoding path that would make the generic path differ from these rules.
    if not _ONE_ENCODE_PLUS:  # transformers 4.x

        def _batch_encode_plus(self, batch_text_or_text_pairs: Any, **kwargs: Any):
            """4.x's generic batch path calls ``tokenize`` for each row without the caller's
            ``split_special_tokens``: it is handed over through ``_SPLIT_SPECIAL`` (see ``tokenize``)."""
            token = _SPLIT_SPECIAL.set(kwargs.get("split_special_tokens", self.split_special_tokens))
            try:
                return super()._batch_encode_plus(batch_text_or_text_pairs, **kwargs)  # type: ignore[misc]  # 4.x only
            finally:
                _SPLIT_SPECIAL.reset(token)

    else:  # transformers 5

        def _encode_plus(self, text: Any = None, text_pair: Any = None, **kwargs: Any):  # type: ignore[override]  # one signature for 4.x's and 5.x's (they differ)
            """5.x drops a batch's overflow silently when it makes tensors: the rows are made as lists and the
            tensors here (a ragged overflow is then transformers' ValueError, as on 4.x)."""
            if kwargs.get("return_overflowing_tokens") and kwargs.get("return_tensors"):
                words = kwargs.get("is_split_into_words")
                first = text[0] if isinstance(text, (list, tuple)) and text else None
                if isinstance(first, (list, tuple)) or (isinstance(first, str) and not words):
                    tensors = kwargs.pop("return_tensors")
                    encoded = self._encode_plus(text=text, text_pair=text_pair, return_tensors=None, **kwargs)
                    return BatchEncoding(dict(encoded), tensor_type=tensors)
            return super()._encode_plus(text=text, text_pair=text_pair, **kwargs)

    def tokenize(self, text: Any, **kwargs: Any) -> List[Union[str, bytes]]:  # type: ignore[override]  # bytes tokens as above; pair/add_special_tokens go through **kwargs
        split = _SPLIT_SPECIAL.get()  # set by _batch_encode_plus above (4.x)
        if split is not None:
            kwargs.setdefault("split_special_tokens", split)
        return super().tokenize(text, **kwargs)  # type: ignore[return-value]  # transformers' list[str] holds bytes tokens here


def _count_real(mask: Sequence[Any]) -> List[int]:
    """``position_ids`` for an attention mask: 0, 1, 2, ... over its nonzero entries, 0 on the others."""
    positions, count = [], 0
    for bit in mask:
        if bit:
            positions.append(count)
            count += 1
        else:
            positions.append(0)
    return positions


def _max_length_too_small(n_special: int, remove: int, n_text: int) -> ValueError:
    names = PREFIX_TEXT if n_special == 2 else f"{PREFIX_TEXT} and {PAIR_SUFFIX_TOKEN} (a pair)"
    return ValueError(
        f"max_length is too small: it must leave room for the {n_special} special tokens {names} "
        f"(asked to remove {remove} tokens from a text of {n_text})"
    )
