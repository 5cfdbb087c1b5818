"""The property battery: each property is an assertion helper plus a hypothesis strategy for its arguments.

Shared by ``glm4-tokfix check`` (``glm4_tokfix.testing.runner``) and the pytest
battery (``glm4_tokfix.testing.suite``), so both check exactly the same things::

    >>> from glm4_tokfix.testing.properties import PROPERTIES, by_name
    >>> [p.name for p in PROPERTIES][:3]
    ['prefix_idempotent', 'batch_matches_single_left', 'batch_matches_single_right']
    >>> prop = by_name("decode_round_trip")
    >>> prop.check(tok, {"text": "a<|user|>b"})        # raises AssertionError on a violation
    >>> prop.call({"text": "a<|user|>b"})
    "assert_decode_round_trip(tokenizer, text='a<|user|>b')"

An example is a dict of keyword arguments for the helper. Strategies do not
depend on the tokenizer, so they can sit in ``@given`` at import time.
Imports hypothesis (via ``strategies``): keep it out of the plugin's import path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from hypothesis import strategies as st

from glm4_tokfix.testing import assertions as a
from glm4_tokfix.testing import strategies as s

Example = Dict[str, Any]


@dataclass(frozen=True)
class Property:
    """One checkable property: ``helper(tokenizer, **example)`` must not raise for any drawn example."""

    name: str
    summary: str
    helper: Callable[..., None]
    make_strategy: Callable[[], st.SearchStrategy[Example]]
    #: why the property cannot run on a tokenizer (then it is skipped, not passed), or None when it can
    unavailable: Optional[Callable[[Any], Optional[str]]] = None

    def skip_reason(self, tokenizer: Any) -> Optional[str]:
        return self.unavailable(tokenizer) if self.unavailable is not None else None

    def strategy(self) -> st.SearchStrategy[Example]:
        return self.make_strategy()

    def check(self, tokenizer: Any, example: Mapping[str, Any]) -> None:
        """Run the helper on one example; AssertionError (with a full message) on a violation."""
        self.helper(tokenizer, **example)

    def call(self, example: Mapping[str, Any]) -> str:
        """The helper call that reproduces ``example``, as Python source."""
        args = ", ".join(f"{key}={value!r}" for key, value in example.items())
        return f"{self.helper.__name__}(tokenizer{', ' if args else ''}{args})"


def _no_chat_template(tokenizer: Any) -> Optional[str]:
    if getattr(tokenizer, "chat_template", None) or a.own_chat_template(tokenizer):
        return None
    return "the tokenizer has no chat template (a base model, such as glm-4-9b)"


def _batch(side: str) -> st.SearchStrategy[Example]:
    return st.fixed_dictionaries({"texts": s.batches(), "padding": st.just(True), "padding_side": st.just(side)})


def _batch_options() -> st.SearchStrategy[Example]:
    def merge(pair: Tuple[List[str], Example]) -> Example:
        texts, options = pair
        return {"texts": texts, **options}

    return st.tuples(s.batches(), s.encode_options(outputs=True, tensor_types=s.available_tensor_types())).map(merge)


def _prefix() -> st.SearchStrategy[Example]:
    truncation: st.SearchStrategy[Dict[str, Any]]
    truncation = st.one_of(st.just({}), st.integers(2, 32).map(lambda n: {"truncation": True, "max_length": n}))
    return st.tuples(s.prompt_texts(), truncation).map(lambda p: {"text": p[0], **p[1]})


def _optional(key: str, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Example]:
    return st.one_of(st.just({}), strategy.map(lambda v: {key: v}))


def _pad() -> st.SearchStrategy[Example]:
    return st.tuples(
        s.batches(), s.padding_sides, _optional("pad_to_multiple_of", st.integers(1, 8)), st.integers(0, 5)
    ).map(lambda p: {"texts": p[0], "padding_side": p[1], **p[2], "extra": p[3]})


PROPERTIES: Tuple[Property, ...] = (
    Property(
        "prefix_idempotent",
        "[gMASK]<sop> appears once, from the text or from add_special_tokens",
        a.assert_prefix_idempotent,
        _prefix,
    ),
    Property(
        "batch_matches_single_left",
        "padded batch (left) rows equal single encodings",
        a.assert_batch_matches_single,
        lambda: _batch("left"),
    ),
    Property(
        "batch_matches_single_right",
        "padded batch (right) rows equal single encodings",
        a.assert_batch_matches_single,
        lambda: _batch("right"),
    ),
    Property(
        "batch_matches_single_options",
        "rows equal single encodings under random encode options",
        a.assert_batch_matches_single,
        _batch_options,
    ),
    Property(
        "pad_idempotent",
        "tokenizer.pad is exact and idempotent",
        a.assert_pad_idempotent,
        _pad,
    ),
    Property(
        "chat_template_consistent",
        "chat template ids agree however they are tokenized",
        a.assert_chat_template_consistent,
        lambda: st.fixed_dictionaries({"chats": s.chat_batches(), "add_generation_prompt": st.booleans()}),
        _no_chat_template,
    ),
    Property(
        "decode_round_trip",
        "decode gives back the text exactly",
        a.assert_decode_round_trip,
        lambda: st.fixed_dictionaries({"text": s.texts()}),
    ),
    Property(
        "truncation_exact",
        "truncation keeps the prefix and exactly max_length tokens",
        a.assert_truncation_exact,
        lambda: st.fixed_dictionaries(
            {"text": s.prompt_texts(), "max_length": st.integers(2, 40), "truncation_side": s.padding_sides}
        ),
    ),
    Property(
        "pair_encoding",
        "pairs are [gMASK]<sop> A B <|endoftext|>",
        a.assert_pair_encoding,
        lambda: s.text_pairs().map(lambda p: {"text": p[0], "text_pair": p[1]}),
    ),
    Property(
        "special_tokens_mask",
        "special_tokens_mask marks exactly the added tokens",
        a.assert_special_tokens_mask,
        lambda: st.fixed_dictionaries({"text": s.prompt_texts()}),
    ),
    Property(
        "unknown_ids_rejected",
        "decoding an id outside the vocabulary is a ValueError",
        a.assert_decode_rejects_unknown_ids,
        lambda: st.fixed_dictionaries({"beyond": st.integers(0, 10**6)}),
    ),
    Property(
        "encode_consistent",
        "encode, __call__ and tokenize agree",
        a.assert_encode_consistent,
        lambda: st.fixed_dictionaries({"text": s.texts()}),
    ),
)

_BY_NAME = {p.name: p for p in PROPERTIES}


def by_name(name: str) -> Property:
    """The property called ``name``; ValueError listing the known names otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown property {name!r}; known: {', '.join(_BY_NAME)}") from None


def select(names: Optional[Iterable[str]] = None) -> Tuple[Property, ...]:
    """The properties named in ``names`` (in battery order), or all of them for None."""
    if names is None:
        return PROPERTIES
    wanted = {by_name(n).name for n in names}
    return tuple(p for p in PROPERTIES if p.name in wanted)
