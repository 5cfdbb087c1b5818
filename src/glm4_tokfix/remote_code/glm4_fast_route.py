# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""The fast tokenizer's accelerator: ``GLM4FastRouteMixin``, plain texts of a provably standard ``tokenizer.json``
through the row builder (``GLM4RowBuilder``) on an encoder backend made from the Rust vocabulary, with lazy Rust
encodings; anything else goes to the fast spec (``GLM4FastSpecMixin``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from transformers import BatchEncoding

from .glm4_encoders import FastokensBackend, TiktokenBackend, _disjoint_literals, _overlapping
from .glm4_fast_encoder import PrefixRule, _added_tokens_unchanged, _added_top, _template_of
from .glm4_fast_spec import _one_row
from .glm4_offsets import _offset_tables, offsets_from_tables
from .glm4_rows import GLM4RowBuilder
from .glm4_state import _ADDED_STATE, _Cache, _CallState
from .glm4_tokens import GLM4_PAT_STR, PREFIX_TEXT

if TYPE_CHECKING:
    from .glm4_fast_spec import GLM4FastSpecMixin as _SpecHost  # the layer under the route (for the type checker)
else:
    _SpecHost = object

__all__ = [
    "GLM4FastRouteMixin",
    "GLM4LazyBatchEncoding",
    "standard_glm4_vocab",
]


# ------------------------------------------------------------------------------------------- fast route
def _byte_decoder() -> Dict[str, int]:
    """The ByteLevel pre-tokenizer's map inverted: the printable character standing for each byte -> the byte.

    Bytes that are printable Latin-1 characters stand for themselves; the other 68 bytes take, in byte order,
    the characters from U+0100 on.
    """
    kept = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    mapping = {chr(b): b for b in kept}
    extra = 0
    for b in range(256):
        if b not in kept:
            mapping[chr(0x100 + extra)] = b
            extra += 1
    return mapping


def standard_glm4_vocab(
    state: Dict[str, Any],
) -> Tuple[Optional[Tuple[Dict[bytes, int], Dict[str, int], Dict[str, int]]], str]:
    """``((ranks, added, added_non_special), "")`` when a ``tokenizer.json`` (its parsed JSON) encodes exactly as
    GLM-4's tiktoken BPE over ``ranks`` does, else ``(None, reason)``.

    Standard means: a byte-level BPE model with ``ignore_merges`` (no dropout, unknown token, byte fallback,
    subword prefix or suffix) whose merges each join two vocabulary tokens into a third, in the order of that
    third token's id; no normalizer; the pre-tokenizer ``Split`` on GLM-4's pattern (``Isolated``, not inverted)
    then ``ByteLevel`` without its own regex or prefix space; a ``ByteLevel`` decoder; added tokens that are
    neither stripping nor single-word nor overlapping, with ids outside the BPE vocabulary. ``added`` maps every
    added token to its id, ``added_non_special`` only those a ``split_special_tokens`` call still splits out.
    """
    model = state.get("model") or {}
    if model.get("type") != "BPE" or not model.get("ignore_merges"):
        return None, "the model is not a BPE with ignore_merges"
    if model.get("dropout") or model.get("unk_token") is not None or model.get("byte_fallback"):
        return None, "the BPE model has dropout, an unknown token or byte fallback"
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        return None, "the BPE model has a subword prefix or suffix"
    if state.get("normalizer") is not None:
        return None, "the tokenizer has a normalizer"
    pre = state.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else None
    if not steps or len(steps) != 2:
        return None, "the pre-tokenizer is not Sequence[Split, ByteLevel]"
    split, level = steps
    if (
        split.get("type") != "Split"
        or split.get("pattern") != {"Regex": GLM4_PAT_STR}
        or split.get("behavior") != "Isolated"
        or split.get("invert")
    ):
        return None, "the pre-tokenizer does not split on GLM-4's pattern"
    if level.get("type") != "ByteLevel" or level.get("add_prefix_space") or level.get("use_regex", True):
        return None, "the ByteLevel pre-tokenizer adds a prefix space or has its own regex"
    if (state.get("decoder") or {}).get("type") != "ByteLevel":
        return None, "the decoder is not ByteLevel"
    chars = _byte_decoder()
    ranks: Dict[bytes, int] = {}
    for token, index in (model.get("vocab") or {}).items():
        try:
            ranks[bytes(chars[c] for c in token)] = index
        except KeyError:
            return None, f"the vocabulary token {token!r} is not byte-level"
    if len(set(ranks.values())) != len(ranks) or len(ranks) != len(model.get("vocab") or {}):
        return None, "the vocabulary has duplicate ids"
    vocab = model["vocab"]
    last = -1
    for merge in model.get("merges") or []:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        joined = vocab.get(left + right)
        if joined is None or left not in vocab or right not in vocab or joined < last:
            return None, "the merges are not ordered by the ids of the tokens they make"
        last = joined
    added: Dict[str, int] = {}
    non_special: Dict[str, int] = {}
    ids = set(ranks.values())
    for token in state.get("added_tokens") or []:
        content, index = token.get("content"), token.get("id")
        if not content or token.get("lstrip") or token.get("rstrip") or token.get("single_word"):
            return None, f"the added token {content!r} strips, is single-word or empty"
        if index in ids or content in added:
            return None, f"the added token {content!r} shares its id or content"
        added[content] = index
        if not token.get("special"):
            non_special[content] = index
    if _overlapping(list(added)):
        return None, "added tokens overlap"
    return (ranks, added, non_special), ""


class _FastRoute:
    """What the fast route needs for one state of a Rust tokenizer: its ranks, added tokens and the encoder
    backends made from them (built on first use; shared by threads, never changed but for new backends)."""

    __slots__ = ("added", "backends", "disjoint", "non_special", "ranks", "tables")

    def __init__(self, ranks: Dict[bytes, int], added: Dict[str, int], non_special: Dict[str, int]) -> None:
        self.ranks, self.added, self.non_special = ranks, added, non_special
        self.backends: Dict[Tuple[str, Optional[bool]], Any] = {}  # None: the base fastokens backend
        self.tables: Optional[Tuple[List[int], List[int], frozenset]] = None
        self.disjoint: Optional[bool] = None  # whether no two occurrences of the added tokens can overlap

    def literals_disjoint(self) -> bool:
        """``_disjoint_literals`` of the added tokens, decided once."""
        disjoint = self.disjoint
        if disjoint is None:
            disjoint = self.disjoint = _disjoint_literals(tuple(sorted(self.added)))  # one assignment
        return disjoint

    def offset_tables(self) -> Tuple[List[int], List[int], frozenset]:
        """The per-id character tables of offsets and assistant masks (``GLM4FixMixin._glm4_offset_tables``)."""
        tables = self.tables
        if tables is None:
            pieces = {index: piece for piece, index in self.ranks.items()}
            pieces.update((index, content.encode("utf-8")) for content, index in self.added.items())
            tables = self.tables = _offset_tables(pieces)  # one assignment
        return tables

    def text_encoder(self, name: str, split_special: bool) -> Any:
        backend = self.backends.get((name, split_special))
        if backend is None:
            added = self.non_special if split_special else self.added
            if name == "tiktoken":
                backend = TiktokenBackend(self.ranks, GLM4_PAT_STR, added)
            else:
                base = self.backends.get((name, None))
                if base is None:
                    base = self.backends[(name, None)] = FastokensBackend(self.ranks, GLM4_PAT_STR, {})
                backend = base.with_added_tokens(added)
            self.backends[(name, split_special)] = backend
        return backend.text_encoder(False)


class _Source:
    """The Rust encodings of a fast-route batch, made on first use by the Rust route (``make()``)."""

    __slots__ = ("encodings", "make")

    def __init__(self, make: Any) -> None:
        self.make, self.encodings = make, None

    def get(self) -> List[Any]:
        encodings = self.encodings
        if encodings is None:
            encodings = self.make()
            self.encodings = encodings  # one assignment; two threads at once would both compute the same rows
        return encodings


class GLM4LazyBatchEncoding(BatchEncoding):
    """The ``BatchEncoding`` of the fast route: the fields are built by the fast path; the ``tokenizers.Encoding``
    rows (``encodings``, ``tokens()``, ``word_ids()``, ``char_to_token()``, ``batch[i]``) are computed on first
    access by the Rust route for the same rows and options -- the call's ``padding_side`` and ``truncation_side``,
    not the tokenizer's later ones -- so they are exactly what that route gave during the call. After the
    tokenizer's vocabulary, post-processor or padding token changed they can no longer be made: a
    ``RuntimeError`` says so. ``is_fast`` is True without computing them. Pickling and ``copy.deepcopy`` give a
    plain ``BatchEncoding`` with the encodings (computed then; without them when they can no longer be made)."""

    #: which route built this batch (a plain ``BatchEncoding`` from the Rust route has no such attribute)
    glm4_route = "fast"

    def __init__(self, data: Dict[str, Any], source: _Source, n_sequences: int = 1) -> None:
        self.__dict__["_glm4_source"] = source
        super().__init__(data, encoding=None, n_sequences=n_sequences)

    @property  # type: ignore[override]  # a property over BatchEncoding's plain attribute, made on first read
    def _encodings(self) -> Optional[List[Any]]:
        own = self.__dict__.get("_glm4_encodings")
        if own is None:
            source = self.__dict__.get("_glm4_source")
            if source is not None:
                own = source.get()
                self.__dict__["_glm4_encodings"] = own
        return own

    @_encodings.setter
    def _encodings(self, value: Optional[List[Any]]) -> None:
        self.__dict__["_glm4_encodings"] = value

    @property
    def is_fast(self) -> bool:
        return True

    @property
    def glm4_encodings_built(self) -> bool:
        """Whether the Rust encodings have been computed yet."""
        return self.__dict__.get("_glm4_encodings") is not None

    def __reduce__(self) -> Tuple[Any, ...]:
        try:
            encodings = self._encodings
        except RuntimeError:  # the tokenizer changed since the call: the fields alone, as they are
            encodings = None
        return (BatchEncoding, (dict(self.data), encodings, None, False, self._n_sequences))

    def __reduce_ex__(self, protocol: Any) -> Tuple[Any, ...]:
        return self.__reduce__()


def _has_lone_surrogate(texts: Sequence[str]) -> bool:
    """Whether a text holds a lone surrogate (which UTF-8 cannot encode): C's encoder finds one faster than a
    regex scan, and ASCII texts need no look."""
    for text in texts:
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


#: the fast route a call is running on (set around the fast path's call, read by ``_glm4_text_encoder``)
_CALL_ROUTE = _CallState("glm4_fast_route", None)  # the _FastRoute of the call under way, if any


class _NotStandard(Exception):
    """The post-processor is not one the fast route reproduces (the call takes the Rust route)."""


#: tokenizer -> (what its Rust tokenizer looked like, its fast route or None, why not, its highest added id); same
#: reason
_ROUTES: _Cache[Any, Tuple[Any, Optional[_FastRoute], Optional[str], int]] = _Cache()


class GLM4FastRouteMixin(GLM4RowBuilder, _SpecHost):
    """The fast tokenizer's accelerator: plain texts through the row builder, when the tokenizer.json is GLM-4's own.

    Laid over ``GLM4FastSpecMixin`` (which must come after it in the MRO). ``_glm4_batch`` takes a call only when
    ``_glm4_fast_route_takes`` says its output is exactly the spec's; every other call goes to the spec's
    ``_glm4_batch``, and so do the Rust encodings of a fast-route batch (on first access).
    """

    #: When True (the default), plain texts (no pairs, words, overflow or lengths) of a tokenizer whose
    #: ``tokenizer.json`` is provably GLM-4-standard (``standard_glm4_vocab``) are encoded by the slow fix's fast
    #: path on an encoder backend built from the Rust vocabulary: same fields as the Rust route; the
    #: ``BatchEncoding``'s Rust encodings are computed by that route on first access (``GLM4LazyBatchEncoding``).
    glm4_fast_path = True
    # glm4_encoder, glm4_encode_threads, glm4_parallel_min_chars: as on ``ChatGLM4Tokenizer`` (``GLM4RowBuilder``)

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
    def _glm4_offsets(self, ids: Sequence[int], text: Optional[str] = None) -> List[Tuple[int, int]]:
        """Character offsets of ``ids``, the tokens of one whole text, from the route's per-id tables (the route's
        added tokens strip no whitespace, so ``text`` is not needed)."""
        tables = self._glm4_offset_tables()
        if tables is None:
            raise RuntimeError("internal error: offsets asked of a fast tokenizer off the fast route")
        return offsets_from_tables(ids, tables)

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
        return route.text_encoder(self.glm4_encoder_name(), bool(split_special_tokens))

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
            built = self._glm4_fast_encode(
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
        """The spec's ``_glm4_batch``; plain texts take the fast route when it gives exactly that
        (``_glm4_fast_route_takes``), their Rust encodings made by the spec on first access."""
        options = dict(
            add_special_tokens=add_special_tokens, padding_strategy=padding_strategy,
            truncation_strategy=truncation_strategy, max_length=max_length, pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side, return_tensors=return_tensors, split_special_tokens=split_special_tokens,
        )  # fmt: skip
        spec = super()._glm4_batch
        if (
            not isinstance(items, (list, tuple))  # the spec's TypeError
            or truncation_side is not None
            or not self._glm4_fast_route_takes(
                items, add_special_tokens, padding_strategy, truncation_strategy, max_length, stride,
                is_split_into_words, split_special_tokens, convert,
            )
        ):  # fmt: skip
            return spec(items, stride=stride, is_split_into_words=is_split_into_words, convert=convert,
                        truncation_side=truncation_side, **options)  # fmt: skip
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
            return spec(rows, stride=stride, is_split_into_words=False, convert=dict(convert),
                        truncation_side=side, **options).encodings  # fmt: skip

        return self._glm4_fast_batch(rows, rust, convert=convert, **options)

    def _glm4_single(self, output: Any) -> Any:
        """A one-row batch without its batch axis, still lazy if it was."""
        if isinstance(output, GLM4LazyBatchEncoding):
            return GLM4LazyBatchEncoding(_one_row(output), output.__dict__["_glm4_source"])
        return super()._glm4_single(output)
