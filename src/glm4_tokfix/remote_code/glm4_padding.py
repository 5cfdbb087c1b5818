# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""``GLM4PaddingMixin``: a batched ``pad()`` (accelerator) over the spec's ``_pad``; numpy arrays and torch tensors."""

from __future__ import annotations

import copy
import importlib
from collections.abc import Mapping, Sized
from itertools import chain
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from transformers import BatchEncoding
from transformers.tokenization_utils_base import PreTrainedTokenizerBase
from transformers.utils import PaddingStrategy, TensorType

from .glm4_spec import _PADDED_AS_GIVEN, GLM4PaddingRules, _count_real

__all__ = ["GLM4PaddingMixin"]


# ----------------------------------------------------------------- tensors
# numpy and torch are imported only here, when return_tensors asks for them.
def _tensor_kind(return_tensors: Any) -> Optional[str]:
    """'pt' or 'np' when ``return_tensors`` asks for arrays we build directly, else None.

    None too for a value transformers refuses or a framework it cannot import: its own conversion then
    raises its own error.
    """
    if return_tensors is None:
        return None
    try:
        kind = TensorType(return_tensors).value
    except ValueError:
        return None
    if kind == "pt":
        try:
            import torch  # noqa: F401
        except ImportError:
            return None
    return kind if kind in ("pt", "np") else None


def _int_dtype(np: Any, kind: str) -> Any:
    """The dtype transformers' conversion gives lists of Python ints: torch.int64, numpy's default int."""
    return np.int64 if kind == "pt" else np.asarray(0).dtype


def _real_region(np: Any, lengths: Sequence[int], width: int, left: bool) -> Tuple[Any, Any]:
    """Where each row's ``lengths[i]`` real tokens sit in a (rows, width) batch padded on the ``left`` or right.

    Returns a bool array (True on real tokens) and each column's index among its row's real tokens
    (0..n-1 there; negative or >= n on pads).
    """
    n = np.asarray(lengths, dtype=np.int64).reshape(-1, 1)
    index = np.arange(width, dtype=np.int64).reshape(1, -1)
    if left:
        index = index - (width - n)
    return (index >= 0) & (index < n), index


def _as_framework(arrays: Dict[str, Any], kind: str) -> Dict[str, Any]:
    """numpy arrays as they are for 'np'; for 'pt', torch tensors over the same memory (no copy)."""
    if kind != "pt":
        return arrays
    # Not an import statement: transformers refuses to load remote code whose file imports a package that is
    # not installed, and torch is optional here (only "pt" needs it, and _tensor_kind checked it is there).
    torch = importlib.import_module("torch")

    return {key: torch.from_numpy(value) for key, value in arrays.items()}


def _padded_arrays(
    batch: Dict[str, List[Any]],
    fills: Dict[str, Any],
    masks: Optional[List[Any]],
    lengths: List[int],
    width: int,
    left: bool,
    kind: str,
    with_positions: bool,
) -> Optional[Dict[str, Any]]:
    """``batch``'s rows padded to ``width`` as arrays of ``kind``: the keys of ``fills`` padded with their
    fill, ``attention_mask`` (``masks`` or ones; 0 on pads) and ``position_ids`` (counting the mask's
    nonzero entries; 0 elsewhere) -- or None when some value is not an int (floats, only bools, nested
    lists): transformers' conversion of the lists then decides, as it would.
    """
    import numpy as np

    dtype = _int_dtype(np, kind)
    python_int = np.asarray(0).dtype  # what numpy makes of Python ints; anything else goes back to lists
    total = sum(lengths)
    real, _ = _real_region(np, lengths, width, left)

    def column(rows: List[Any], fill: Any) -> Optional[Any]:
        try:
            flat = np.array(list(chain.from_iterable(rows))) if total else np.zeros(0, python_int)
        except (ValueError, TypeError):  # ragged nesting
            return None
        if flat.shape != (total,) or flat.dtype != python_int:
            return None
        out = np.full(real.shape, fill if fill is not None else 0, dtype=dtype)  # None: no pads to fill
        out[real] = flat
        return out

    arrays = {}
    for key, fill in fills.items():
        arrays[key] = column(batch[key], fill)
        if arrays[key] is None:
            return None
    mask = real.astype(dtype) if masks is None else column(masks, 0)
    if mask is None:
        return None
    arrays["attention_mask"] = mask
    if with_positions:
        bits = mask != 0
        arrays["position_ids"] = ((np.cumsum(bits, axis=1) - 1) * bits).astype(dtype)
    return _as_framework(arrays, kind)


