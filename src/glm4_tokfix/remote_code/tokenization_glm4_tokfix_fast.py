# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""``GLM4FastFixMixin`` and ``ChatGLM4TokenizerFast``: the prefix rule for transformers-native fast tokenizers.

glm-4-9b-chat-hf's post-processor adds ``[gMASK]<sop>`` to every text, so a rendered chat gets it twice; the mixin
adds it exactly when missing, reading the policy from the tokenizer's own post-processor (one that adds nothing
keeps that policy). The Rust tokenizer stays the checkpoint's own; padding uses the slow tokenizer's rules.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

from transformers import BatchEncoding, PreTrainedTokenizerFast
from transformers import __version__ as _TRANSFORMERS_VERSION

from .glm4_chat import GLM4ChatMixin

# transformers 4.x copies only the files a remote-code module imports itself (not their imports): name
# every bundle module this one needs
from .glm4_encoders import _disjoint_literals as _glm4_encoders  # noqa: F401
from .glm4_fast_route import (
    _CALL_ROUTE,
    GLM4FastEncoder,
    GLM4LazyBatchEncoding,
    PrefixRule,
    _added_tokens_unchanged,
    _added_top,
    _FastRoute,
    _has_lone_surrogate,
    _NotStandard,
    _single,
    _Source,
    _template_of,
    standard_glm4_vocab,
)
from .glm4_offset_mixin import GLM4OffsetsMixin as _glm4_offset_mixin  # noqa: F401
from .glm4_offsets import _UTF8_CONTINUATION as _glm4_offsets  # noqa: F401
from .glm4_padding import GLM4PaddingMixin
from .glm4_rows import GLM4BatchEncoder
from .glm4_spans import _ROLE_LITERAL as _glm4_spans  # noqa: F401
from .glm4_spec import GLM4SpecMixin as _glm4_spec  # noqa: F401
from .glm4_state import _ADDED_STATE, _Cache, _FastHost, _NameSet
from .glm4_templates import _GENERATION as _glm4_templates  # noqa: F401
from .glm4_tokens import PREFIX_TEXT, PREFIX_TOKENS, _as_id_list
from .glm4_vocab import load_tiktoken_ranks as _glm4_vocab  # noqa: F401
from .tokenization_glm4_tokfix import GLM4FixMixin

__all__ = ["ChatGLM4TokenizerFast", "GLM4FastFixMixin"]


# ------------------------------------------------------------------------------------------------ mixin
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


#: tokenizer -> (what its Rust tokenizer looked like, its fast route or None, why not, its highest added id); same
#: reason
_ROUTES: _Cache[Any, Tuple[Any, Optional[_FastRoute], Optional[str], int]] = _Cache()


