# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""A GLM-4 (glm-4-9b-chat) tokenizer whose batch encoding is exact.

This file stands alone: it imports only the standard library, ``regex``,
``tiktoken`` and ``transformers``, so it can be copied into a model folder in
place of the upstream ``tokenization_chatglm.py`` and loaded with
``AutoTokenizer.from_pretrained(folder, trust_remote_code=True)``.

It defines two things:

``GLM4FixMixin``
    The fix, as a set of methods that can be laid over any GLM-4 tokenizer
    class (ours below, or upstream's remote-code class) that has ``decoder``
    (id -> bytes), ``mergeable_ranks`` (bytes -> id), ``tokenizer`` (a
    ``tiktoken.Encoding``) and the 14 GLM-4 tokens registered as added tokens.

``ChatGLM4Tokenizer``
    A complete tokenizer: ``GLM4FixMixin`` over a clean reimplementation of the
    upstream vocabulary handling. Same ids as upstream for every text.

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
  with 0, ``special_tokens_mask`` with 1, and gives ``position_ids`` that count
  the real tokens (0..n-1) and are 0 on pads. Padding is idempotent.
* ``decode`` is exact around special tokens on both transformers lines, and an
  id outside the vocabulary is a ``ValueError``.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import functools
import inspect
import os
import shutil
import weakref
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import regex
import tiktoken
from transformers import PreTrainedTokenizer
from transformers.tokenization_utils_base import AddedToken, TruncationStrategy
from transformers.utils import PaddingStrategy

__all__ = ["ChatGLM4Tokenizer", "GLM4FixMixin", "GLM4_SPECIAL_TOKENS", "GLM4_PAT_STR"]

#: The split pattern GLM-4 uses before byte-pair merging (the cl100k pattern).
GLM4_PAT_STR = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

#: The 14 added tokens of GLM-4, in id order (they follow the BPE ranks).
GLM4_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "[MASK]",
    "[gMASK]",
    "[sMASK]",
    "<sop>",
    "<eop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
    "<|begin_of_image|>",
    "<|end_of_image|>",
    "<|begin_of_video|>",
    "<|end_of_video|>",
)

PREFIX_TOKENS = ("[gMASK]", "<sop>")
PAIR_SUFFIX_TOKEN = "<|endoftext|>"

# Set while ``prepare_for_model`` builds a sequence whose own leading prefix it
# has already taken off: the prefix must then be added unconditionally, so a
# text holding it twice keeps both copies. A ContextVar is per thread (and per
# asyncio task), so sharing one tokenizer between threads stays safe.
_PREFIX_STRIPPED: contextvars.ContextVar[bool] = contextvars.ContextVar("glm4_prefix_stripped", default=False)

# transformers 5 encodes singles and batches in one ``_encode_plus``; 4.x has ``_batch_encode_plus`` too.
_ONE_ENCODE_PLUS = not hasattr(PreTrainedTokenizer, "_batch_encode_plus")

# Set while transformers 4.x's generic batch path runs: its per-row ``tokenize`` call forgets the
# caller's ``split_special_tokens``, so ``GLM4FixMixin.tokenize`` takes it from here.
_SPLIT_SPECIAL: contextvars.ContextVar[Optional[bool]] = contextvars.ContextVar("glm4_split_special", default=None)


