# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""The fast tokenizer's spec: ``GLM4FastSpecMixin``, the prefix rule applied to the Rust tokenizer's own encodings
through ``GLM4FastEncoder`` (``glm4_fast_encoder``); the oracle the fast route is tested against."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

from transformers import BatchEncoding
from transformers import __version__ as _TRANSFORMERS_VERSION

from .glm4_fast_encoder import GLM4FastEncoder
from .glm4_spec import GLM4PaddingRules
from .glm4_state import _ADDED_STATE, _Cache, _FastHost, _NameSet
from .glm4_tokens import PREFIX_TOKENS, _as_id_list

__all__ = ["GLM4FastSpecMixin"]


# ------------------------------------------------------------------------------------------------ mixin
def _one_row(output: Any) -> Dict[str, Any]:
    """The fields of a one-row batch without their batch axis."""
    return {key: value[0] if value and isinstance(value[0], list) else value for key, value in output.items()}


#: transformers 5 (its fast tokenizers encode in ``_encode_plus``; 4.x in ``_batch_encode_plus``). Set at import and
#: never changed: a remote-code copy of this module is pickled with its globals for ``datasets`` fingerprints.
_TRANSFORMERS_5 = int(_TRANSFORMERS_VERSION.split(".")[0]) >= 5


def _valid_text_input(value: Any) -> bool:
    """A text, a batch of texts, a pretokenized text or a batch of pretokenized texts/pairs (as transformers 5)."""
    if isinstance(value, str):
        return True
    if not isinstance(value, (list, tuple)):
        return False
    if not value or isinstance(value[0], str):
        return True
    if not isinstance(value[0], (list, tuple)):
        return False
    inner = value[0]
    if not inner or isinstance(inner[0], str):
        return True
    return isinstance(inner[0], (list, tuple)) and (not inner[0] or isinstance(inner[0][0], str))


def _encode_keywords() -> Tuple[str, ...]:
    return (
        "return_token_type_ids", "return_attention_mask", "return_overflowing_tokens", "return_special_tokens_mask",
        "return_offsets_mapping", "return_length", "verbose",
    )  # fmt: skip


#: the keywords of transformers 4.x's ``PreTrainedTokenizerFast._batch_encode_plus``
_BATCH_KEYWORDS = _NameSet(
    set(_encode_keywords())
    | {
        "add_special_tokens",
        "padding_strategy",
        "truncation_strategy",
        "max_length",
        "stride",
        "is_split_into_words",
        "pad_to_multiple_of",
        "padding_side",
        "return_tensors",
        "split_special_tokens",
    }
)  # fmt: skip  (pickles sorted: stable datasets fingerprints)


#: tokenizer -> its GLM4FastEncoder. Kept outside the tokenizer: ``datasets`` fingerprints a tokenizer by its
#: ``__dict__``, which must not change when the tokenizer is first used.
_ENCODERS: _Cache[Any, GLM4FastEncoder] = _Cache()


