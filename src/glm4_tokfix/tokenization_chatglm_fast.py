# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""The GLM-4 fix for transformers-native fast tokenizers (``tokenizer.json``).

glm-4-9b-chat-hf, GLM-4-0414, GLM-4.5, ... load as transformers' ``PreTrainedTokenizerFast`` (on transformers 5:
``TokenizersBackend``) over a Rust ``tokenizers.Tokenizer``. glm-4-9b-chat-hf's post-processor is
``TemplateProcessing(single="[gMASK]:0 <sop>:0 $A:0", pair="[gMASK]:0 <sop>:0 $A:0 $B:1")``, so a rendered chat,
which already starts with ``[gMASK]<sop>``, gets the prefix twice. This module applies the rule of
``tokenization_chatglm`` -- the prefix is added exactly when it is missing -- to those tokenizers:

``GLM4FastFixMixin``
    Laid over a fast tokenizer class (``glm4_tokfix.patch`` does it for a loaded tokenizer). The Rust tokenizer
    stays the checkpoint's genuine ``tokenizers.Tokenizer`` (``tok._tokenizer`` / ``tok.backend_tokenizer``:
    ``DecodeStream``, ``to_str``, pickling, vLLM's detokenizer and structured-output backends take it as it is; its
    own ``encode`` is the checkpoint's, unfixed). The mixin overrides the place where transformers encodes --
    ``_encode_plus`` on transformers 5, ``_batch_encode_plus`` on 4.x (``encode``, ``tokenize``, ``__call__`` all go
    through it) -- and builds the ``BatchEncoding`` from fixed ``tokenizers.Encoding`` rows with transformers' own
    ``set_truncation_and_padding`` and ``_convert_encoding``, so ``attention_mask``, ``token_type_ids``,
    ``special_tokens_mask``, ``offset_mapping``, overflow rows and ``BatchEncoding.encodings`` follow the fixed ids.
    Padding (``pad()``) uses the slow tokenizer's exact rules.

``GLM4FastEncoder``
    Takes the Rust tokenizer and gives the fixed ``Encoding`` of each row (``encode_batch``). Rows that need no
    change are the Rust tokenizer's own (``encode_plain``: one method, the place for a faster plain-text route);
    rows starting with the literal prefix are encoded by a private copy without truncation/padding
    (``plain_copy``, made once per vocabulary/post-processor, never changed afterwards) and cut/padded with
    ``Encoding.truncate``/``merge``/``pad`` on those fresh encodings. A call changes nothing shared, so one
    tokenizer serves many threads at once. ``GLM4FastBackend`` is its former name.

The fast route
    Plain texts (no pairs, pretokenized words, overflow or lengths) of a tokenizer whose ``tokenizer.json``
    is provably GLM-4's own (``standard_glm4_vocab``: the ranks are read back from the byte-level vocabulary) go
    through ``ChatGLM4Tokenizer``'s fast path (``GLM4BatchEncoder._glm4_fast_encode`` and its row builders, with
    this tokenizer's encoder backend and prefix policy), not the Rust BPE: the same fields as the Rust route, in a
    ``GLM4LazyBatchEncoding`` whose Rust encodings that route computes on first access. Offsets and assistant
    masks come from per-id character tables there too, as on the slow fix (unless the post-processor trims
    offsets). Anything else, and ``glm4_fast_path = False``, takes the Rust route; ``glm4_fast_route_reason()``
    says which applies.

``PrefixRule`` / ``prefix_rule``
    How the post-processor adds the prefix (read from its JSON state), with the template's tail and counts.

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
from typing import Any, Dict, List, Optional, Sequence, Tuple

from transformers import BatchEncoding, PreTrainedTokenizerFast
from transformers import __version__ as _TRANSFORMERS_VERSION

from .tokenization_chatglm import (
    GLM4_PAT_STR,
    PREFIX_TOKENS,
    FastokensBackend,
    GLM4BatchEncoder,
    GLM4ChatMixin,
    GLM4FixMixin,
    GLM4PaddingMixin,
    TiktokenBackend,
    _as_id_list,
    _ADDED_STATE,
    _CallState,
    _Cache,
    _disjoint_literals,
    _NameSet,
    _offset_tables,
    _overlapping,
    resolve_encoder_name,
)