def load_tiktoken_ranks(vocab_file: Union[str, os.PathLike]) -> Dict[bytes, int]:
    """Read a ``tokenizer.model`` file: one ``<base64 token> <rank>`` per line.

    Raises ``OSError`` naming the path when it cannot be read and ``ValueError``
    naming the file and line when a line is malformed, a token or rank repeats,
    the ranks are not exactly ``0..n-1``, or a single byte has no rank (tiktoken
    needs all 256 to encode arbitrary text).
    """
    path = os.fspath(vocab_file)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise OSError(f"cannot read GLM-4 vocabulary file {path!r}: {exc.strerror or exc}") from exc
    ranks: Dict[bytes, int] = {}
    seen_ranks: Dict[int, int] = {}
    for lineno, raw in enumerate(data.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}, line {lineno}: expected '<base64 token> <rank>', got {raw[:80]!r}")
        try:
            token = base64.b64decode(parts[0], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"{path}, line {lineno}: token is not valid base64 ({exc})") from None
        try:
            rank = int(parts[1])
        except ValueError:
            raise ValueError(f"{path}, line {lineno}: rank {parts[1][:40]!r} is not an integer") from None
        if rank < 0:
            raise ValueError(f"{path}, line {lineno}: rank {rank} is negative")
        if token in ranks:
            raise ValueError(f"{path}, line {lineno}: token {token!r} repeats (first given rank {ranks[token]})")
        if rank in seen_ranks:
            raise ValueError(f"{path}, line {lineno}: rank {rank} repeats (first on line {seen_ranks[rank]})")
        ranks[token] = rank
        seen_ranks[rank] = lineno
    if not ranks:
        raise ValueError(f"{path}: no tokens in the vocabulary file")
    if len(ranks) - 1 != max(seen_ranks):
        missing = next(r for r in range(len(ranks)) if r not in seen_ranks)
        raise ValueError(f"{path}: ranks must be 0..{len(ranks) - 1} without gaps; rank {missing} is missing")
    lost = [b for b in range(256) if bytes([b]) not in ranks]
    if lost:
        raise ValueError(f"{path}: single bytes {lost[:8]} have no rank; every byte needs one")
    return ranks


def _as_id_list(ids: Any, what: str) -> List[int]:
    """Turn a sequence of token ids (list, tuple, numpy/torch 1-d) into a list of ints."""
    if hasattr(ids, "tolist") and not isinstance(ids, (list, tuple)):
        ids = ids.tolist()
    if isinstance(ids, int) and not isinstance(ids, bool):
        return [ids]
    if not isinstance(ids, (list, tuple)):
        raise TypeError(f"{what} must be a list of token ids, got {type(ids).__name__}")
    out = []
    for value in ids:
        if hasattr(value, "item") and not isinstance(value, int):
            value = value.item()
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{what} must hold ints, got {type(value).__name__} ({value!r})")
        out.append(value)
    return out


# One text -> ids function per tiktoken Encoding (and mode), built on first use. Kept out of the
# tokenizer's __dict__ because tiktoken's core objects cannot be pickled or deep-copied.
_TEXT_ENCODERS: "weakref.WeakKeyDictionary[tiktoken.Encoding, Dict[bool, Callable[[str], List[int]]]]" = (
    weakref.WeakKeyDictionary()
)


def _text_encoder(encoding: tiktoken.Encoding, special: bool) -> Callable[[str], List[int]]:
    """``encoding``'s text -> ids, through tiktoken's Rust core (its Python wrapper re-checks arguments).

    ``special=True``: literals of ``encoding``'s special tokens become their ids. A text holding no
    first character of any of them cannot hold one and takes the cheaper ``encode_ordinary``.
    ``special=False``: every text is ordinary text. Either way lone surrogates become U+FFFD first, as
    in tiktoken's own ``encode_ordinary`` (which transformers' generic path calls).
    """
    per_mode = _TEXT_ENCODERS.get(encoding)
    if per_mode is None:
        per_mode = _TEXT_ENCODERS.setdefault(encoding, {})
    encoder = per_mode.get(special)
    if encoder is None:
        core = encoding._core_bpe
        allowed = encoding.special_tokens_set if special else frozenset()
        starts = tuple(sorted({token[0] for token in allowed}))
        encoder = per_mode[special] = functools.partial(
            _encode_text, core.encode_ordinary, core.encode, starts, allowed
        )
    return encoder


def _encode_text(
    ordinary: Callable[[str], List[int]],
    with_special: Callable[[str, Any], List[int]],
    starts: Tuple[str, ...],
    allowed: Any,
    text: str,
) -> List[int]:
    try:
        for start in starts:
            if start in text:
                return with_special(text, allowed)
        return ordinary(text)
    except UnicodeEncodeError:  # lone surrogates: the UTF-16 round trip turns each into U+FFFD
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return _encode_text(ordinary, with_special, starts, allowed, text)


def _max_length_too_small(n_special: int, remove: int, n_text: int) -> ValueError:
    names = "[gMASK]<sop>" if n_special == 2 else "[gMASK]<sop> and <|endoftext|> (a pair)"
    return ValueError(
        f"max_length is too small: it must leave room for the {n_special} special tokens {names} "
        f"(asked to remove {remove} tokens from a text of {n_text})"
    )