class GLM4PaddingMixin(GLM4PaddingRules):
    """``pad()`` for many rows at once, by the spec's rules (``GLM4PaddingRules._pad``, ``glm4_spec``).

    transformers' ``pad`` calls ``_pad`` once per row; this one pads every row in one pass (and builds tensors
    directly) with the same result, as long as the tokenizer pads by those rules (``_glm4_pads_by_these_rules``);
    otherwise it hands the call to transformers' ``pad``. Fits any GLM-4 tokenizer class, slow or fast.
    """

    def _glm4_pads_by_these_rules(self) -> bool:
        """True when this tokenizer's ``_pad`` is the one above (the fast ``pad()`` then applies).

        Also True when a stack has put transformers' own ``PreTrainedTokenizerBase._pad`` on the instance
        (LLaMA-Factory's ``patch_tokenizer`` does, to bypass custom ``_pad`` methods): those rules are
        ours minus ``position_ids``, which that ``_pad`` would leave unpadded. False for any other
        ``_pad`` (a subclass's or an instance's own): transformers' ``pad`` then calls it for each row.
        """
        swapped = self.__dict__.get("_pad")
        if swapped is not None:
            return getattr(swapped, "__func__", None) is PreTrainedTokenizerBase._pad and (
                getattr(swapped, "__self__", None) is self
            )
        return type(self)._pad is GLM4PaddingRules._pad

    def pad(
        self,
        encoded_inputs: Any,
        padding: Any = True,
        max_length: Optional[int] = None,
        pad_to_multiple_of: Optional[int] = None,
        padding_side: Optional[str] = None,
        return_attention_mask: Optional[bool] = None,
        return_tensors: Any = None,
        verbose: bool = True,
    ) -> BatchEncoding:
        """transformers' ``pad`` with the rules of ``_pad``, a batch at a time; what it is given stays as it was.

        Takes what transformers' ``pad`` takes (one encoding, a dict of rows, or a list of encodings as
        collators pass) and returns the same: every row is what ``_pad`` makes of it, keys the rules do
        not know (``labels``, ...) are passed through as given, and ``return_tensors`` (or tensors given
        in) converts the result as transformers does. Unlike transformers', the encodings passed in are
        never modified (tensors given in are not turned into lists in place). A batch of rows of one
        width comes back as arrays built directly, without Python lists in between.
        """
        options = dict(
            padding=padding,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_attention_mask=return_attention_mask,
            return_tensors=return_tensors,
            verbose=verbose,
        )
        encoded: Dict[str, Any]
        if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], Mapping):
            # a list of encodings (a collator's features): one list of rows per key of the first
            encoded = {key: [example[key] for example in encoded_inputs] for key in encoded_inputs[0]}
        elif isinstance(encoded_inputs, (dict, BatchEncoding)):
            encoded = copy.copy(encoded_inputs)  # type: ignore[arg-type]  # (BatchEncoding: used as its dict) the caller's mapping is never written to
        elif isinstance(encoded_inputs, Mapping):
            encoded = dict(encoded_inputs)
        else:
            return super().pad(encoded_inputs, **options)  # transformers' own error for anything else
        main = self.model_input_names[0]
        mask = encoded.get("attention_mask")
        if (
            not self._glm4_pads_by_these_rules()
            or main not in encoded
            or (isinstance(mask, list) and mask and getattr(mask[0], "ndim", 0) > 1)  # 4-d masks (transformers 5)
        ):
            return super().pad(encoded, **options)

        required = encoded[main]
        if required is None or (isinstance(required, Sized) and len(required) == 0):
            if return_attention_mask:
                encoded["attention_mask"] = []
            return encoded  # type: ignore[return-value]  # as transformers: an empty batch comes back as the mapping given
        first = required[0]
        if isinstance(first, (list, tuple)):  # the first token of the first row that has one
            first = next((row[0] for row in required if len(row)), first)
        if not isinstance(first, (int, list, tuple)):
            import numpy as np
            from transformers.utils import is_torch_tensor, to_py_obj

            kind = "pt" if is_torch_tensor(first) else "np" if isinstance(first, np.ndarray) else None
            if kind is None:
                return super().pad(encoded, **options)  # transformers names the type it does not know
            if return_tensors is None:
                return_tensors = kind
            encoded = {key: to_py_obj(value) for key, value in encoded.items()}  # new lists; the given stay

        strategy, _, max_length, _ = self._get_padding_truncation_strategies(
            padding=padding, max_length=max_length, verbose=verbose
        )
        required = encoded[main]
        if required and not isinstance(required[0], (list, tuple)):  # one encoding
            row = GLM4PaddingRules._pad(
                self,
                encoded,
                max_length=max_length,
                padding_strategy=strategy,
                pad_to_multiple_of=pad_to_multiple_of,
                padding_side=padding_side,
                return_attention_mask=return_attention_mask,
            )
            return BatchEncoding(row, tensor_type=return_tensors)

        batch_size = len(required)
        uneven = {key: len(value) for key, value in encoded.items() if len(value) != batch_size}
        if uneven:
            raise ValueError(
                f"cannot pad: {main} has {batch_size} rows but {', '.join(f'{k} has {n}' for k, n in uneven.items())}"
            )
        if strategy == PaddingStrategy.LONGEST:
            max_length = max(len(row) for row in required)
            strategy = PaddingStrategy.MAX_LENGTH
        rows = self._glm4_pad_rows(
            encoded, max_length, strategy, pad_to_multiple_of, padding_side, return_attention_mask, return_tensors
        )
        return BatchEncoding(rows, tensor_type=return_tensors)

    def _glm4_pad_rows(
        self,
        batch: Dict[str, List[Any]],
        max_length: Optional[int],
        strategy: PaddingStrategy,
        pad_to_multiple_of: Optional[int],
        padding_side: Optional[str],
        return_attention_mask: Optional[bool],
        return_tensors: Any,
    ) -> Dict[str, Any]:
        """Each row of ``batch`` as ``_pad`` pads it (same checks, same errors, same key order), all at once.

        Arrays ('np'/'pt') are built directly when every row ends up one width and the values are ints;
        otherwise lists, which transformers' ``BatchEncoding`` converts.
        """
        main = self.model_input_names[0]
        left = self._glm4_padding_side(padding_side, pad_to_multiple_of) == "left"
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        with_positions = "position_ids" in self.model_input_names and "position_ids" not in batch  # else as given
        target: Optional[int] = None
        if strategy != PaddingStrategy.DO_NOT_PAD:
            target = max_length
            if target is None:
                raise ValueError("padding='max_length' needs max_length (or a finite model_max_length)")
            if pad_to_multiple_of is not None and target % pad_to_multiple_of:
                target = (target // pad_to_multiple_of + 1) * pad_to_multiple_of

        id_rows = batch[main]
        masks = batch.get("attention_mask")
        lengths, gaps = [], []
        for i, ids in enumerate(id_rows):  # the checks of _pad, row by row, in its order
            n = len(ids)
            if masks is not None and len(masks[i]) != n:
                raise ValueError(f"{main} has {n} tokens but attention_mask has {len(masks[i])}")
            for key in _PADDED_AS_GIVEN:
                if key in batch and len(batch[key][i]) != n:
                    raise ValueError(f"{main} has {n} tokens but {key} has {len(batch[key][i])}")
            d = target - n if target is not None and target > n else 0
            if d and self.pad_token_id is None:
                raise ValueError("cannot pad: the tokenizer has no pad_token (GLM-4 uses <|endoftext|>)")
            lengths.append(n)
            gaps.append(d)

        # the keys _pad pads as given, with their pad values; attention_mask (and absent position_ids) it computes;
        # the other keys pass through
        fills: Dict[str, Any] = {main: self.pad_token_id}
        for key, fill in (
            ("token_type_ids", self.pad_token_type_id), ("special_tokens_mask", 1), ("offset_mapping", (0, 0)),
            ("position_ids", 0),
        ):  # fmt: skip
            if key in batch:
                fills[key] = fill
        keys = [key for key in batch if key != "attention_mask" or return_attention_mask]
        if return_attention_mask and "attention_mask" not in batch:
            keys.append("attention_mask")
        if with_positions:
            keys.append("position_ids")

        kind = _tensor_kind(return_tensors)
        width = lengths[0] + gaps[0]
        if kind is not None and all(n + d == width for n, d in zip(lengths, gaps)):
            arrays = _padded_arrays(batch, fills, masks, lengths, width, left, kind, with_positions)
            if arrays is not None:
                return {key: arrays[key] if key in arrays else batch[key] for key in keys}

        def padded(values: Iterable[Any], fill: Any, d: int) -> List[Any]:
            values = list(values)
            return values if not d else [fill] * d + values if left else values + [fill] * d

        out: Dict[str, Any] = {key: batch[key] for key in keys if key in batch}  # the others: as given
        for key, fill in fills.items():
            out[key] = [padded(row, fill, d) for row, d in zip(batch[key], gaps)]
        full_masks, positions = [], []
        for i, (n, d) in enumerate(zip(lengths, gaps)):
            mask = [1] * n if masks is None else list(masks[i])
            full_masks.append(padded(mask, 0, d))
            if with_positions:
                positions.append(padded(range(n), 0, d) if 0 not in mask else _count_real(full_masks[-1]))
        if return_attention_mask:
            out["attention_mask"] = full_masks
        if with_positions:
            out["position_ids"] = positions
        return {key: out[key] for key in keys}
