# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""The prefix rule over a Rust tokenizer: ``PrefixRule`` (read from the checkpoint's own post-processor) and
``GLM4FastEncoder`` (the Rust tokenizer's encodings with ``[gMASK]<sop>`` added only when missing, truncation
counting it once). ``GLM4FastSpecMixin`` (``glm4_fast_spec``) encodes through it."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .glm4_tokens import PREFIX_TOKENS

__all__ = ["GLM4FastBackend", "GLM4FastEncoder", "PrefixRule", "prefix_rule"]


# --------------------------------------------------------------------------------------------- the rule
class PrefixRule:
    """How a GLM-4 fast tokenizer's post-processor adds ``[gMASK]<sop>``, and how to add it only when missing.

    ``ids``: the prefix ids. ``pair``: whether the pair template adds it too. ``tail``: a post-processor equal to
    the tokenizer's own without the leading prefix (None when leaving the template out is exactly what
    ``encode(..., add_special_tokens=False)`` gives, i.e. the rest of the templates is ``$A:0`` / ``$A:0 $B:1``).
    ``single_pieces``/``pair_pieces``: the templates' pieces and ``special`` (template token -> its ids), to build
    ids by hand (``build_inputs_with_special_tokens``).
    """

    __slots__ = ("ids", "pair", "pair_pieces", "single_pieces", "special", "tail", "tail_added")

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


def _may_hold_prefix(item: Any, is_pretokenized: bool) -> bool:
    """Whether a row's first text (or one of its words) holds ``[gMASK]`` at all: only such rows can start with
    the prefix ids (the ids decide, ``GLM4FastEncoder._led_by_prefix``)."""
    first = item[0] if _is_pair(item, is_pretokenized) else item
    if is_pretokenized:
        return any(isinstance(word, str) and PREFIX_TOKENS[0] in word for word in first)
    return isinstance(first, str) and PREFIX_TOKENS[0] in first


def _split_literal(first: Any, is_pretokenized: bool) -> Tuple[Any, Any]:
    """(the part giving the leading prefix ids, the rest) of a first text whose ids start with the prefix: the
    text up to the end of its first ``<sop>``; of words, the words up to it, the rest keeping an empty word in
    place of each word taken (word ids stay those of the whole row)."""
    end = PREFIX_TOKENS[-1]
    if not is_pretokenized:
        cut = first.index(end) + len(end)
        return first[:cut], first[cut:]
    words = list(first)
    for k, word in enumerate(words):
        if end in word:
            cut = word.index(end) + len(end)
            return words[:k] + [word[:cut]], [""] * k + [word[cut:]] + words[k + 1 :]
    raise ValueError(f"{end} is not in the words {words[:4]!r}")


def _without_literal(first: Any, is_pretokenized: bool) -> Any:
    """A first text (or its words) with the tokens giving its leading ``[gMASK]<sop>`` taken off the front."""
    return _split_literal(first, is_pretokenized)[1]


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

    __slots__ = ("_copy_cache", "_rule_cache", "added_state", "backend", "prefix_ids")

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
        encoded: Dict[int, Any] = {}
        literal = (
            []
            if rule is None
            else [
                i
                for i, item in enumerate(items)
                if (rule.pair or not _is_pair(item, is_pretokenized)) and _may_hold_prefix(item, is_pretokenized)
            ]
        )
        if literal:  # the ids decide: words ["[gMASK]", "<sop>"] start with the prefix, an added "[gMASK]<sop>" not
            literal, encoded = self._led_by_prefix(items, literal, rule, is_pretokenized)  # type: ignore[arg-type]
        if truncation is not None and (truncation["stride"] or truncation["strategy"] != "longest_first"):
            self._check_pairs(items, set(literal), rule, add_special_tokens, truncation, is_pretokenized)
        if not literal:
            return self.encode_plain(items, is_pretokenized, add_special_tokens)
        return self._encode_with_literals(items, literal, rule, is_pretokenized, encoded)  # type: ignore[arg-type]  # literal is empty when rule is None

    def _led_by_prefix(
        self, items: List[Any], rows: List[int], rule: PrefixRule, is_pretokenized: bool
    ) -> Tuple[List[int], Dict[int, Any]]:
        """The rows among ``rows`` whose first text's own ids (no special tokens) start with the prefix ids, and
        the encodings of those that are single texts (``_literal_row`` takes them instead of encoding again)."""
        firsts = [items[i][0] if _is_pair(items[i], is_pretokenized) else items[i] for i in rows]
        encodings = self.plain_copy().encode_batch(firsts, is_pretokenized=is_pretokenized, add_special_tokens=False)
        n = len(rule.ids)
        led = [(i, encoding) for i, encoding in zip(rows, encodings) if encoding.ids[:n] == rule.ids]
        return [i for i, _ in led], {i: e for i, e in led if not _is_pair(items[i], is_pretokenized)}

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
        self, items: List[Any], literal: List[int], rule: PrefixRule, is_pretokenized: bool,
        encoded: Optional[Dict[int, Any]] = None,
    ) -> List[Any]:  # fmt: skip
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
                out[i] = self._literal_row(copy, items[i], rule, truncation, is_pretokenized, (encoded or {}).get(i))
        if padding is not None:
            _pad_together(out, padding)
        return out

    def _literal_row(
        self, copy: Any, item: Any, rule: PrefixRule, truncation: Optional[Dict[str, Any]], pretok: bool,
        encoding: Any = None,
    ):  # fmt: skip
        """One row whose first text starts with the prefix, encoded by ``copy`` (no truncation, no padding): no
        second copy of the prefix; truncation keeps that prefix and cuts the rest, as the slow tokenizer does."""
        from tokenizers import Encoding

        if _is_pair(item, pretok):  # only without truncation and template tail (see _encode_with_literals)
            return copy.encode(item[0], item[1], is_pretokenized=pretok, add_special_tokens=False)
        if encoding is None:  # else the row's encoding by ``copy`` already made (``_led_by_prefix``)
            encoding = copy.encode(item, is_pretokenized=pretok, add_special_tokens=False)
        n_prefix = len(rule.ids)
        if truncation is not None:
            body = len(encoding) - n_prefix
            budget = truncation["max_length"] - rule.added(False)
            keep = _keep_single(body, budget, truncation["strategy"])
            if keep < body:
                # the text's own prefix tokens: offsets, words and mask as inside the text
                prefix = copy.encode(_split_literal(item, pretok)[0], is_pretokenized=pretok, add_special_tokens=False)
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


# ------------------------------------------------------------------------------------------- added tokens
def _added_top(backend: Any) -> int:
    """The highest id of the Rust tokenizer's added tokens (its vocabulary's last id when it has none)."""
    return max(backend.get_added_tokens_decoder(), default=backend.get_vocab_size(with_added_tokens=False) - 1)


def _added_tokens_unchanged(backend: Any, top: int) -> bool:
    """A cheap check that no token was added to the Rust tokenizer since its highest added id was ``top``: one
    added through it directly gets the next id. Reading the added tokens costs ~0.1 s a call with 16,384 of them;
    transformers' own ``add_tokens`` (new tokens, or new flags for one) is followed by ``_ADDED_STATE`` instead."""
    return backend.id_to_token(top + 1) is None
