# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""The GLM-4 fix for transformers-native fast tokenizers (``tokenizer.json``).

glm-4-9b-chat-hf, GLM-4-0414, GLM-4.5, ... load as transformers' ``PreTrainedTokenizerFast`` (on transformers 5:
``TokenizersBackend``) over a Rust ``tokenizers.Tokenizer``. glm-4-9b-chat-hf's post-processor is
``TemplateProcessing(single="[gMASK]:0 <sop>:0 $A:0", pair="[gMASK]:0 <sop>:0 $A:0 $B:1")``, so a rendered chat,
which already starts with ``[gMASK]<sop>``, gets the prefix twice. This module applies the rule of
``tokenization_chatglm`` -- the prefix is added exactly when it is missing -- to those tokenizers:

``GLM4FastFixMixin``
    Laid over a fast tokenizer class (``glm4_tokfix.patch`` does it for a loaded tokenizer). It hands transformers
    a ``GLM4FastBackend`` in place of the Rust tokenizer, so everything transformers builds from the Rust
    encodings -- ``attention_mask``, ``token_type_ids``, ``special_tokens_mask``, ``offset_mapping``, overflow rows,
    ``BatchEncoding.encodings`` -- follows the fixed ids. Padding (``pad()``) uses the slow tokenizer's exact rules.

``ChatGLM4TokenizerFast``
    ``GLM4FastFixMixin`` over ``PreTrainedTokenizerFast``: what ``glm4-tokfix patch``/``convert`` point a
    ``tokenizer.json`` folder at (``auto_map``), so it loads fixed with ``trust_remote_code=True`` and without
    glm4-tokfix installed.

The prefix policy is read from the tokenizer's own post-processor: a template whose single form starts with
``[gMASK] <sop>`` adds the prefix (glm-4-9b-chat-hf); a post-processor that adds nothing (GLM-4-0414, GLM-4.5) keeps
that policy, and the patched tokenizer's ids equal the unpatched ones for every text::

    >>> tok("[gMASK]<sop><|user|>\\nhi").input_ids == tok("<|user|>\\nhi").input_ids   # chat-hf style, patched
    True

A row whose text starts with the literal prefix is encoded without the template's copy: its prefix tokens are
text tokens (offsets into the text, ``special_tokens_mask`` 0, as the Rust tokenizer gives literals); a row
without one gets the template's prefix (offsets ``(0, 0)``, mask 1). With truncation the literal prefix is kept
and the rest is cut to fit, as on the slow tokenizer; pairs keep the checkpoint's pair format.

This module imports only ``tokenization_chatglm`` (relatively: in a model folder both files sit side by side),
the standard library and transformers/tokenizers.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

from transformers import PreTrainedTokenizerFast

from .tokenization_chatglm import PREFIX_TOKENS, GLM4ChatMixin, GLM4PaddingMixin, _as_id_list

__all__ = ["ChatGLM4TokenizerFast", "GLM4FastBackend", "GLM4FastFixMixin", "PrefixRule", "prefix_rule"]

PREFIX_TEXT = "".join(PREFIX_TOKENS)


