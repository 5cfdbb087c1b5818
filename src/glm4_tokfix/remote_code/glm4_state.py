# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""Per-call context variables, pickle-stable caches and transformers version probes."""

from __future__ import annotations

import contextvars
import functools
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

from transformers import PreTrainedTokenizer

if TYPE_CHECKING:
    import tiktoken
    from transformers import PreTrainedTokenizerFast
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    # The host types of the mixins, for the type checker only (at run time each is ``object``, so no
    # base class or MRO changes): the tokenizer a mixin is laid over, with the attributes it relies on
    # that transformers does not declare. Stated here once.
    class _Host(PreTrainedTokenizerBase):
        """Any GLM-4 tokenizer, slow or fast (GLM4PaddingMixin, GLM4ChatMixin)."""

        def _glm4_stripping_ids(self) -> Dict[int, Any]: ...

    class _SlowHost(PreTrainedTokenizer, _Host):
        """A slow GLM-4 tokenizer: every upstream revision has these three."""

        decoder: Dict[int, bytes]  # id -> token bytes
        mergeable_ranks: Dict[bytes, int]  # token bytes -> id
        tokenizer: tiktoken.Encoding

    class _FastHost(PreTrainedTokenizerFast, _Host):
        """A transformers fast GLM-4 tokenizer."""

        _tokenizer: Any  # its tokenizers.Tokenizer (transformers declares the class attribute as None)

    class _RowHost(_Host):
        """A tokenizer, slow or fast, that ``GLM4RowBuilder`` builds rows for: the hooks each kind defines."""

        glm4_fast_path: bool

        def _glm4_text_encoder(self, split_special_tokens: Optional[bool]) -> Optional[Callable[[str], List[int]]]: ...
        def _glm4_call_prefix(self, add_special_tokens: bool) -> Optional[List[int]]: ...
        def _glm4_offset_tables(self) -> Optional[Tuple[List[int], List[int], frozenset]]: ...
        def _glm4_offsets(self, ids: Sequence[int], text: Optional[str] = None) -> List[Tuple[int, int]]: ...
        def _glm4_token_id(self, token: str) -> int: ...
        def _glm4_padding_side(self, padding_side: Optional[str], pad_to_multiple_of: Optional[int]) -> str: ...

else:
    _Host = _SlowHost = _FastHost = _RowHost = object

_K = TypeVar("_K")
_V = TypeVar("_V")


class _CallState:
    """A value one call sets for the calls it makes: a ``contextvars.ContextVar`` that pickles by name.

    A ContextVar is per thread (and per asyncio task), so one tokenizer shared between threads stays safe;
    ``get``, ``set`` and ``reset`` are the ContextVar's own methods. The holder exists for pickling:
    ``datasets`` fingerprints a ``ds.map`` function (and the tokenizer it closes over) with dill, which
    pickles a remote-code class (``transformers_modules...``) by value, methods, globals and all. A bare
    ContextVar cannot be pickled, so the hash failed and datasets re-tokenized on every run; this holder
    pickles as its name and default, the same bytes in every process.
    """

    def __init__(self, name: str, default: Any) -> None:
        self._args = (name, default)
        var: contextvars.ContextVar[Any] = contextvars.ContextVar(name, default=default)
        self.get, self.set, self.reset = var.get, var.set, var.reset

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), self._args)


class _NameSet(frozenset):
    """A frozenset of names that pickles in sorted order.

    A frozenset pickles in iteration order, which for strings changes from process to process (hash
    randomisation); ``datasets`` sorts sets and dicts before hashing but not frozensets. Class attributes
    of this module use this type so a remote-code tokenizer's fingerprint is the same in every process.
    """

    __slots__ = ()

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), (tuple(sorted(self)),))


class _Cache(weakref.WeakKeyDictionary[_K, _V]):
    """A cache of things built on first use, keyed (weakly) by the object they are built for.

    It pickles empty: what it holds is rebuilt on demand, and some of it (tiktoken's core objects) cannot
    be pickled at all. So a ``datasets`` fingerprint of a remote-code tokenizer (whose class, with the
    module's globals, dill pickles by value) is the same before and after the tokenizer is first used,
    and in every process. Caches live here, not in a tokenizer's ``__dict__``, for the same reason:
    datasets hashes that ``__dict__`` as it is.
    """

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), ())


class _Table(dict):
    """A ``_Cache`` keyed by plain values (strings, tuples) rather than weakly: it pickles empty too."""

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), ())


# transformers 5 encodes singles and batches in one ``_encode_plus``; 4.x has ``_batch_encode_plus`` too.
_ONE_ENCODE_PLUS = not hasattr(PreTrainedTokenizer, "_batch_encode_plus")


# The per-call state the fix hands through transformers' own call chain. Each is a ContextVar (per thread and
# asyncio task, so one tokenizer serves many threads) because the value must reach a hook that transformers calls
# with a fixed signature, from a method that transformers calls too: no argument can carry it, and an attribute
# on the shared tokenizer would leak between concurrent calls. Four live here, each for that reason (a fifth,
# glm4_fast_route's _CALL_ROUTE, for the same one):

# The spec's prepare_for_model took the ids' own leading prefix off (to count it once in truncation): the
# build_inputs_with_special_tokens that transformers' prepare_for_model calls must then add the prefix
# unconditionally, so a text holding it twice keeps both copies.
_PREFIX_STRIPPED = _CallState("glm4_prefix_stripped", False)


# Offsets on transformers' generic path (pairs, overflow, a call the accelerator does not take): the rows still
# to build, in order, as (ids, offsets) per sequence; prepare_for_model, which transformers calls per row, takes
# one per call (GLM4OffsetsMixin).
_OFFSET_ROWS = _CallState("glm4_offset_rows", None)


# While set, truncate_sequences (called by transformers' prepare_for_model) appends how many tokens of each
# sequence it kept, so the row's offsets are cut the same way (GLM4OffsetsMixin).
_TRUNCATION_LOG = _CallState("glm4_truncation_log", None)


# Set while transformers 4.x's generic batch path runs: its per-row ``tokenize`` call forgets the
# caller's ``split_special_tokens``, so the spec's ``tokenize`` takes it from here (GLM4SpecMixin).
_SPLIT_SPECIAL = _CallState("glm4_split_special", None)


# tokenizer -> a new object each time transformers' _add_tokens ran on it (added tokens, or their flags, may have
# changed: the caches of added-token literals compare it), see GLM4BatchEncoder._add_tokens
_ADDED_STATE: _Cache[Any, object] = _Cache()


@functools.cache
def _transformers_sanitizes() -> bool:
    """True when transformers' own apply_chat_template has sanitize_control_tokens (5.x)."""
    import inspect

    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    return "sanitize_control_tokens" in inspect.signature(PreTrainedTokenizerBase.apply_chat_template).parameters


@functools.cache
def _return_dict_default() -> bool:
    """transformers' default for apply_chat_template(return_dict=...): False on 4.x, True on 5.x."""
    import inspect

    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    return inspect.signature(PreTrainedTokenizerBase.apply_chat_template).parameters["return_dict"].default