class GLM4FastSpecMixin(GLM4PaddingRules, _FastHost):
    """The prefix rule for a transformers fast tokenizer, on the Rust tokenizer's own encodings (the fast spec).

    The Rust tokenizer stays the checkpoint's own: ``tok._tokenizer`` / ``tok.backend_tokenizer`` is a genuine
    ``tokenizers.Tokenizer`` (``DecodeStream``, ``to_str``, pickling, vLLM's detokenizer and structured-output
    backends take it as it is; its own ``encode`` is the checkpoint's, without the fix). The fix sits where
    transformers encodes: ``_encode_plus`` (transformers 5) and ``_batch_encode_plus`` (4.x; its ``_encode_plus``,
    ``encode``, ``tokenize`` go through it) set truncation and padding as transformers does, get the rows from a
    ``GLM4FastEncoder`` over the Rust tokenizer (``_glm4_encodings``) and build the ``BatchEncoding`` from them with
    transformers' ``_convert_encoding`` (``_glm4_batch``), so ``attention_mask``, ``token_type_ids``,
    ``special_tokens_mask``, ``offset_mapping``, overflow rows and ``BatchEncoding.encodings`` follow the fixed
    ids. The special-token hooks (``build_inputs_with_special_tokens``, ``prepare_for_model`` on 4.x, ...) read the
    same rule from the post-processor, ``_pad`` is the slow tokenizer's (``GLM4PaddingRules``, shared), ``_decode``
    refuses ids outside the vocabulary and ``_save_pretrained`` writes a config both transformers lines load.

    Laid over ``PreTrainedTokenizerFast`` alone (``class T(GLM4FastSpecMixin, PreTrainedTokenizerFast)``) it is a
    complete fixed fast tokenizer; ``GLM4FastRouteMixin`` (the accelerator) gives the same output faster, and
    ``tests/accelerator/test_fast_route_equals_spec.py`` compares the two.
    """

    # -- the encoder (one per Rust tokenizer; made on first use, dropped when pickling)
    def _glm4_encoder(self) -> GLM4FastEncoder:
        backend = self._tokenizer
        encoder = _ENCODERS.get(self)
        state = _ADDED_STATE.get(self)
        if encoder is None or encoder.backend is not backend or encoder.added_state is not state:
            encoder = _ENCODERS[self] = GLM4FastEncoder(backend, self._glm4_prefix_ids(backend), state)
        return encoder

    def _add_tokens(self, new_tokens: Any, special_tokens: bool = False) -> int:
        # transformers' one way in for new added tokens and new flags of one (both lines): what is built from the
        # added tokens is made again (see _ADDED_STATE); reading them all on every call would cost ~0.1 s
        try:
            return super()._add_tokens(new_tokens, special_tokens=special_tokens)
        finally:
            _ADDED_STATE[self] = object()

    @staticmethod
    def _glm4_prefix_ids(backend: Any) -> List[int]:
        ids = [backend.token_to_id(token) for token in PREFIX_TOKENS]
        if None in ids:
            raise ValueError(f"{' and '.join(PREFIX_TOKENS)} must be tokens of a GLM-4 tokenizer (got ids {ids})")
        return ids

    def glm4_prefix_policy(self) -> str:
        """``"adds"`` when the tokenizer puts ``[gMASK]<sop>`` in front of texts lacking it, else ``"none"``."""
        return "none" if self._glm4_encoder().rule() is None else "adds"

    # -- encoding: where transformers calls the Rust tokenizer's encode_batch
    def _glm4_encodings(self, items: List[Any], is_pretokenized: bool, add_special_tokens: bool) -> List[Any]:
        """The fixed ``tokenizers.Encoding`` of each row (a text or a pair), with the settings transformers set."""
        return self._glm4_encoder().encode_batch(items, is_pretokenized=is_pretokenized,
                                                 add_special_tokens=add_special_tokens)  # fmt: skip

    def _glm4_batch(
        self,
        items: List[Any],
        *,
        add_special_tokens: bool,
        padding_strategy: Any,
        truncation_strategy: Any,
        max_length: Optional[int],
        stride: int,
        is_split_into_words: bool,
        pad_to_multiple_of: Optional[int],
        padding_side: Optional[str],
        return_tensors: Any,
        split_special_tokens: bool,
        convert: Dict[str, Any],
        truncation_side: Optional[str] = None,
    ):
        """The ``BatchEncoding`` of a batch of rows: one entry per row and overflow piece, as transformers builds
        it from the Rust encodings (``overflow_to_sample_mapping`` when overflow rows are asked for).
        ``truncation_side``: this call's own side (None: the tokenizer's)."""
        if not isinstance(items, (list, tuple)):
            raise TypeError(f"batch_text_or_text_pairs has to be a list or a tuple (got {type(items)})")
        self.set_truncation_and_padding(
            padding_strategy=padding_strategy,
            truncation_strategy=truncation_strategy,
            max_length=max_length,  # type: ignore[arg-type]  # None as transformers passes it (5.x annotates int)
            stride=stride,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
        )
        backend = self._tokenizer
        if truncation_side is not None and backend.truncation is not None:  # the call's own side
            backend.enable_truncation(**{**backend.truncation, "direction": truncation_side})
        if backend.encode_special_tokens != split_special_tokens:
            backend.encode_special_tokens = split_special_tokens
        encodings = self._glm4_encodings(list(items), is_split_into_words, add_special_tokens)
        converted = [self._convert_encoding(encoding=e, **convert) for e in encodings]
        data: Dict[str, List[Any]] = {}
        for key in converted[0][0] if converted else ("input_ids",):
            data[key] = [value for fields, _ in converted for value in fields[key]]
        pieces = [e for _, row in converted for e in row]
        if convert.get("return_overflowing_tokens"):
            data["overflow_to_sample_mapping"] = [
                i for i, (fields, _) in enumerate(converted) for _ in fields["input_ids"]
            ]
        for ids in data["input_ids"]:
            self._eventual_warn_about_too_long_sequence(ids, max_length, convert.get("verbose", True))
        return BatchEncoding(data, pieces, tensor_type=return_tensors)

    def _glm4_single(self, output: Any) -> Any:
        """A one-row batch without its batch axis (as transformers returns a single text)."""
        return BatchEncoding(_one_row(output), output.encodings)

    def _batch_encode_plus(self, batch_text_or_text_pairs: Any, *args: Any, **kwargs: Any):
        """transformers 4.x: every encoding of a fast tokenizer comes here (``__call__``, ``encode``, ``tokenize``)."""
        if args or _TRANSFORMERS_5:
            return super()._batch_encode_plus(batch_text_or_text_pairs, *args, **kwargs)  # type: ignore[misc]  # 4.x only
        if set(kwargs) - _BATCH_KEYWORDS:  # transformers' own error for a keyword it does not take
            return super()._batch_encode_plus(batch_text_or_text_pairs, **kwargs)  # type: ignore[misc]  # 4.x only
        from transformers.tokenization_utils_base import PaddingStrategy, TruncationStrategy

        convert = {key: kwargs.pop(key) for key in _encode_keywords() if key in kwargs}
        return self._glm4_batch(
            batch_text_or_text_pairs,
            add_special_tokens=kwargs.pop("add_special_tokens", True),
            padding_strategy=kwargs.pop("padding_strategy", PaddingStrategy.DO_NOT_PAD),
            truncation_strategy=kwargs.pop("truncation_strategy", TruncationStrategy.DO_NOT_TRUNCATE),
            max_length=kwargs.pop("max_length", None),
            stride=kwargs.pop("stride", 0),
            is_split_into_words=kwargs.pop("is_split_into_words", False),
            pad_to_multiple_of=kwargs.pop("pad_to_multiple_of", None),
            padding_side=kwargs.pop("padding_side", None),
            return_tensors=kwargs.pop("return_tensors", None),
            split_special_tokens=bool(kwargs.pop("split_special_tokens", False)),
            convert=convert,
        )

    def _encode_plus(self, text: Any = None, text_pair: Any = None, *args: Any, **kwargs: Any):
        """transformers 5: every encoding of a fast tokenizer comes here (``__call__``, ``encode``, ``tokenize``)."""
        if (
            not args
            and not _TRANSFORMERS_5
            and isinstance(text, str)
            and not text_pair
            and kwargs.get("return_tensors") is None
            and not kwargs.get("return_overflowing_tokens")
            and not kwargs.get("is_split_into_words")
            and kwargs.keys() <= _BATCH_KEYWORDS
        ):  # 4.x's own _encode_plus, without reading the batch's encodings (a batch may make them lazily)
            output = self._batch_encode_plus([text], **kwargs)
            single = self._glm4_single(output)
            self._eventual_warn_about_too_long_sequence(
                single["input_ids"], kwargs.get("max_length"), kwargs.get("verbose", True)
            )
            return single
        if args or not _TRANSFORMERS_5 or kwargs.get("sanitize_control_tokens"):
            return super()._encode_plus(text, text_pair, *args, **kwargs)
        from transformers.tokenization_utils_base import PaddingStrategy, TruncationStrategy

        is_split = bool(kwargs.get("is_split_into_words", False))
        for value in (text, text_pair):
            if value is not None and not _valid_text_input(value):
                raise ValueError(
                    "text input must be of type `str` (single example), `list[str]` (batch or single pretokenized "
                    "example) or `list[list[str]]` (batch of pretokenized examples) or "
                    "`list[tuple[list[str], list[str]]]` (batch of pretokenized sequence pairs)."
                )
        if is_split:
            batched = isinstance(text, (list, tuple)) and bool(text) and isinstance(text[0], (list, tuple))
        else:
            batched = isinstance(text, (list, tuple))
        if batched:
            if isinstance(text_pair, str):
                raise TypeError(
                    "when tokenizing batches of text, `text_pair` must be a list or tuple with the same length as"
                    " `text`."
                )
            if text_pair is not None and len(text) != len(text_pair):
                raise ValueError(
                    f"batch length of `text`: {len(text)} does not match batch length of `text_pair`: {len(text_pair)}."
                )
            items = list(zip(text, text_pair)) if text_pair is not None else text
        else:
            items = [(text, text_pair)] if text_pair else [text]
        split = kwargs.pop("split_special_tokens", None)
        return_tensors = kwargs.pop("return_tensors", None)
        convert = {key: kwargs.pop(key) for key in _encode_keywords() if key in kwargs}
        output = self._glm4_batch(
            items,
            add_special_tokens=kwargs.pop("add_special_tokens", True),
            padding_strategy=kwargs.pop("padding_strategy", PaddingStrategy.DO_NOT_PAD),
            truncation_strategy=kwargs.pop("truncation_strategy", TruncationStrategy.DO_NOT_TRUNCATE),
            max_length=kwargs.pop("max_length", None),
            stride=kwargs.pop("stride", 0),
            is_split_into_words=is_split,
            pad_to_multiple_of=kwargs.pop("pad_to_multiple_of", None),
            padding_side=kwargs.pop("padding_side", None),
            return_tensors=return_tensors,
            split_special_tokens=self.split_special_tokens if split is None else split,
            convert=convert,
        )
        if batched or return_tensors is not None or convert.get("return_overflowing_tokens"):
            return output

        return self._glm4_single(output)

    # -- special tokens by hand (prepare_for_model, collators that build ids themselves)
    def _glm4_with_template(
        self, token_ids_0: Sequence[int], token_ids_1: Optional[Sequence[int]]
    ) -> Optional[Tuple[List[int], List[int], List[int]]]:
        """(ids, special-tokens mask, type ids) of the ids laid into the post-processor's template, without the
        template's ``[gMASK]<sop>`` when ``token_ids_0`` already starts with it; None when it adds no prefix."""
        rule = self._glm4_encoder().rule()
        if rule is None:
            return None
        pair = token_ids_1 is not None
        pieces = rule.pair_pieces if pair else rule.single_pieces
        if (rule.pair or not pair) and list(token_ids_0[: len(rule.ids)]) == rule.ids:
            pieces = pieces[len(rule.ids) :]
        ids: List[int] = []
        mask: List[int] = []
        types: List[int] = []
        part: Sequence[int]
        for piece in pieces:
            if "SpecialToken" in piece:
                part, special, type_id = rule.special[piece["SpecialToken"]["id"]], 1, piece["SpecialToken"]["type_id"]
            else:
                part = token_ids_0 if piece["Sequence"]["id"] == "A" else (token_ids_1 or [])
                special, type_id = 0, piece["Sequence"]["type_id"]
            ids += part
            mask += [special] * len(part)
            types += [type_id] * len(part)
        return ids, mask, types

    def build_inputs_with_special_tokens(
        self, token_ids_0: List[int], token_ids_1: Optional[List[int]] = None
    ) -> List[int]:
        """The template's special tokens around the ids; ``[gMASK]<sop>`` only when ``token_ids_0`` lacks it."""
        built = self._glm4_with_template(token_ids_0, token_ids_1)
        if built is None:
            return super().build_inputs_with_special_tokens(token_ids_0, token_ids_1)  # type: ignore[misc]  # 4.x's fast base only
        return built[0]

    def get_special_tokens_mask(
        self, token_ids_0: List[int], token_ids_1: Optional[List[int]] = None, already_has_special_tokens: bool = False
    ) -> List[int]:
        built = None if already_has_special_tokens else self._glm4_with_template(token_ids_0, token_ids_1)
        if built is None:
            return super().get_special_tokens_mask(
                token_ids_0, token_ids_1, already_has_special_tokens=already_has_special_tokens
            )
        return built[1]

    def create_token_type_ids_from_sequences(
        self, token_ids_0: List[int], token_ids_1: Optional[List[int]] = None
    ) -> List[int]:
        built = self._glm4_with_template(token_ids_0, token_ids_1)
        if built is None:
            return super().create_token_type_ids_from_sequences(token_ids_0, token_ids_1)  # type: ignore[misc]  # 4.x's only
        return built[2]

    # -- saving
    def _save_pretrained(self, save_directory: Any, file_names: Tuple[str, ...], *args: Any, **kwargs: Any):
        """After ``save_pretrained`` wrote ``tokenizer_config.json``: the config is made to load on either
        transformers line, without remote code. transformers 5 writes the added special tokens as an
        ``extra_special_tokens`` list, which 4.x cannot read (it wants a dict and fails on ``.keys()``, reported as a
        missing protobuf), and drops ``additional_special_tokens`` of its ``TokenizersBackend`` (so converting in
        ``save_chat_templates`` lost them): the list is written as ``additional_special_tokens``, which both lines
        read. ``tokenizer_class`` is transformers' own fast class (``PreTrainedTokenizerFast``, which both lines
        know), not this class: the fixed class stays reachable through ``auto_map``."""
        files = super()._save_pretrained(save_directory, file_names, *args, **kwargs)
        for name in file_names:
            if not str(name).endswith("tokenizer_config.json"):
                continue
            with open(name, encoding="utf-8") as f:
                config = json.load(f)
            extra = config.get("extra_special_tokens")
            if isinstance(extra, (list, tuple)):
                del config["extra_special_tokens"]
                config["additional_special_tokens"] = list(extra)
            if config.get("tokenizer_class") in ("ChatGLM4TokenizerFast", "TokenizersBackend"):
                config["tokenizer_class"] = "PreTrainedTokenizerFast"
            with open(name, "w", encoding="utf-8") as f:
                f.write(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        return files

    if int(_TRANSFORMERS_VERSION.split(".")[0]) < 5:  # transformers 5's fast tokenizers have no prepare_for_model

        def prepare_for_model(self, ids: List[int], pair_ids: Optional[List[int]] = None, *args: Any, **kwargs: Any):
            """transformers 4.x ``prepare_for_model`` with the prefix counted once: ids that already start with
            ``[gMASK]<sop>`` give that copy back to the template, so truncation keeps ``max_length`` tokens
            (transformers reserved room for a second prefix that is not added), as on the slow tokenizer."""
            rule = self._glm4_encoder().rule()
            if (
                not args
                and kwargs.get("add_special_tokens", True)
                and rule is not None
                and (pair_ids is None or rule.pair)
                and list(ids[: len(rule.ids)]) == rule.ids
            ):
                ids = list(ids[len(rule.ids) :])
            return super().prepare_for_model(ids, pair_ids, *args, **kwargs)  # type: ignore[misc]  # 4.x's fast base only

    # -- decoding
    def _decode(self, token_ids: Any, skip_special_tokens: bool = False, **kwargs: Any) -> str:  # type: ignore[override]  # ids as _as_id_list takes them; the rest through **kwargs
        """The Rust tokenizer's decoding, with an id outside the vocabulary a ``ValueError`` (not ``''``)."""
        ids = _as_id_list(token_ids, "token_ids")
        size = self._tokenizer.get_vocab_size(with_added_tokens=True)
        for index in ids:
            if not 0 <= index < size:
                raise ValueError(f"token id {index} is outside the vocabulary (0..{size - 1})")
        return super()._decode(ids, skip_special_tokens=skip_special_tokens, **kwargs)