# --------------------------------------------------------------------------------------------- the rule
class PrefixRule:
    """How a GLM-4 fast tokenizer's post-processor adds ``[gMASK]<sop>``, and how to add it only when missing.

    ``ids``: the prefix ids. ``pair``: whether the pair template adds it too. ``tail``: a post-processor equal to
    the tokenizer's own without the leading prefix (None when leaving the template out is exactly what
    ``encode(..., add_special_tokens=False)`` gives, i.e. the rest of the templates is ``$A:0`` / ``$A:0 $B:1``).
    ``single_pieces``/``pair_pieces``: the templates' pieces and ``special`` (template token -> its ids), to build
    ids by hand (``build_inputs_with_special_tokens``).
    """

    __slots__ = ("ids", "pair", "tail", "single_pieces", "pair_pieces", "special", "tail_added")

    def __init__(self, ids, pair, tail, single_pieces, pair_pieces, special):
        self.ids: List[int] = ids
        self.pair: bool = pair
        self.tail: Any = tail
        self.single_pieces: List[Dict[str, Any]] = single_pieces
        self.pair_pieces: List[Dict[str, Any]] = pair_pieces
        self.special: Dict[str, List[int]] = special
        # special tokens the templates add besides the prefix (single, pair)
        n = len(ids)
        tail_pair = pair_pieces[n:] if pair else pair_pieces
        self.tail_added: Tuple[int, int] = (self._count(single_pieces[n:]), self._count(tail_pair))

    def _count(self, pieces: Sequence[Dict[str, Any]]) -> int:
        return sum(len(self.special[p["SpecialToken"]["id"]]) for p in pieces if "SpecialToken" in p)

    def added(self, is_pair: bool) -> int:
        """Special tokens a row gets in all (prefix included) when special tokens are added."""
        return len(self.ids) + self.tail_added[is_pair] if (self.pair or not is_pair) else self.tail_added[is_pair]