__all__ = [
    "ChatGLM4TokenizerFast", "GLM4FastBackend", "GLM4FastEncoder", "GLM4FastFixMixin", "GLM4LazyBatchEncoding",
    "PrefixRule", "prefix_rule", "standard_glm4_vocab",
]  # fmt: skip

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


# --------------------------------------------------------------------------------------------- encoder
def _is_pair(item: Any, is_pretokenized: bool) -> bool:
    if is_pretokenized:
        return isinstance(item, (list, tuple)) and bool(item) and isinstance(item[0], (list, tuple))
    return isinstance(item, (list, tuple))


def _first_text(item: Any, is_pretokenized: bool) -> str:
    first = item[0] if _is_pair(item, is_pretokenized) else item
    if is_pretokenized:
        return first[0] if first and isinstance(first[0], str) else ""
    return first if isinstance(first, str) else ""


def _without_literal(first: Any, is_pretokenized: bool) -> Any:
    """A first text (or its first word) with the literal ``[gMASK]<sop>`` taken off the front."""
    if is_pretokenized:
        return [first[0][len(PREFIX_TEXT) :]] + list(first[1:])
    return first[len(PREFIX_TEXT) :]


class GLM4FastEncoder:
    """Encodes rows with a real Rust ``tokenizers.Tokenizer``, adding ``[gMASK]<sop>`` only when it is missing.

    ``backend`` is the tokenizer's own Rust tokenizer (``tok.backend_tokenizer``); the encoder only reads it: its
    truncation and padding are the ones transformers set for the call (``set_truncation_and_padding``). Rows
    that need no change -- every row of a tokenizer whose post-processor adds no prefix, and every row without a
    literal prefix -- are the Rust tokenizer's own encodings (``encode_plain``). A row whose first text already
    starts with the literal prefix (``_literal_row``) is encoded by a private copy of the Rust tokenizer without
    truncation or padding (``plain_copy``: made once per vocabulary/post-processor, never changed after), then
    cut, laid into the rest of the template and padded with ``tokenizers.Encoding``'s own methods on that fresh
    encoding. Nothing shared is changed by a call, so one encoder serves many threads at once.
    """

    __slots__ = ("backend", "prefix_ids", "added_state", "_rule_cache", "_copy_cache")

    def __init__(self, backend: Any, prefix_ids: Sequence[int], added_state: Any = None) -> None:
        self.backend = backend
        self.prefix_ids: List[int] = list(prefix_ids)
        self.added_state = added_state  # the tokenizer's _ADDED_STATE when made: a new encoder follows added tokens
        self._rule_cache: Tuple[Any, Optional[PrefixRule]] = (object(), None)  # (post-processor state, rule)
        self._copy_cache: Tuple[Any, Any, int] = (object(), None, -1)  # (what the copy was made from, it, top id)

    def __reduce__(self) -> Tuple[Any, ...]:
        return (GLM4FastEncoder, (self.backend, self.prefix_ids))

    def __repr__(self) -> str:
        return f"GLM4FastEncoder({self.backend!r})"

    def rule(self) -> Optional[PrefixRule]:
        """The prefix rule of the Rust tokenizer's current post-processor (re-read when it changes)."""
        processor = self.backend.post_processor
        key = None if processor is None else processor.__getstate__()
        cached_key, rule = self._rule_cache
        if key != cached_key:
            rule = prefix_rule(self.backend, self.prefix_ids)
            self._rule_cache = (key, rule)  # one assignment: other threads see the old pair or the new one
        return rule

    def plain_copy(self) -> Any:
        """A private copy of the Rust tokenizer without truncation and padding, for the literal-prefix rows.

        Made again when the vocabulary, the added tokens (``_added_tokens_unchanged``), the normalizer, the
        pre-tokenizer or the post-processor of the real one change; published in one assignment and never changed
        afterwards.
        """
        backend = self.backend
        key = (
            backend.get_vocab_size(with_added_tokens=False),
            *(None if part is None else part.__getstate__() for part in
              (backend.normalizer, backend.pre_tokenizer, backend.post_processor)),
        )  # fmt: skip
        cached_key, copy, top = self._copy_cache
        if key != cached_key or copy is None or not _added_tokens_unchanged(backend, top):
            from tokenizers import Tokenizer

            top = _added_top(backend)
            copy = Tokenizer.from_str(backend.to_str())
            copy.no_truncation()
            copy.no_padding()
            copy.encode_special_tokens = False
            self._copy_cache = (key, copy, top)
        return copy

    # -- encoding
    def encode_batch(self, items: Sequence[Any], is_pretokenized: bool = False, add_special_tokens: bool = True):
        """``tokenizers.Encoding`` rows for ``items`` (texts or pairs), as ``backend.encode_batch`` with the fix.

        ``ValueError`` (never a Rust panic) when the truncation settings cannot be followed.
        """
        backend = self.backend
        items = list(items)
        truncation = backend.truncation
        rule = self.rule() if add_special_tokens and not backend.encode_special_tokens else None
        if truncation is not None:
            _check_room(items, backend if rule is None else rule, add_special_tokens, truncation, is_pretokenized)
        literal = (
            []
            if rule is None
            else [
                i
                for i, item in enumerate(items)
                if (rule.pair or not _is_pair(item, is_pretokenized))
                and _first_text(item, is_pretokenized).startswith(PREFIX_TEXT)
            ]
        )
        if truncation is not None and (truncation["stride"] or truncation["strategy"] != "longest_first"):
            self._check_pairs(items, set(literal), rule, add_special_tokens, truncation, is_pretokenized)
        if not literal:
            return self.encode_plain(items, is_pretokenized, add_special_tokens)
        return self._encode_with_literals(items, literal, rule, is_pretokenized)

    def _check_pairs(
        self,
        items: List[Any],
        literal: Any,
        rule: Optional[PrefixRule],
        add_special_tokens: bool,
        truncation: Dict[str, Any],
        is_pretokenized: bool,
    ) -> None:
        """``ValueError`` for a pair the Rust tokenizer cannot truncate: ``only_first``/``only_second`` that would
        have to remove the whole text (it raises a bare ``Exception``; transformers 5's slow path dropped the text)
        and a ``stride`` not smaller than what a truncated text keeps (it panics: ``PanicException``)."""
        rows = [i for i, item in enumerate(items) if _is_pair(item, is_pretokenized)]
        if not rows:
            return
        if not add_special_tokens:
            added = 0
        elif rule is not None:
            added = rule.added(True)
        else:
            added = self.backend.num_special_tokens_to_add(True)
        budget = truncation["max_length"] - added
        texts = []
        for i in rows:
            first, second = items[i]
            if i in literal and rule is not None and rule.pair:
                first = _without_literal(first, is_pretokenized)
            texts += [first, second]
        lengths = [len(e) for e in self.plain_copy().encode_batch(texts, is_pretokenized=is_pretokenized,
                                                                  add_special_tokens=False)]  # fmt: skip
        for k, i in enumerate(rows):
            _check_pair_cut(i, lengths[2 * k], lengths[2 * k + 1], budget, truncation)

    def encode_plain(self, items: List[Any], is_pretokenized: bool, add_special_tokens: bool) -> List[Any]:
        """Rows that need nothing from the fix: the Rust tokenizer's own encodings (the place for a faster route).

        The Rust tokenizer's own truncation errors (a bare ``Exception``) become a ``ValueError``.
        """
        try:
            return self.backend.encode_batch(
                items, is_pretokenized=is_pretokenized, add_special_tokens=add_special_tokens
            )
        except Exception as exc:
            if type(exc) is Exception and str(exc).startswith("Truncation error"):
                raise ValueError(
                    f"cannot truncate as asked ({exc}): truncation='only_second' needs a pair of texts (transformers "
                    "4.x passes a text with an empty text_pair as a single text)"
                ) from exc
            raise

    def _encode_with_literals(
        self, items: List[Any], literal: List[int], rule: PrefixRule, is_pretokenized: bool
    ) -> List[Any]:
        backend = self.backend
        truncation, padding = backend.truncation, backend.padding
        simple = truncation is None and rule.tail is None
        out: List[Any] = [None] * len(items)
        chosen = set(literal)
        # rows the real tokenizer encodes: those without a literal prefix, and literal pairs with a template
        # part besides the prefix or with truncation (the checkpoint's pair format, prefix from the template)
        by_backend = [i for i in range(len(items)) if i not in chosen]
        own = []
        for i in literal:
            if not simple and _is_pair(items[i], is_pretokenized):
                by_backend.append(i)
            else:
                own.append(i)
        if by_backend:
            rows = []
            for i in by_backend:
                item = items[i]
                if i in chosen:
                    item = (_without_literal(item[0], is_pretokenized), item[1])
                rows.append(item)
            for i, encoding in zip(by_backend, self.encode_plain(rows, is_pretokenized, True)):
                out[i] = encoding
        if own:
            copy = self.plain_copy()
            for i in own:
                out[i] = self._literal_row(copy, items[i], rule, truncation, is_pretokenized)
        if padding is not None:
            _pad_together(out, padding)
        return out

    def _literal_row(self, copy: Any, item: Any, rule: PrefixRule, truncation: Optional[Dict[str, Any]], pretok: bool):
        """One row whose first text starts with the prefix, encoded by ``copy`` (no truncation, no padding): no
        second copy of the prefix; truncation keeps that prefix and cuts the rest, as the slow tokenizer does."""
        from tokenizers import Encoding

        if _is_pair(item, pretok):  # only without truncation and template tail (see _encode_with_literals)
            return copy.encode(item[0], item[1], is_pretokenized=pretok, add_special_tokens=False)
        encoding = copy.encode(item, is_pretokenized=pretok, add_special_tokens=False)
        n_prefix = len(rule.ids)
        if truncation is not None:
            body = len(encoding) - n_prefix
            budget = truncation["max_length"] - rule.added(False)
            keep = _keep_single(body, budget, truncation["strategy"])
            if keep < body:
                # the text's own prefix tokens: offsets, words and mask as inside the text
                prefix = copy.encode([PREFIX_TEXT] if pretok else PREFIX_TEXT, is_pretokenized=pretok,
                                     add_special_tokens=False)  # fmt: skip
                encoding.truncate(body, 0, "left")  # now the body (its overflow pieces are replaced next)
                encoding.truncate(keep, truncation["stride"], truncation["direction"])
                encoding = Encoding.merge([prefix, encoding], growing_offsets=False)
        if rule.tail is not None:
            encoding = rule.tail.process(encoding, None, True)
        return encoding