class GLM4FastFixMixin(GLM4ChatMixin, GLM4PaddingMixin, _FastHost):
    """The GLM-4 fix as methods to lay over a transformers fast tokenizer class (put it first in the bases).

    The Rust tokenizer stays the checkpoint's own: ``tok._tokenizer`` / ``tok.backend_tokenizer`` is a genuine
    ``tokenizers.Tokenizer`` (``DecodeStream``, ``to_str``, pickling, vLLM's detokenizer and structured-output
    backends take it as it is; its own ``encode`` is the checkpoint's, without the fix). The fix sits where
    transformers encodes: ``_encode_plus`` (transformers 5) and ``_batch_encode_plus`` (4.x; its ``_encode_plus``,
    ``encode``, ``tokenize`` go through it) set truncation and padding as transformers does, get the rows from a
    ``GLM4FastEncoder`` over the Rust tokenizer (``_glm4_encodings``) and build the ``BatchEncoding`` from them with
    transformers' ``_convert_encoding``, so ``attention_mask``, ``token_type_ids``, ``special_tokens_mask``,
    ``offset_mapping``, overflow rows and ``BatchEncoding.encodings`` follow the fixed ids. ``pad()`` (collators)
    follows the slow tokenizer's exact padding rules, ``GLM4PaddingMixin``; ``apply_chat_template`` gains
    assistant-token masks (GLM-4 templates without ``{% generation %}`` markers are swapped for their marked
    copies) and, on transformers 4.x, ``sanitize_control_tokens``, as on the slow tokenizer (``GLM4ChatMixin``).
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

    # -- the fast route: plain texts through the slow fix's fast path, when the tokenizer.json is GLM-4's own
    #: When True (the default), plain texts (no pairs, words, overflow or lengths) of a tokenizer whose
    #: ``tokenizer.json`` is provably GLM-4-standard (``standard_glm4_vocab``) are encoded by the slow fix's fast
    #: path on an encoder backend built from the Rust vocabulary: same fields as the Rust route; the
    #: ``BatchEncoding``'s Rust encodings are computed by that route on first access (``GLM4LazyBatchEncoding``).
    glm4_fast_path = True
    #: as on ``ChatGLM4Tokenizer``: the encoder backend ("tiktoken"/"fastokens"; None: $GLM4_TOKFIX_ENCODER, else
    #: fastokens when installed), the threads of a large batch, and the batch size from which threads are used
    glm4_encoder: Optional[str] = None
    glm4_encode_threads: Optional[int] = None
    glm4_parallel_min_chars = 65_536

    _glm4_fast_encode = GLM4BatchEncoder._glm4_fast_encode
    _glm4_bodies = GLM4BatchEncoder._glm4_bodies
    _glm4_row_lists = GLM4BatchEncoder._glm4_row_lists
    _glm4_row_arrays = GLM4BatchEncoder._glm4_row_arrays
    _glm4_encode_texts = GLM4BatchEncoder._glm4_encode_texts
    _glm4_thread_count = GLM4BatchEncoder._glm4_thread_count
    glm4_encoder_name = GLM4BatchEncoder.glm4_encoder_name

    def _glm4_route_state(self) -> Tuple[Optional[_FastRoute], Optional[str]]:
        """The fast route of the Rust tokenizer's current state, or (None, why not). Made on first use, again
        when the Rust tokenizer, its vocabulary size, added tokens (transformers' ``_add_tokens``, or one added
        through the Rust tokenizer: ``_added_tokens_unchanged``), normalizer, pre-tokenizer or decoder change."""
        backend = self._tokenizer
        key = (
            # with_added_tokens=True would cost ~70 ms a call on tokenizers 0.22 (transformers 4.x), which builds the
            # whole vocabulary for it; the added tokens' repr ~0.2 s with 16,384 of them
            id(backend), backend.get_vocab_size(with_added_tokens=False), _ADDED_STATE.get(self),
            *(None if part is None else part.__getstate__() for part in
              (backend.normalizer, backend.pre_tokenizer, backend.decoder)),
        )  # fmt: skip
        cached = _ROUTES.get(self)
        if cached is not None and cached[0] == key and _added_tokens_unchanged(backend, cached[3]):
            return cached[1], cached[2]
        top = _added_top(backend)
        found, reason = standard_glm4_vocab(json.loads(backend.to_str()))
        route = None if found is None else _FastRoute(*found)
        _ROUTES[self] = (key, route, reason, top)  # one assignment
        return route, reason

    def glm4_fast_route_reason(self) -> Optional[str]:
        """None when plain texts can take the fast route, else why they go through the Rust tokenizer."""
        if not self.glm4_fast_path:
            return "glm4_fast_path is False"
        route, reason = self._glm4_route_state()
        if route is None:
            return reason
        try:
            self._glm4_prefix_policy_ok()
        except _NotStandard as exc:
            return str(exc)
        return None

    def _glm4_prefix_policy_ok(self) -> Optional[PrefixRule]:
        """The prefix rule when the post-processor is one the fast path reproduces exactly (the prefix with type
        id 0 then ``$A:0``, or nothing added); else ``_NotStandard``."""
        encoder = self._glm4_encoder()
        rule = encoder.rule()
        if rule is not None:
            n = len(rule.ids)
            if rule.tail is not None or any(p["SpecialToken"]["type_id"] for p in rule.single_pieces[:n]):
                raise _NotStandard("the post-processor adds more than [gMASK]<sop> (type id 0)")
            return rule
        processor = encoder.backend.post_processor
        if processor is not None:
            state = json.loads(processor.__getstate__())
            template = _template_of(state)
            kinds = [state] if state.get("type") != "Sequence" else state.get("processors", [])
            plain = template is None or template.get("single") == [{"Sequence": {"id": "A", "type_id": 0}}]
            if not plain or any(k.get("type") not in ("ByteLevel", "TemplateProcessing") for k in kinds):
                raise _NotStandard("the post-processor adds tokens or type ids the fast route does not")
        return None

    # offsets and assistant masks from per-id character tables, as on the slow fix
    _glm4_offsets = GLM4FixMixin._glm4_offsets

    def _glm4_offset_tables(self) -> Optional[Tuple[List[int], List[int], frozenset]]:
        """The fast route's per-id character tables (offsets and assistant masks from the ids, as on the slow
        fix), or None when plain texts do not take the fast route or the post-processor trims offsets (then
        offsets and masks come from the Rust encodings)."""
        if not self.glm4_fast_path:
            return None
        route, _ = self._glm4_route_state()
        if route is None:
            return None
        try:
            self._glm4_prefix_policy_ok()
        except _NotStandard:
            return None
        processor = self._tokenizer.post_processor
        if processor is not None:
            state = json.loads(processor.__getstate__())
            for kind in state.get("processors", []) if state.get("type") == "Sequence" else [state]:
                if kind.get("type") != "TemplateProcessing" and (
                    kind.get("type") != "ByteLevel" or kind.get("trim_offsets", True)
                ):
                    return None  # ByteLevel(trim_offsets=True) (or another processor) moves the offsets
        return route.offset_tables()

    def _glm4_stripping_ids(self) -> Dict[int, Any]:
        return {}  # the fast route's added tokens strip no whitespace (standard_glm4_vocab)

    def _glm4_mask_literals(self) -> Optional[Dict[str, int]]:
        """The fast route's added tokens (standard_glm4_vocab: ids outside the BPE vocabulary, not overlapping one
        another), when no one of them can overlap itself either; None off the fast route."""
        if self._glm4_offset_tables() is None:
            return None
        route, _ = self._glm4_route_state()
        if route is None or not route.literals_disjoint():
            return None
        return route.added

    def _glm4_text_encoder(self, split_special_tokens: Optional[bool]) -> Any:
        route = _CALL_ROUTE.get()  # the route this call checked (per thread/task), else the current one
        if route is None:
            route, _ = self._glm4_route_state()
        if split_special_tokens is None:
            split_special_tokens = self.split_special_tokens
        return route.text_encoder(self.glm4_encoder_name(), bool(split_special_tokens))  # type: ignore[misc]  # a GLM4BatchEncoder method borrowed (class attribute)

    def _glm4_call_prefix(self, add_special_tokens: bool) -> Optional[List[int]]:
        rule = self._glm4_encoder().rule() if add_special_tokens else None
        return None if rule is None else list(rule.ids)

    def _glm4_fast_route_takes(
        self, items: Any, add_special_tokens: bool, padding_strategy: Any, truncation_strategy: Any,
        max_length: Optional[int], stride: int, is_split_into_words: bool, split_special_tokens: bool,
        convert: Dict[str, Any],
    ) -> bool:  # fmt: skip
        """Whether this call's rows and options are ones the fast route gives exactly as the Rust route."""
        from transformers.tokenization_utils_base import PaddingStrategy, TruncationStrategy

        if not self.glm4_fast_path or is_split_into_words or not items:
            return False
        if not all(isinstance(item, str) for item in items):
            return False
        if _has_lone_surrogate(items):
            return False  # the Rust route's own error for a lone surrogate (the fast path would write U+FFFD)
        if convert.get("return_overflowing_tokens") or convert.get("return_length"):
            return False
        if convert.get("return_offsets_mapping") and self._glm4_offset_tables() is None:
            return False
        if convert.get("return_token_type_ids") and not add_special_tokens:
            return False
        if "position_ids" in self.model_input_names:
            return False
        if PaddingStrategy(padding_strategy) != PaddingStrategy.DO_NOT_PAD and self.pad_token_id is None:
            return False
        route, _ = self._glm4_route_state()
        if route is None:
            return False
        try:
            rule = self._glm4_prefix_policy_ok()
        except _NotStandard:
            return False
        truncation = TruncationStrategy(truncation_strategy)
        if truncation != TruncationStrategy.DO_NOT_TRUNCATE and max_length is not None:
            if truncation == TruncationStrategy.ONLY_SECOND or stride:
                return False
            added = len(rule.ids) if (rule is not None and add_special_tokens) else 0
            if max_length <= added or self.truncation_side not in ("left", "right"):
                return False  # the Rust route's own errors
        if (  # noqa: SIM103 -- each refusal above and here names its reason
            convert.get("return_special_tokens_mask")
            and rule is not None
            and add_special_tokens
            and not split_special_tokens
            and any(item.startswith(PREFIX_TEXT) for item in items)
        ):
            return False  # a literal prefix is text (mask 0) there, not the template's
        return True

    def _glm4_call_state(self) -> Tuple[Any, Any]:
        """What a fast-route batch's encodings depend on besides the call's options: (its route, its rule)."""
        return self._glm4_route_state()[0], self._glm4_encoder().rule()

    def _glm4_fast_batch(self, items: List[str], rust: Any, **options: Any) -> GLM4LazyBatchEncoding:
        """The fast path's ``BatchEncoding`` of plain texts, its Rust encodings made by ``rust()`` on first use."""
        convert = options.pop("convert")
        token = _CALL_ROUTE.set(self._glm4_route_state()[0])
        try:
            built = self._glm4_fast_encode(  # type: ignore[misc]  # GLM4BatchEncoder's method, borrowed as a class attribute
                list(items),
                batched=True,
                return_token_type_ids=convert.get("return_token_type_ids"),
                return_attention_mask=convert.get("return_attention_mask"),
                return_special_tokens_mask=bool(convert.get("return_special_tokens_mask")),
                return_offsets_mapping=bool(convert.get("return_offsets_mapping")),
                verbose=convert.get("verbose", True),
                **options,
            )
        finally:
            _CALL_ROUTE.reset(token)
        data = built.data
        order = ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask")  # _convert_encoding's
        data = {key: data[key] for key in (*order, *data) if key in data}
        return GLM4LazyBatchEncoding(data, _Source(rust))

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
        rust_route: bool = False,
        truncation_side: Optional[str] = None,
    ):
        """The ``BatchEncoding`` of a batch of rows: one entry per row and overflow piece, as transformers builds
        it from the Rust encodings (``overflow_to_sample_mapping`` when overflow rows are asked for). Plain texts
        take the fast route when it applies (``_glm4_fast_route_takes``; ``rust_route=True``: never)."""
        if not isinstance(items, (list, tuple)):
            raise TypeError(f"batch_text_or_text_pairs has to be a list or a tuple (got {type(items)})")
        options = dict(
            add_special_tokens=add_special_tokens, padding_strategy=padding_strategy,
            truncation_strategy=truncation_strategy, max_length=max_length, pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side, return_tensors=return_tensors, split_special_tokens=split_special_tokens,
        )  # fmt: skip
        if not rust_route and self._glm4_fast_route_takes(
            items, add_special_tokens, padding_strategy, truncation_strategy, max_length, stride,
            is_split_into_words, split_special_tokens, convert,
        ):  # fmt: skip
            rows = list(items)
            # the encodings, made on first access, are this call's: its sides, not the tokenizer's later ones
            options["padding_side"] = padding_side or self.padding_side
            side = self.truncation_side
            state = (self.pad_token_id, self.pad_token_type_id, *self._glm4_call_state())

            def rust() -> List[Any]:
                if (self.pad_token_id, self.pad_token_type_id, *self._glm4_call_state()) != state:
                    raise RuntimeError(
                        "this tokenizer's vocabulary, post-processor or padding token changed after this batch was "
                        "encoded: its encodings can no longer be made as they were (read batch.encodings before "
                        "changing the tokenizer, or set tok.glm4_fast_path = False)"
                    )
                return self._glm4_batch(rows, stride=stride, is_split_into_words=False, convert=dict(convert),
                                        rust_route=True, truncation_side=side, **options).encodings  # fmt: skip

            return self._glm4_fast_batch(rows, rust, convert=convert, **options)
        self.set_truncation_and_padding(
            padding_strategy=padding_strategy,
            truncation_strategy=truncation_strategy,
            max_length=max_length,  # type: ignore[arg-type]  # None as transformers passes it (5.x annotates int)
            stride=stride,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
        )
        backend = self._tokenizer
        if truncation_side is not None and backend.truncation is not None:  # a fast-route call's own side
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
        ):  # 4.x's own _encode_plus, without reading the batch's encodings (a fast-route batch makes them lazily)
            output = self._batch_encode_plus([text], **kwargs)
            single = _single(output)
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

        return _single(output)

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


class ChatGLM4TokenizerFast(GLM4FastFixMixin, PreTrainedTokenizerFast):
    """A GLM-4 fast tokenizer (``tokenizer.json``) with ``[gMASK]<sop>`` added only when missing.

    Loads any transformers-native GLM-4 tokenizer folder::

        tok = ChatGLM4TokenizerFast.from_pretrained("path/to/glm-4-9b-chat-hf")
        batch = tok([tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in chats],
                    padding=True, return_tensors="pt")

    ``save_pretrained`` writes this module and the bundle modules it imports next to ``tokenizer.json`` so the folder
    loads the fixed class through ``AutoTokenizer.from_pretrained(folder, trust_remote_code=True)``.
    """

    _auto_class = "AutoTokenizer"
    model_input_names = ["input_ids", "attention_mask"]