def _template_of(state: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The TemplateProcessing step of a post-processor's JSON state (edited in place to make the tail)."""
    if state.get("type") == "TemplateProcessing":
        return state
    if state.get("type") == "Sequence":
        found = [step for step in state.get("processors", []) if step.get("type") == "TemplateProcessing"]
        if len(found) == 1:
            return found[0]
    return None


def _starts_with_prefix(pieces: Sequence[Dict[str, Any]], special: Dict[str, Any], prefix_ids: List[int]) -> bool:
    ids: List[int] = []
    for piece in pieces[: len(prefix_ids)]:
        token = piece.get("SpecialToken")
        if token is None:
            return False
        ids += special.get(token["id"], {}).get("ids", [])
    return ids == prefix_ids


def _is_plain(pieces: Sequence[Dict[str, Any]]) -> bool:
    """``$A:0`` or ``$A:0 $B:1``: what encoding without special tokens gives by itself."""
    expected = [("A", 0), ("B", 1)][: len(pieces)]
    got = [(p.get("Sequence", {}).get("id"), p.get("Sequence", {}).get("type_id")) for p in pieces]
    return len(pieces) in (1, 2) and got == expected


def prefix_rule(backend: Any, prefix_ids: List[int]) -> Optional[PrefixRule]:
    """The ``PrefixRule`` of a Rust tokenizer whose post-processor adds ``prefix_ids`` first; None if it adds none.

    Raises ``TypeError`` for a post-processor that adds the prefix in a way the fix cannot follow (only the pair
    template, or a JSON state it cannot read).
    """
    processor = backend.post_processor
    if processor is None:
        return None
    state = json.loads(processor.__getstate__())
    template = _template_of(state)
    if template is None:
        if "TemplateProcessing" in json.dumps(state) or state.get("type") in ("BertProcessing", "RobertaProcessing"):
            raise TypeError(f"cannot follow this post-processor's special tokens: {json.dumps(state)[:200]}")
        return None
    special = template.get("special_tokens", {})
    single, pair = template.get("single", []), template.get("pair", [])
    n = len(prefix_ids)
    if not _starts_with_prefix(single, special, prefix_ids):
        if _starts_with_prefix(pair, special, prefix_ids):
            raise TypeError("the post-processor adds [gMASK]<sop> to pairs only; glm4-tokfix cannot follow that")
        return None
    pair_adds = _starts_with_prefix(pair, special, prefix_ids)
    tail_single = single[n:]
    tail_pair = pair[n:] if pair_adds else pair
    tail = None
    if not (_is_plain(tail_single) and _is_plain(tail_pair)):
        template["single"], template["pair"] = tail_single, tail_pair
        from tokenizers import processors

        tail = processors.ByteLevel()  # any processor object: __setstate__ replaces what it holds
        tail.__setstate__(json.dumps(state).encode("utf-8"))
    token_ids = {name: list(entry["ids"]) for name, entry in special.items()}
    return PrefixRule(list(prefix_ids), pair_adds, tail, single, pair, token_ids)


# ------------------------------------------------------------------------------------------- truncation
def _keep_single(n: int, budget: int, strategy: str) -> int:
    """How many of a single sequence's ``n`` tokens fit in ``budget``, as the Rust tokenizer truncates one text:
    ``longest_first`` keeps ``budget``; ``only_first`` too, but a ``ValueError`` where it would have to remove
    every token; ``only_second`` has no second sequence to cut (``ValueError``)."""
    if n <= budget:
        return n
    if strategy == "only_second":
        raise ValueError("truncation='only_second' needs a pair of sequences")
    if strategy == "only_first" and budget <= 0:
        raise ValueError(f"the text ({n} tokens without the prefix) is too short to remove {n - budget} tokens")
    return budget


# --------------------------------------------------------------------------------------------- backend
def _is_pair(item: Any, is_pretokenized: bool) -> bool:
    if is_pretokenized:
        return isinstance(item, (list, tuple)) and bool(item) and isinstance(item[0], (list, tuple))
    return isinstance(item, (list, tuple))


def _first_text(item: Any, is_pretokenized: bool) -> str:
    first = item[0] if _is_pair(item, is_pretokenized) else item
    if is_pretokenized:
        return first[0] if first and isinstance(first[0], str) else ""
    return first if isinstance(first, str) else ""


class GLM4FastBackend:
    """A Rust ``tokenizers.Tokenizer`` whose ``encode``/``encode_batch`` add ``[gMASK]<sop>`` only when missing.

    Everything else (settings, vocabulary, decoding, saving) is the wrapped tokenizer's own: attribute reads and
    writes go through to it. transformers' fast tokenizers call ``encode_batch`` for every encoding, so with this
    backend in place their whole output follows the fixed ids. Rows are the same whether encoded alone or in a
    batch; truncation and padding are applied as the wrapped tokenizer is set up (transformers sets both before
    each call).
    """

    __slots__ = ("_backend", "_prefix_ids", "_rule_key", "_rule", "_lock")

    def __init__(self, backend: Any, prefix_ids: Sequence[int]) -> None:
        object.__setattr__(self, "_backend", backend)
        object.__setattr__(self, "_prefix_ids", list(prefix_ids))
        object.__setattr__(self, "_rule_key", None)
        object.__setattr__(self, "_rule", None)
        object.__setattr__(self, "_lock", threading.RLock())

    # -- the wrapped tokenizer
    @property
    def wrapped(self) -> Any:
        """The Rust tokenizer itself."""
        return self._backend

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_backend"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._backend, name, value)

    def __reduce__(self) -> Tuple[Any, ...]:
        return (GLM4FastBackend, (self._backend, self._prefix_ids))

    def __repr__(self) -> str:
        return f"GLM4FastBackend({self._backend!r})"

    def rule(self) -> Optional[PrefixRule]:
        """The prefix rule of the wrapped tokenizer's current post-processor (re-read when it changes)."""
        processor = self._backend.post_processor
        key = None if processor is None else processor.__getstate__()
        if key != self._rule_key:
            object.__setattr__(self, "_rule", prefix_rule(self._backend, self._prefix_ids))
            object.__setattr__(self, "_rule_key", key)
        return self._rule

    # -- encoding
    def encode(self, sequence: Any, pair: Any = None, is_pretokenized: bool = False, add_special_tokens: bool = True):
        item = sequence if pair is None else (sequence, pair)
        return self.encode_batch([item], is_pretokenized=is_pretokenized, add_special_tokens=add_special_tokens)[0]

    def encode_batch(self, input: Any, is_pretokenized: bool = False, add_special_tokens: bool = True) -> List[Any]:
        backend = self._backend
        truncation = backend.truncation
        rule = self.rule() if add_special_tokens and not backend.encode_special_tokens else None
        if rule is None:
            if truncation is not None:
                input = list(input)
                _check_room(input, backend, add_special_tokens, truncation, is_pretokenized)
            return backend.encode_batch(input, is_pretokenized=is_pretokenized, add_special_tokens=add_special_tokens)
        items = list(input)
        if truncation is not None:
            _check_room(items, rule, True, truncation, is_pretokenized)
        literal = [
            i
            for i, item in enumerate(items)
            if (rule.pair or not _is_pair(item, is_pretokenized))
            and _first_text(item, is_pretokenized).startswith(PREFIX_TEXT)
        ]
        if not literal:
            return backend.encode_batch(items, is_pretokenized=is_pretokenized, add_special_tokens=True)
        with self._lock:
            return self._encode_with_literals(items, literal, rule, is_pretokenized)

    def _encode_with_literals(
        self, items: List[Any], literal: List[int], rule: PrefixRule, is_pretokenized: bool
    ) -> List[Any]:
        backend = self._backend
        truncation, padding = backend.truncation, backend.padding
        chosen = set(literal)
        others = [i for i in range(len(items)) if i not in chosen]
        out: List[Any] = [None] * len(items)
        simple = truncation is None and rule.tail is None
        try:
            if not simple and padding is not None:
                backend.no_padding()  # rows are padded together at the end
            if others:
                encoded = backend.encode_batch([items[i] for i in others], is_pretokenized=is_pretokenized)
                for i, encoding in zip(others, encoded):
                    out[i] = encoding
            if simple:  # no template part left, nothing to cut: the text's own encoding is the row
                encoded = backend.encode_batch(
                    [items[i] for i in literal], is_pretokenized=is_pretokenized, add_special_tokens=False
                )
                for i, encoding in zip(literal, encoded):
                    out[i] = encoding
            else:
                if truncation is not None:
                    backend.no_truncation()
                try:
                    for i in literal:
                        out[i] = self._literal_row(items[i], rule, truncation, is_pretokenized)
                finally:
                    if truncation is not None:
                        backend.enable_truncation(**truncation)
        finally:
            if not simple and padding is not None:
                backend.enable_padding(**padding)
        if padding is not None and (not simple or (others and literal)):
            _pad_together(out, padding)
        return out

    def _literal_row(self, item: Any, rule: PrefixRule, truncation: Optional[Dict[str, Any]], pretok: bool):
        """One row whose first text starts with the prefix: no second copy; truncation keeps that prefix."""
        from tokenizers import Encoding

        backend = self._backend
        pair = _is_pair(item, pretok)
        first, second = (item[0], item[1]) if pair else (item, None)
        if pair and rule.tail is None and truncation is None:
            return backend.encode(first, second, is_pretokenized=pretok, add_special_tokens=False)
        if pair:  # the checkpoint's pair format: the prefix comes from its template (see the module doc)
            rest = [first[0][len(PREFIX_TEXT) :]] + list(first[1:]) if pretok else first[len(PREFIX_TEXT) :]
            if truncation is not None:
                backend.enable_truncation(**truncation)
            try:
                return backend.encode(rest, second, is_pretokenized=pretok, add_special_tokens=True)
            finally:
                if truncation is not None:
                    backend.no_truncation()
        encoding = backend.encode(first, is_pretokenized=pretok, add_special_tokens=False)
        n_prefix = len(rule.ids)
        if truncation is not None:
            body = len(encoding) - n_prefix
            budget = truncation["max_length"] - rule.added(False)
            keep = _keep_single(body, budget, truncation["strategy"])
            if keep < body:
                # the text's own prefix tokens: offsets, words and mask as inside the text
                prefix = backend.encode(
                    [PREFIX_TEXT] if pretok else PREFIX_TEXT, is_pretokenized=pretok, add_special_tokens=False
                )
                encoding.truncate(body, 0, "left")  # now the body (its overflow pieces are replaced next)
                encoding.truncate(keep, truncation["stride"], truncation["direction"])
                encoding = Encoding.merge([prefix, encoding], growing_offsets=False)
        if rule.tail is not None:
            encoding = rule.tail.process(encoding, None, True)
        return encoding


def _check_room(
    items: List[Any], counter: Any, add_special_tokens: bool, truncation: Dict[str, Any], is_pretokenized: bool
) -> None:
    """ValueError when ``max_length`` cannot hold a row's special tokens (the Rust tokenizer would silently not
    truncate at all) or ``stride`` does not fit in what is left (it would panic).

    ``counter`` tells how many special tokens a row gets: a ``PrefixRule`` (``added``) or the Rust tokenizer
    (``num_special_tokens_to_add``).
    """
    max_length, stride = truncation["max_length"], truncation["stride"]
    for is_pair in sorted({_is_pair(item, is_pretokenized) for item in items}):
        if not add_special_tokens:
            needed = 0
        elif isinstance(counter, PrefixRule):
            needed = counter.added(is_pair)
        else:
            needed = counter.num_special_tokens_to_add(is_pair)
        if max_length < needed:
            raise ValueError(
                f"max_length={max_length} is too small: it must leave room for the {needed} special tokens "
                f"this tokenizer adds to a {'pair' if is_pair else 'text'}"
            )
        if stride and stride >= max_length - needed:
            raise ValueError(
                f"stride={stride} must be smaller than max_length={max_length} minus the {needed} special tokens "
                f"(the length each overflowing window keeps)"
            )


def _pad_together(encodings: List[Any], padding: Dict[str, Any]) -> None:
    """Pad every row (and its overflow rows) to one length, as the Rust tokenizer pads a batch."""
    target = padding.get("length")
    if target is None:
        target = max((len(e) for e in encodings), default=0)
    multiple = padding.get("pad_to_multiple_of")
    if multiple and target % multiple:
        target += multiple - target % multiple
    for encoding in encodings:
        encoding.pad(
            target,
            direction=padding["direction"],
            pad_id=padding["pad_id"],
            pad_type_id=padding["pad_type_id"],
            pad_token=padding["pad_token"],
        )


# ------------------------------------------------------------------------------------------------ mixin
class GLM4FastFixMixin(GLM4ChatMixin, GLM4PaddingMixin):
    """The GLM-4 fix as methods to lay over a transformers fast tokenizer class (put it first in the bases).

    transformers reads the Rust tokenizer from ``self._tokenizer``; here that attribute is a property that hands
    out a ``GLM4FastBackend`` around the tokenizer stored on the instance (so patching an already loaded
    tokenizer needs only its class changed). ``pad()`` (collators) follows the slow tokenizer's exact padding
    rules, ``GLM4PaddingMixin``; ``apply_chat_template`` gains assistant-token masks (GLM-4 templates without
    ``{% generation %}`` markers are swapped for their marked copies) and, on transformers 4.x,
    ``sanitize_control_tokens``, as on the slow tokenizer (``GLM4ChatMixin``).
    """

    @property
    def _tokenizer(self) -> Any:
        state = self.__dict__
        backend = state.get("_tokenizer")
        if backend is None:
            return None
        wrapper = state.get("_glm4_backend")
        if wrapper is None or wrapper.wrapped is not backend:
            wrapper = state["_glm4_backend"] = GLM4FastBackend(backend, self._glm4_prefix_ids(backend))
        return wrapper

    @_tokenizer.setter
    def _tokenizer(self, value: Any) -> None:
        if isinstance(value, GLM4FastBackend):
            value = value.wrapped
        self.__dict__["_tokenizer"] = value
        self.__dict__.pop("_glm4_backend", None)

    @staticmethod
    def _glm4_prefix_ids(backend: Any) -> List[int]:
        ids = [backend.token_to_id(token) for token in PREFIX_TOKENS]
        if None in ids:
            raise ValueError(f"{' and '.join(PREFIX_TOKENS)} must be tokens of a GLM-4 tokenizer (got ids {ids})")
        return ids

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_glm4_backend", None)  # rebuilt on first use
        return state

    def glm4_prefix_policy(self) -> str:
        """``"adds"`` when the tokenizer puts ``[gMASK]<sop>`` in front of texts lacking it, else ``"none"``."""
        return "none" if self._tokenizer.rule() is None else "adds"

    # -- special tokens by hand (prepare_for_model, collators that build ids themselves)
    def _glm4_with_template(
        self, token_ids_0: Sequence[int], token_ids_1: Optional[Sequence[int]]
    ) -> Optional[Tuple[List[int], List[int], List[int]]]:
        """(ids, special-tokens mask, type ids) of the ids laid into the post-processor's template, without the
        template's ``[gMASK]<sop>`` when ``token_ids_0`` already starts with it; None when it adds no prefix."""
        rule = self._tokenizer.rule()
        if rule is None:
            return None
        pair = token_ids_1 is not None
        pieces = rule.pair_pieces if pair else rule.single_pieces
        if (rule.pair or not pair) and list(token_ids_0[: len(rule.ids)]) == rule.ids:
            pieces = pieces[len(rule.ids) :]
        ids: List[int] = []
        mask: List[int] = []
        types: List[int] = []
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
            return super().build_inputs_with_special_tokens(token_ids_0, token_ids_1)  # type: ignore[misc]
        return built[0]

    def get_special_tokens_mask(
        self, token_ids_0: List[int], token_ids_1: Optional[List[int]] = None, already_has_special_tokens: bool = False
    ) -> List[int]:
        built = None if already_has_special_tokens else self._glm4_with_template(token_ids_0, token_ids_1)
        if built is None:
            return super().get_special_tokens_mask(  # type: ignore[misc]
                token_ids_0, token_ids_1, already_has_special_tokens=already_has_special_tokens
            )
        return built[1]

    def create_token_type_ids_from_sequences(
        self, token_ids_0: List[int], token_ids_1: Optional[List[int]] = None
    ) -> List[int]:
        built = self._glm4_with_template(token_ids_0, token_ids_1)
        if built is None:
            return super().create_token_type_ids_from_sequences(token_ids_0, token_ids_1)  # type: ignore[misc]
        return built[2]

    # -- decoding
    def _decode(self, token_ids: Any, skip_special_tokens: bool = False, **kwargs: Any) -> str:
        """The Rust tokenizer's decoding, with an id outside the vocabulary a ``ValueError`` (not ``''``)."""
        ids = _as_id_list(token_ids, "token_ids")
        size = self._tokenizer.get_vocab_size(with_added_tokens=True)
        for index in ids:
            if not 0 <= index < size:
                raise ValueError(f"token id {index} is outside the vocabulary (0..{size - 1})")
        return super()._decode(ids, skip_special_tokens=skip_special_tokens, **kwargs)  # type: ignore[misc]


class ChatGLM4TokenizerFast(GLM4FastFixMixin, PreTrainedTokenizerFast):
    """A GLM-4 fast tokenizer (``tokenizer.json``) with ``[gMASK]<sop>`` added only when missing.

    Loads any transformers-native GLM-4 tokenizer folder::

        tok = ChatGLM4TokenizerFast.from_pretrained("path/to/glm-4-9b-chat-hf")
        batch = tok([tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in chats],
                    padding=True, return_tensors="pt")

    ``save_pretrained`` writes this module and ``tokenization_chatglm.py`` next to ``tokenizer.json`` so the folder
    loads the fixed class through ``AutoTokenizer.from_pretrained(folder, trust_remote_code=True)``.
    """

    _auto_class = "AutoTokenizer"
    model_input_names = ["input_ids", "attention_mask"]