#: the former name of ``GLM4FastEncoder`` (it wrapped the Rust tokenizer; the encoder only takes it)
GLM4FastBackend = GLM4FastEncoder


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


def _check_pair_cut(row: int, n1: int, n2: int, budget: int, truncation: Dict[str, Any]) -> None:
    """The Rust tokenizer's pair truncation (``budget`` = ``max_length`` minus the special tokens) as arithmetic:
    ``ValueError`` where it would fail or panic."""
    strategy, stride = truncation["strategy"], truncation["stride"]
    remove = n1 + n2 - budget
    if remove <= 0:
        return
    where = f"pair {row} ({n1} + {n2} tokens without special tokens, max_length={truncation['max_length']})"
    if strategy in ("only_first", "only_second"):
        which, n = ("first", n1) if strategy == "only_first" else ("second", n2)
        if n <= remove:
            raise ValueError(
                f"truncation={strategy!r} cannot fit {where}: it would have to remove {remove} tokens from the "
                f"{which} text, which has {n}; nothing is dropped silently -- use a larger max_length or "
                f"truncation='longest_first'"
            )
        cuts = [n - remove]
    else:  # longest_first: the longer text is cut first, down to half of the budget each
        short, long_ = sorted((n1, n2))
        long_ = long_ if short > budget else max(short, budget - short)
        if short + long_ > budget:
            short, long_ = budget // 2, budget // 2 + budget % 2
        kept = (short, long_) if n1 <= n2 else (long_, short)
        cuts = [k for k, n in zip(kept, (n1, n2)) if k < n]
    for keep in cuts:
        if 0 < keep <= stride:
            raise ValueError(
                f"stride={stride} must be smaller than what truncation keeps of a text of {where}: {keep} tokens "
                f"(each overflowing window repeats `stride` tokens)"
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


def standard_glm4_vocab(state: Dict[str, Any]) -> Tuple[Optional[Tuple[Dict[bytes, int], Dict[str, int], Dict[str, int]]], str]:
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


def _added_top(backend: Any) -> int:
    """The highest id of the Rust tokenizer's added tokens (its vocabulary's last id when it has none)."""
    return max(backend.get_added_tokens_decoder(), default=backend.get_vocab_size(with_added_tokens=False) - 1)


def _added_tokens_unchanged(backend: Any, top: int) -> bool:
    """A cheap check that no token was added to the Rust tokenizer since its highest added id was ``top``: one
    added through it directly gets the next id. Reading the added tokens costs ~0.1 s a call with 16,384 of them;
    transformers' own ``add_tokens`` (new tokens, or new flags for one) is followed by ``_ADDED_STATE`` instead."""
    return backend.id_to_token(top + 1) is None


class _FastRoute:
    """What the fast route needs for one state of a Rust tokenizer: its ranks, added tokens and the encoder
    backends made from them (built on first use; shared by threads, never changed but for new backends)."""

    __slots__ = ("ranks", "added", "non_special", "backends", "tables", "disjoint")

    def __init__(self, ranks: Dict[bytes, int], added: Dict[str, int], non_special: Dict[str, int]) -> None:
        self.ranks, self.added, self.non_special = ranks, added, non_special
        self.backends: Dict[Tuple[str, bool], Any] = {}
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

    __slots__ = ("make", "encodings")

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
    access by the Rust route for the same rows and options, so they are exactly what that route gives.
    ``is_fast`` is True without computing them. Pickling and ``copy.deepcopy`` give a plain ``BatchEncoding``
    with the encodings (computed then)."""

    #: which route built this batch (a plain ``BatchEncoding`` from the Rust route has no such attribute)
    glm4_route = "fast"

    def __init__(self, data: Dict[str, Any], source: _Source, n_sequences: int = 1) -> None:
        self.__dict__["_glm4_source"] = source
        super().__init__(data, encoding=None, n_sequences=n_sequences)

    @property
    def _encodings(self) -> Optional[List[Any]]:  # type: ignore[override]
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
        return (BatchEncoding, (dict(self.data), self._encodings, None, False, self._n_sequences))

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


def _single(output: Any) -> Any:
    """A one-row batch without its batch axis (as transformers returns a single text), still lazy if it was."""
    single = {key: value[0] if value and isinstance(value[0], list) else value for key, value in output.items()}
    if isinstance(output, GLM4LazyBatchEncoding):
        return GLM4LazyBatchEncoding(single, output.__dict__["_glm4_source"])
    return BatchEncoding(single, output.encodings)


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
_BATCH_KEYWORDS = _NameSet(set(_encode_keywords()) | {
    "add_special_tokens", "padding_strategy", "truncation_strategy", "max_length", "stride", "is_split_into_words",
    "pad_to_multiple_of", "padding_side", "return_tensors", "split_special_tokens",
})  # fmt: skip  (pickles sorted: stable datasets fingerprints)


#: tokenizer -> its GLM4FastEncoder. Kept outside the tokenizer: ``datasets`` fingerprints a tokenizer by its
#: ``__dict__``, which must not change when the tokenizer is first used.
_ENCODERS: "_Cache[Any, GLM4FastEncoder]" = _Cache()
#: tokenizer -> (what its Rust tokenizer looked like, its fast route or None, why not, its highest added id); same
#: reason
_ROUTES: "_Cache[Any, Tuple[Any, Any, Optional[str], int]]" = _Cache()


class GLM4FastFixMixin(GLM4ChatMixin, GLM4PaddingMixin):
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
            return super()._add_tokens(new_tokens, special_tokens=special_tokens)  # type: ignore[misc]
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

    def _glm4_route_state(self) -> Tuple[Optional[_FastRoute], str]:
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
                if kind.get("type") != "TemplateProcessing" and (kind.get("type") != "ByteLevel" or kind.get("trim_offsets", True)):
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
            split_special_tokens = self.split_special_tokens  # type: ignore[attr-defined]
        return route.text_encoder(self.glm4_encoder_name(), bool(split_special_tokens))  # type: ignore[union-attr]

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
        if "position_ids" in self.model_input_names:  # type: ignore[attr-defined]
            return False
        if PaddingStrategy(padding_strategy) != PaddingStrategy.DO_NOT_PAD and self.pad_token_id is None:  # type: ignore
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
            if max_length <= added or self.truncation_side not in ("left", "right"):  # type: ignore[attr-defined]
                return False  # the Rust route's own errors
        if (
            convert.get("return_special_tokens_mask")
            and rule is not None
            and add_special_tokens
            and not split_special_tokens
            and any(item.startswith(PREFIX_TEXT) for item in items)
        ):
            return False  # a literal prefix is text (mask 0) there, not the template's
        return True

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

            def rust() -> List[Any]:
                return self._glm4_batch(rows, stride=stride, is_split_into_words=False, convert=dict(convert),
                                        rust_route=True, **options).encodings  # fmt: skip

            return self._glm4_fast_batch(rows, rust, convert=convert, **options)
        self.set_truncation_and_padding(  # type: ignore[attr-defined]
            padding_strategy=padding_strategy,
            truncation_strategy=truncation_strategy,
            max_length=max_length,
            stride=stride,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
        )
        backend = self._tokenizer
        if backend.encode_special_tokens != split_special_tokens:
            backend.encode_special_tokens = split_special_tokens
        encodings = self._glm4_encodings(list(items), is_split_into_words, add_special_tokens)
        converted = [self._convert_encoding(encoding=e, **convert) for e in encodings]  # type: ignore[attr-defined]
        data: Dict[str, List[Any]] = {}
        for key in converted[0][0] if converted else ("input_ids",):
            data[key] = [value for fields, _ in converted for value in fields[key]]
        pieces = [e for _, row in converted for e in row]
        if convert.get("return_overflowing_tokens"):
            data["overflow_to_sample_mapping"] = [
                i for i, (fields, _) in enumerate(converted) for _ in fields["input_ids"]
            ]
        for ids in data["input_ids"]:
            self._eventual_warn_about_too_long_sequence(ids, max_length, convert.get("verbose", True))  # type: ignore
        return BatchEncoding(data, pieces, tensor_type=return_tensors)

    def _batch_encode_plus(self, batch_text_or_text_pairs: Any, *args: Any, **kwargs: Any):
        """transformers 4.x: every encoding of a fast tokenizer comes here (``__call__``, ``encode``, ``tokenize``)."""
        if args or _TRANSFORMERS_5:
            return super()._batch_encode_plus(batch_text_or_text_pairs, *args, **kwargs)  # type: ignore[misc]
        if set(kwargs) - _BATCH_KEYWORDS:  # transformers' own error for a keyword it does not take
            return super()._batch_encode_plus(batch_text_or_text_pairs, **kwargs)  # type: ignore[misc]
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
            self._eventual_warn_about_too_long_sequence(  # type: ignore[attr-defined]
                single["input_ids"], kwargs.get("max_length"), kwargs.get("verbose", True)
            )
            return single
        if args or not _TRANSFORMERS_5 or kwargs.get("sanitize_control_tokens"):
            return super()._encode_plus(text, text_pair, *args, **kwargs)  # type: ignore[misc]
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
                    f"batch length of `text`: {len(text)} does not match batch length of `text_pair`:"
                    f" {len(text_pair)}."
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
            split_special_tokens=self.split_special_tokens if split is None else split,  # type: ignore[attr-defined]
            convert=convert,
        )
        if batched or return_tensors is not None or convert.get("return_overflowing_tokens"):
            return output
        from transformers import BatchEncoding

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

    # -- saving
    def save_chat_templates(self, save_directory: Any, tokenizer_config: Dict[str, Any], *args: Any, **kwargs: Any):
        """The last step of ``save_pretrained`` before ``tokenizer_config.json`` is written: the config is made
        to load on either transformers line. transformers 5 writes the added special tokens as an
        ``extra_special_tokens`` list, which 4.x cannot read (it wants a dict and fails on ``.keys()``, reported
        as a missing protobuf); both lines read that list as ``additional_special_tokens``."""
        extra = tokenizer_config.get("extra_special_tokens")
        if isinstance(extra, (list, tuple)):
            tokenizer_config = {k: v for k, v in tokenizer_config.items() if k != "extra_special_tokens"}
            tokenizer_config["additional_special_tokens"] = list(extra)
        return super().save_chat_templates(save_directory, tokenizer_config, *args, **kwargs)  # type: ignore[misc]

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
            return super().prepare_for_model(ids, pair_ids, *args, **kwargs)  # type: ignore[misc]

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