class GLM4FixMixin:
    """The GLM-4 batch-encoding fix, as methods to lay over a tokenizer class.

    Put it first in the bases (``class Fixed(GLM4FixMixin, UpstreamTokenizer)``).
    It relies only on transformers' slow-tokenizer API plus the attributes every
    GLM-4 tokenizer revision has: ``decoder`` (id -> bytes) and
    ``mergeable_ranks`` (bytes -> id).
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

    def _convert_id_to_token(self, index: int) -> Union[str, bytes]:
        token = self.decoder.get(index)
        if token is None:
            added = self._added_tokens_decoder.get(index)
            if added is not None:
                return added.content
            raise ValueError(f"token id {index!r} is outside the vocabulary (0..{len(self) - 1})")
        return token

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

    def tokenize(self, text: Any, **kwargs: Any) -> List[Union[str, bytes]]:
        split = _SPLIT_SPECIAL.get()
        if split is not None:
            kwargs.setdefault("split_special_tokens", split)
        return super().tokenize(text, **kwargs)

    @classmethod
    def _glm4_prepare_params(cls) -> Tuple[Tuple[str, ...], Dict[str, Any]]:
        """The names of transformers' ``prepare_for_model`` arguments after ``pair_ids``, and their defaults."""
        cached = cls.__dict__.get("_glm4_prepare_params_cache")
        if cached is None:
            params = list(inspect.signature(super(GLM4FixMixin, cls).prepare_for_model).parameters.values())[3:]
            names = tuple(p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD)
            defaults = {p.name: p.default for p in params if p.default is not p.empty}
            cached = cls._glm4_prepare_params_cache = (names, defaults)
        return cached

    def prepare_for_model(self, ids: List[int], pair_ids: Optional[List[int]] = None, *args: Any, **kwargs: Any):
        """transformers' ``prepare_for_model`` with an idempotent prefix, exact pairs and overflow.

        When special tokens are added and ``ids`` already starts with
        ``[gMASK]<sop>``, that copy is taken off before truncation and put back
        by ``build_inputs_with_special_tokens``, so length accounting and
        ``truncation_side`` see the prefix exactly once. A pair truncated to
        fewer than its 3 special tokens is a ValueError. With
        ``return_overflowing_tokens=True`` the result always holds
        ``overflowing_tokens`` (``[]`` when nothing was cut) and
        ``num_truncated_tokens`` (0 then), also as tensors, on both transformers
        lines, so a batch's rows line up with single calls.
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

    def truncate_sequences(
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
        strategy = TruncationStrategy(truncation_strategy)
        single = pair_ids is None and strategy in (TruncationStrategy.ONLY_FIRST, TruncationStrategy.LONGEST_FIRST)
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

    # -------------------------------------------------------------- padding
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

    def _pad(
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
        already in ``attention_mask`` are kept, and ``position_ids`` are
        recomputed from the final mask (0..n-1 over real tokens, 0 on pads), so
        padding a padded encoding again changes nothing but the new pads.
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
        for key in ("token_type_ids", "special_tokens_mask"):
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

        def padded(values: Iterable[int], fill: int) -> List[int]:
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
        if return_attention_mask:
            encoded_inputs["attention_mask"] = full_mask
        else:
            encoded_inputs.pop("attention_mask", None)
        if "position_ids" in self.model_input_names:
            if 0 not in mask:  # the common case: every given token is real
                positions = padded(range(n), 0)
            else:
                positions, count = [], 0
                for bit in full_mask:
                    if bit:
                        positions.append(count)
                        count += 1
                    else:
                        positions.append(0)
            encoded_inputs["position_ids"] = positions
        return encoded_inputs

    # ------------------------------------------------------------ fast path
    #: When True (the default), plain-text calls skip transformers' per-token Python path: tiktoken
    #: splits the added tokens and encodes in one call per text, and the padded rows are built in one
    #: pass. The output is identical to the generic path (set False to use that one; tests compare both).
    glm4_fast_path = True
    #: transformers lowercases text before splitting when a tokenizer sets this (GLM-4 never does; the fast
    #: path then steps aside). Declared here so reading it skips transformers 5's slow ``__getattr__``.
    do_lower_case = False
    #: Threads that encode one large batch on the fast path (tiktoken's core releases the GIL while it
    #: merges, as in its own ``encode_batch``). None (the default) uses up to 8 of the CPUs this process
    #: may run on, or 1 when the environment sets ``TOKENIZERS_PARALLELISM`` to false/0/off/no -- the
    #: switch transformers' fast tokenizers read. 1 encodes serially. Rows are identical either way.
    glm4_encode_threads: Optional[int] = None
    #: A batch is split across threads only from this many characters on (a thread costs ~0.1 ms).
    glm4_parallel_min_chars = 65_536

    def _encode_plus(self, text: Any = None, text_pair: Any = None, **kwargs: Any):
        # transformers 5: every __call__/encode goes through here (a batch too); 4.x: single texts only.
        if text_pair is None and self._glm4_fast_applies(kwargs):
            if isinstance(text, str):
                return self._glm4_fast_encode([text], batched=False, **kwargs)
            if (
                isinstance(text, (list, tuple))
                and text
                and not kwargs.get("is_split_into_words")
                and all(isinstance(t, str) for t in text)
            ):
                return self._glm4_fast_encode(list(text), batched=True, **kwargs)
        if _ONE_ENCODE_PLUS and kwargs.get("return_overflowing_tokens") and kwargs.get("return_tensors"):
            # transformers 5 drops a batch's overflow silently when it makes tensors: make them here instead
            # (a ragged overflow is then transformers' ValueError, as on 4.x; equal lengths become a tensor).
            words = kwargs.get("is_split_into_words")
            first = text[0] if isinstance(text, (list, tuple)) and text else None
            if isinstance(first, (list, tuple)) or (isinstance(first, str) and not words):
                from transformers.tokenization_utils_base import BatchEncoding

                tensors = kwargs.pop("return_tensors")
                encoded = super()._encode_plus(text=text, text_pair=text_pair, return_tensors=None, **kwargs)
                return BatchEncoding(dict(encoded), tensor_type=tensors)
        return super()._encode_plus(text=text, text_pair=text_pair, **kwargs)

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

    _GLM4_ENCODE_FAST_KWARGS = frozenset({"split_special_tokens", "verbose", "return_tensors", "stride"})

    def _batch_encode_plus(self, batch_text_or_text_pairs: Any, **kwargs: Any):
        # transformers 4.x batch path (5.x has no _batch_encode_plus and never calls this).
        texts = batch_text_or_text_pairs
        if (
            isinstance(texts, (list, tuple))
            and texts
            and all(isinstance(t, str) for t in texts)
            and not kwargs.get("is_split_into_words")
            and self._glm4_fast_applies(kwargs)
        ):
            return self._glm4_fast_encode(list(texts), batched=True, **kwargs)
        # transformers 4.x's rows call tokenize() without split_special_tokens: hand it over (see tokenize).
        token = _SPLIT_SPECIAL.set(kwargs.get("split_special_tokens", self.split_special_tokens))
        try:
            return super()._batch_encode_plus(batch_text_or_text_pairs, **kwargs)
        finally:
            _SPLIT_SPECIAL.reset(token)

    _GLM4_FAST_KWARGS = frozenset(
        {
            "add_special_tokens", "padding_strategy", "truncation_strategy", "max_length", "stride",
            "is_split_into_words", "pad_to_multiple_of", "padding_side", "return_tensors",
            "return_token_type_ids", "return_attention_mask", "return_overflowing_tokens",
            "return_special_tokens_mask", "return_offsets_mapping", "return_length", "verbose",
            "split_special_tokens",
        }
    )  # fmt: skip

    def _glm4_fast_applies(self, kwargs: Dict[str, Any]) -> bool:
        """The fast path covers plain texts with every option of __call__ except overflow/offsets/pairs."""
        if self._glm4_text_encoder(kwargs.get("split_special_tokens")) is None:
            return False  # switched off, a custom _tokenize, do_lower_case, or added tokens tiktoken can't split
        if not self._GLM4_FAST_KWARGS.issuperset(kwargs):
            return False
        if kwargs.get("return_overflowing_tokens") or kwargs.get("return_offsets_mapping"):
            return False
        if TruncationStrategy(kwargs.get("truncation_strategy", "do_not_truncate")) == TruncationStrategy.ONLY_SECOND:
            return False
        # transformers 4.x refuses this combination; let it say so
        return not (kwargs.get("return_token_type_ids") and not kwargs.get("add_special_tokens", True))

    def _glm4_special_encoding(self) -> Optional[tiktoken.Encoding]:
        """A tiktoken encoding that splits out this tokenizer's added tokens exactly as transformers does.

        Built once per set of added tokens. None when an added token strips
        whitespace, is single-word, or overlaps another one (then transformers'
        own splitting is used).
        """
        added = self._added_tokens_decoder
        cached = getattr(self, "_glm4_special_cache", None)
        key = (id(added), len(added))  # add_tokens() grows the dict; a new dict gets a new id
        if cached is not None and cached[0] == key:
            return cached[2]
        signature = tuple(sorted((i, t.content) for i, t in added.items()))
        if cached is not None and cached[1] == signature:
            self._glm4_special_cache = (key, signature, cached[2])
            return cached[2]
        encoding: Optional[tiktoken.Encoding] = None
        contents = [content for _, content in signature]
        plain = all(not (t.lstrip or t.rstrip or t.single_word) for t in added.values())
        overlapping = any(
            a != b and (a in b or any(a.endswith(b[:k]) for k in range(1, min(len(a), len(b)))))
            for a in contents
            for b in contents
        )
        if plain and not overlapping and len(set(contents)) == len(contents):
            try:
                encoding = tiktoken.Encoding(
                    name="glm4-with-added-tokens",
                    pat_str=self.tokenizer._pat_str,
                    mergeable_ranks=self.mergeable_ranks,
                    special_tokens={content: i for i, content in signature},
                )
            except Exception:  # tiktoken refuses some vocabularies (e.g. ids clashing): use the generic path
                encoding = None
        self._glm4_special_cache = (key, signature, encoding)
        return encoding

    def _glm4_text_encoder(self, split_special_tokens: Optional[bool]) -> Optional[Callable[[str], List[int]]]:
        """text -> ids without special tokens added: literals of added tokens become their ids unless split.

        None when the fast path does not apply to this tokenizer (switched off, a custom ``_tokenize``,
        ``do_lower_case``, or added tokens tiktoken cannot split like transformers does).
        """
        if not self.glm4_fast_path or self.do_lower_case or type(self)._tokenize is not _ChatGLM4Vocab._tokenize:
            return None
        if split_special_tokens is None:
            split_special_tokens = self.split_special_tokens
        if split_special_tokens:
            return _text_encoder(self.tokenizer, special=False)
        special = self._glm4_special_encoding()
        return None if special is None else _text_encoder(special, special=True)

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
        """``[encode(t) for t in texts]``, split across threads for a large batch (see glm4_encode_threads)."""
        threads = self._glm4_thread_count(texts)
        if threads == 1:
            return [encode(text) for text in texts]
        encoded: List[Any] = [None] * len(texts)
        # The calling thread encodes the first text itself, before any worker: tiktoken's regex gives its
        # fast cache to the first thread that uses it, and later single-text calls come from this thread.
        encoded[0] = encode(texts[0])

        def work(k: int) -> None:  # every threads-th text from 1 + k on: the shares stay balanced
            encoded[1 + k :: threads] = [encode(text) for text in texts[1 + k :: threads]]

        from concurrent.futures import ThreadPoolExecutor

        # Then the calling thread only waits: measured here, that beats it taking a share itself.
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="glm4-tokfix") as pool:
            for _ in pool.map(work, range(threads)):  # re-raises a worker's exception
                pass
        return encoded

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
        verbose: bool = True,
        split_special_tokens: Optional[bool] = None,
        **_ignored: Any,  # stride, is_split_into_words=False, return_overflowing_tokens=False, ...
    ):
        from transformers.tokenization_utils_base import BatchEncoding

        padding_strategy = PaddingStrategy(padding_strategy)
        truncate = TruncationStrategy(truncation_strategy) != TruncationStrategy.DO_NOT_TRUNCATE and bool(max_length)
        encode = self._glm4_text_encoder(split_special_tokens)
        prefix = self.get_prefix_tokens() if add_special_tokens else None
        n_prefix = len(prefix) if prefix else 0
        left_cut = self.truncation_side == "left"
        if truncate and self.truncation_side not in ("left", "right"):
            raise ValueError(f"truncation_side must be 'left' or 'right', got {self.truncation_side!r}")

        bodies: List[Optional[List[int]]] = []  # each text's ids without the prefix, truncated
        for ids in self._glm4_encode_texts(texts, encode):
            if prefix is not None and ids[:n_prefix] == prefix:
                del ids[:n_prefix]
            if truncate and len(ids) + n_prefix > max_length:
                remove = len(ids) + n_prefix - max_length
                if remove > len(ids):
                    raise _max_length_too_small(n_prefix, remove, len(ids))
                ids = ids[remove:] if left_cut else ids[: len(ids) - remove]
            bodies.append(ids)
        lengths = [len(b) + n_prefix for b in bodies]
        for n in lengths:  # transformers' "longer than model_max_length" warning looks at the length only
            self._eventual_warn_about_too_long_sequence(range(n), max_length, verbose)

        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        want_mask = "attention_mask" in self.model_input_names if return_attention_mask is None else return_attention_mask
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
        pad_id = self.pad_token_id
        if target is not None and pad_id is None and any(n < target for n in lengths):
            raise ValueError("cannot pad: the tokenizer has no pad_token (GLM-4 uses <|endoftext|>)")

        # Every row is cut from these shared runs: about one copy per row and field, no per-token Python work.
        # zeros_ones[W-d : W+n] is d zeros then n ones; zeros_counting[W-d : W+n] is d zeros then 0..n-1;
        # ones_zeros[W-n : W+d] is n ones then d zeros (W = width >= n, d).
        width = max(max(lengths), target or 0)
        zeros, ones, counting = [0] * width, [1] * width, list(range(width))
        zeros_ones, zeros_counting, ones_zeros = zeros + ones, zeros + counting, ones + zeros
        pads = [pad_id] * width if target is not None else []
        type_pads = [self.pad_token_type_id] * width if return_token_type_ids and target is not None else []
        head = prefix if prefix is not None else []
        pads_head = pads + head  # pads_head[width - d : width + len(head)] is d pads then the prefix
        rows, masks, positions, type_ids, special = [], [], [], [], []
        for i, n in enumerate(lengths):
            body, bodies[i] = bodies[i], None  # let each body go as soon as its row is built
            d = target - n if target is not None and target > n else 0
            # in place: tiktoken's list becomes the row (the body is never referenced elsewhere)
            if left:
                body[:0] = pads_head[width - d : width + n_prefix] if d else head
            else:
                body[:0] = head
                if d:
                    body += pads[:d]
            rows.append(body)
            if pad_phase:
                if left:
                    masks.append(zeros_ones[width - d : width + n])
                    positions.append(zeros_counting[width - d : width + n])
                else:
                    masks.append(ones_zeros[width - n : width + d])
                    positions.append(counting[:n] + zeros[:d] if d else counting[:n])
            if return_token_type_ids:
                type_ids.append(type_pads[:d] + zeros[:n] if left else zeros[:n] + type_pads[:d])
            if return_special_tokens_mask:
                body_zeros = zeros[: n - n_prefix]
                special.append(
                    ones[: d + n_prefix] + body_zeros if left else ones[:n_prefix] + body_zeros + ones[:d]
                )

        data: Dict[str, Any] = {"input_ids": rows}
        if return_token_type_ids:
            data["token_type_ids"] = type_ids
        if return_special_tokens_mask:
            data["special_tokens_mask"] = special
        if return_length and batched:
            data["length"] = lengths
        if pad_phase:
            if want_mask:
                data["attention_mask"] = masks
            if "position_ids" in self.model_input_names:
                data["position_ids"] = positions
        elif empty_single and want_mask:
            data["attention_mask"] = [[]]
        if return_length and not batched:
            data["length"] = [len(rows[0])]

        if not batched:
            data = {key: value[0] for key, value in data.items()}
            return BatchEncoding(data, tensor_type=return_tensors, prepend_batch_axis=True)
        return BatchEncoding(data, tensor_type=return_tensors)

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
    def convert_tokens_to_string(self, tokens: List[Union[str, bytes]]) -> str:
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


class _ChatGLM4Vocab(PreTrainedTokenizer):
    """The GLM-4 vocabulary over tiktoken: what upstream's class does, minus its batch bugs."""

    vocab_files_names = {"vocab_file": "tokenizer.model"}
    model_input_names = ["input_ids", "attention_mask", "position_ids"]

    def __init__(
        self,
        vocab_file: Optional[str] = None,
        padding_side: str = "left",
        clean_up_tokenization_spaces: bool = False,
        **kwargs: Any,
    ) -> None:
        if vocab_file is None:
            raise OSError("ChatGLM4Tokenizer needs vocab_file: the path of a GLM-4 tokenizer.model")
        self.name = "GLM4Tokenizer"
        self.vocab_file = os.fspath(vocab_file)
        self.mergeable_ranks = load_tiktoken_ranks(self.vocab_file)
        self.decoder = {rank: token for token, rank in self.mergeable_ranks.items()}
        self.n_words = len(self.mergeable_ranks)
        self.pat_str = GLM4_PAT_STR
        self.tokenizer = tiktoken.Encoding(
            name="glm4",
            pat_str=GLM4_PAT_STR,
            mergeable_ranks=self.mergeable_ranks,
            special_tokens={},
        )
        if not kwargs.get("added_tokens_decoder"):
            # Built, or loaded, without a tokenizer_config.json: register GLM-4's 14 tokens after the ranks.
            kwargs["added_tokens_decoder"] = {
                self.n_words + i: AddedToken(t, lstrip=False, rstrip=False, normalized=False, special=True)
                for i, t in enumerate(GLM4_SPECIAL_TOKENS)
            }
            if "additional_special_tokens" not in kwargs and "extra_special_tokens" not in kwargs:
                kwargs["additional_special_tokens"] = list(GLM4_SPECIAL_TOKENS)
            kwargs.setdefault("eos_token", "<|endoftext|>")
            kwargs.setdefault("pad_token", "<|endoftext|>")
        super().__init__(
            vocab_file=self.vocab_file,  # kept in init_kwargs like every argument (save_pretrained leaves it out)
            padding_side=padding_side,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            **kwargs,
        )

    @classmethod
    def _from_pretrained(cls, *args: Any, **kwargs: Any):
        # transformers 4.x wraps the constructor in `except import_protobuf_decode_error():`, which raises
        # an ImportError about protobuf (when protobuf is absent) in place of whatever __init__ raised.
        # Give the user our own error back: it names the file and line that are wrong.
        try:
            return super()._from_pretrained(*args, **kwargs)
        except ImportError as exc:
            cause = exc.__context__
            if "protobuf" in str(exc) and isinstance(cause, Exception):
                raise cause from None
            raise

    @property
    def vocab_size(self) -> int:
        """The number of BPE ranks (added tokens not included; ``len(tok)`` includes them)."""
        return self.n_words

    def get_vocab(self) -> Dict[Union[str, bytes], int]:
        vocab: Dict[Union[str, bytes], int] = dict(self.mergeable_ranks)
        vocab.update(self._added_tokens_encoder)
        return vocab

    def _tokenize(self, text: str, **kwargs: Any) -> List[bytes]:
        decoder = self.decoder
        return [decoder[i] for i in self.tokenizer.encode_ordinary(text)]

    def save_vocabulary(self, save_directory: str, filename_prefix: Optional[str] = None) -> Tuple[str]:
        name = (filename_prefix + "-" if filename_prefix else "") + self.vocab_files_names["vocab_file"]
        target = os.path.join(save_directory, name) if os.path.isdir(save_directory) else save_directory
        if os.path.isfile(self.vocab_file):
            if os.path.abspath(self.vocab_file) != os.path.abspath(target):
                shutil.copyfile(self.vocab_file, target)
        else:
            with open(target, "wb") as handle:
                for token, rank in sorted(self.mergeable_ranks.items(), key=lambda kv: kv[1]):
                    handle.write(base64.b64encode(token) + b" " + str(rank).encode() + b"\n")
        return (target,)


class ChatGLM4Tokenizer(GLM4FixMixin, _ChatGLM4Vocab):
    """GLM-4 tokenizer with idempotent ``[gMASK]<sop>``, exact padding and decoding.

    Load it from a glm-4-9b-chat folder::

        tok = ChatGLM4Tokenizer.from_pretrained("path/to/glm-4-9b-chat")
        batch = tok([tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
                     for m in chats], padding=True, return_tensors="pt")

    Every row of ``batch`` holds one prefix, the pads sit together on
    ``padding_side`` with attention 0 and position 0, and the real tokens of
    row ``i`` equal ``tok(texts[i])``. ``save_pretrained`` writes this module
    next to the vocabulary so the folder loads the fixed class through
    ``AutoTokenizer.from_pretrained(folder, trust_remote_code=True)``.
    """

    _auto_class = "AutoTokenizer"
