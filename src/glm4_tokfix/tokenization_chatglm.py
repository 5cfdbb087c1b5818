# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""A GLM-4 (glm-4-9b-chat) tokenizer whose batch encoding is exact.

This file stands alone: it imports only the standard library, ``regex``,
``tiktoken`` and ``transformers`` (and ``fastokens`` lazily, when installed), so it can be copied into a model folder in
place of the upstream ``tokenization_chatglm.py`` and loaded with
``AutoTokenizer.from_pretrained(folder, trust_remote_code=True)``.

It defines:

``GLM4FixMixin``
    The fix, as a set of methods that can be laid over any GLM-4 tokenizer
    class (ours below, or upstream's remote-code class) that has ``decoder``
    (id -> bytes), ``mergeable_ranks`` (bytes -> id), ``tokenizer`` (a
    ``tiktoken.Encoding``) and the 14 GLM-4 tokens registered as added tokens.
    It is built from two parts that also stand on their own:

    ``GLM4PaddingMixin``
        The padding rules (``_pad``) and a batched ``pad()``, on transformers'
        generic tokenizer attributes only: reusable over fast GLM-4 tokenizers.
    ``GLM4BatchEncoder``
        The fast path for plain texts: tiktoken encodes, rows (lists, or numpy
        arrays and torch tensors) are built in one pass.

Encoder backends (the section "encoder backends" below)
    The engine the fast path encodes with, behind one small interface
    (``GLM4EncoderBackend``: ``encode`` / ``encode_batch`` / ``text_encoder``, with or without
    added-token splitting), built from ranks, split pattern and added tokens alone:
    ``TiktokenBackend`` (the default without fastokens; the reference) and ``FastokensBackend``
    (fastokens, the default when installed). Pick one with ``tok.glm4_encoder`` or
    ``$GLM4_TOKFIX_ENCODER``.

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
import copy
import functools
import importlib
import inspect
import itertools
import operator
import os
import shutil
import threading
import weakref
from collections.abc import Mapping, Sized
from itertools import chain
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import regex
import tiktoken
from transformers import PreTrainedTokenizer
from transformers.tokenization_utils_base import AddedToken, BatchEncoding, PreTrainedTokenizerBase, TruncationStrategy
from transformers.utils import PaddingStrategy, TensorType

__all__ = [
    "ChatGLM4Tokenizer",
    "FastokensBackend",
    "GLM4EncoderBackend",
    "GLM4_ENCODERS",
    "TiktokenBackend",
    "GLM4BatchEncoder",
    "GLM4ChatMixin",
    "GLM4FixMixin",
    "GLM4PaddingMixin",
    "GLM4_SPECIAL_TOKENS",
    "GLM4_SPEC_HOOKS",
    "GLM4_PAT_STR",
    "GLM4_ROLE_TOKENS",
    "glm4_fixed_class",
    "glm4_host_methods",
    "glm4_reply_spans",
]

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


class _Cache(weakref.WeakKeyDictionary):
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


# Set while ``prepare_for_model`` builds a sequence whose own leading prefix it
# has already taken off: the prefix must then be added unconditionally, so a
# text holding it twice keeps both copies.
_PREFIX_STRIPPED = _CallState("glm4_prefix_stripped", False)

# Offsets on transformers' generic path (pairs, overflow, a tokenizer without the fast path): the rows
# still to build, in order, as (ids, offsets) per sequence; ``prepare_for_model`` takes one per call.
_OFFSET_ROWS = _CallState("glm4_offset_rows", None)
# While set, ``truncate_sequences`` appends how many tokens of each sequence it kept.
_TRUNCATION_LOG = _CallState("glm4_truncation_log", None)

# transformers 5 encodes singles and batches in one ``_encode_plus``; 4.x has ``_batch_encode_plus`` too.
_ONE_ENCODE_PLUS = not hasattr(PreTrainedTokenizer, "_batch_encode_plus")

# Set while transformers 4.x's generic batch path runs: its per-row ``tokenize`` call forgets the
# caller's ``split_special_tokens``, so ``GLM4FixMixin.tokenize`` takes it from here.
_SPLIT_SPECIAL = _CallState("glm4_split_special", None)


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


# ----------------------------------------------------------------- encoder backends
# The engine that turns a text into BPE ids on the fast path. A backend is built from the vocabulary
# alone -- ``ranks`` (bytes -> id), the split pattern and ``added_tokens`` (content -> id: the literals
# split out as their own ids) -- so any GLM-4 tokenizer class can use one. Two exist:
#
# ``TiktokenBackend``   tiktoken: the default without fastokens, and the reference for the other.
# ``FastokensBackend``  fastokens (``pip install "glm4-tokfix[fast]"``): the default when installed.
#
# Both give the same ids for every text (tests/test_encoder_backends.py). A tokenizer picks one with
# ``tok.glm4_encoder`` or ``$GLM4_TOKFIX_ENCODER`` ("tiktoken" or "fastokens"; see
# ``GLM4BatchEncoder.glm4_encoder``). transformers' generic path always runs on tiktoken.

#: The environment variable that picks the encoder backend when ``tok.glm4_encoder`` is None.
GLM4_ENCODER_ENV = "GLM4_TOKFIX_ENCODER"
#: The encoder backends, by name.
GLM4_ENCODERS = ("tiktoken", "fastokens")
#: Where glm4-tokfix keeps files it builds once (fastokens' tokenizer.json); default
#: ``$XDG_CACHE_HOME/glm4_tokfix`` or ``~/.cache/glm4_tokfix``.
GLM4_CACHE_ENV = "GLM4_TOKFIX_CACHE_DIR"


def _is_rust_panic(exc: BaseException) -> bool:
    """True for pyo3's PanicException (a BaseException, so ``except Exception`` would miss it)."""
    return type(exc).__name__ == "PanicException"


def _engine_error(engine: str, text: str, exc: BaseException) -> ValueError:
    return ValueError(
        f"{engine} cannot encode this text ({len(text)} characters): {exc}. Texts that trigger this hold very "
        "long runs of one kind of character (e.g. 1,000,000+ whitespace characters); split such a text, or "
        f"use the other encoder backend ({GLM4_ENCODER_ENV}=fastokens copes with them)"
    )


def _without_surrogates(text: str) -> str:
    """Each lone surrogate as U+FFFD (the UTF-16 round trip), as tiktoken's own ``encode_ordinary`` does."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _first_characters(tokens: Iterable[str]) -> Tuple[str, ...]:
    """The characters the added tokens start with, sorted: a text holding none of them has no added token."""
    return tuple(sorted({token[0] for token in tokens if token}))


def _overlapping(contents: Sequence[str], itself: bool = False) -> bool:
    """Whether an added token lies inside another or a suffix of one starts another (splitting is ambiguous);
    ``itself=True``: also a suffix of one that starts the same one (``"aba"`` in ``"ababa"``), so that no two
    occurrences of the tokens in any text can overlap."""
    return any(
        (a != b or itself)
        and ((a != b and a in b) or any(a.endswith(b[:k]) for k in range(1, min(len(a), len(b)))))
        for a in contents
        for b in contents
    )


@functools.lru_cache(maxsize=32)
def _disjoint_literals(contents: Tuple[str, ...]) -> bool:
    """Whether no two occurrences of these added-token literals can overlap in a text (cached)."""
    return all(contents) and not _overlapping(contents, itself=True)


def _may_hold(text: str, starts: Tuple[str, ...]) -> bool:
    """Whether ``text`` holds one of the characters ``starts`` (``_first_characters`` of the added tokens)."""
    for start in starts:
        if start in text:
            return True
    return False


def _encode_text(
    ordinary: Callable[[str], List[int]],
    with_special: Callable[[str, Any], List[int]],
    starts: Tuple[str, ...],
    allowed: Any,
    text: str,
) -> List[int]:
    """One text through tiktoken's core: ``with_special`` only when a special token may occur."""
    try:
        return with_special(text, allowed) if _may_hold(text, starts) else ordinary(text)
    except UnicodeEncodeError:  # lone surrogates
        return _encode_text(ordinary, with_special, starts, allowed, _without_surrogates(text))
    except BaseException as exc:  # noqa: B036 -- only a Rust panic is turned into a ValueError
        if _is_rust_panic(exc):
            raise _engine_error("tiktoken", text, exc) from None
        raise


def _encode_in_threads(texts: List[str], encode: Callable[[str], List[int]], threads: int) -> List[List[int]]:
    """``[encode(t) for t in texts]``, shared among ``threads`` threads (1: serially, in this thread).

    The engines release the GIL while they merge. The calling thread encodes the first text itself,
    before any worker: tiktoken's regex gives its fast cache to the first thread that uses it, and
    later single-text calls come from this thread. Then it only waits (measured here, that beats it
    taking a share). A worker's exception reaches the caller.
    """
    if threads <= 1 or len(texts) < 2:
        return [encode(text) for text in texts]
    threads = min(threads, len(texts))
    encoded: List[Any] = [None] * len(texts)
    encoded[0] = encode(texts[0])

    def work(k: int) -> None:  # every threads-th text from 1 + k on: the shares stay balanced
        encoded[1 + k :: threads] = [encode(text) for text in texts[1 + k :: threads]]

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="glm4-tokfix") as pool:
        for _ in pool.map(work, range(threads)):  # re-raises a worker's exception
            pass
    return encoded


class GLM4EncoderBackend:
    """What the fast path needs from a BPE engine: text -> ids, one text or a batch.

    ``added_tokens`` (content -> id) are split out of a text as their ids unless ``split_special`` is
    True (then every text is ordinary text). Texts are encoded as tiktoken's ``encode_ordinary`` /
    ``encode(allowed_special=...)`` do: lone surrogates become U+FFFD; a text the engine cannot encode
    is a ``ValueError`` (never a Rust panic). Backends are immutable and shared between threads.
    """

    #: the name ``glm4_encoder`` / ``$GLM4_TOKFIX_ENCODER`` gives it
    name = ""
    #: whether threads speed a batch up (the engine releases the GIL while it merges); when False, a batch
    #: is encoded serially unless ``glm4_encode_threads`` asks for threads explicitly
    threads_help = True

    def text_encoder(self, split_special: bool = False) -> Callable[[str], List[int]]:
        """A function text -> ids (a fresh list, the caller's to change)."""
        raise NotImplementedError

    def encode(self, text: str, split_special: bool = False) -> List[int]:
        return self.text_encoder(split_special)(text)

    def encode_batch(self, texts: Sequence[str], split_special: bool = False, threads: int = 1) -> List[List[int]]:
        """``[encode(t) for t in texts]``, shared among up to ``threads`` threads."""
        return _encode_in_threads(list(texts), self.text_encoder(split_special), threads)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}: {len(self.added_tokens)} added tokens>"


class TiktokenBackend(GLM4EncoderBackend):
    """tiktoken (``tiktoken.Encoding``; its Rust core is called directly, past the wrapper's checks)."""

    name = "tiktoken"

    def __init__(self, ranks: Mapping[bytes, int], pat_str: str, added_tokens: Mapping[str, int]) -> None:
        ordinary = tiktoken.Encoding(name="glm4", pat_str=pat_str, mergeable_ranks=dict(ranks), special_tokens={})
        special = None
        if added_tokens:
            special = tiktoken.Encoding(
                name="glm4-with-added-tokens", pat_str=pat_str, mergeable_ranks=dict(ranks),
                special_tokens=dict(added_tokens),
            )  # fmt: skip
        self._init(ordinary, special)

    @classmethod
    def from_encodings(cls, ordinary: tiktoken.Encoding, special: Optional[tiktoken.Encoding]) -> "TiktokenBackend":
        """A backend over ready encodings: ``ordinary`` without special tokens, ``special`` with the added
        tokens as its special tokens (None: no added tokens)."""
        backend = cls.__new__(cls)
        backend._init(ordinary, special)
        return backend

    def _init(self, ordinary: tiktoken.Encoding, special: Optional[tiktoken.Encoding]) -> None:
        self.added_tokens = dict(special._special_tokens) if special is not None else {}
        core = ordinary._core_bpe
        self._ordinary = functools.partial(_encode_text, core.encode_ordinary, core.encode, (), frozenset())
        if special is None:
            self._special = self._ordinary
        else:
            allowed = special.special_tokens_set
            core = special._core_bpe
            self._special = functools.partial(
                _encode_text, core.encode_ordinary, core.encode, _first_characters(allowed), allowed
            )

    def text_encoder(self, split_special: bool = False) -> Callable[[str], List[int]]:
        return self._ordinary if split_special else self._special


def _fastokens_encode(
    ordinary: Callable[[str], Any], pattern: Optional["regex.Pattern[str]"], starts: Tuple[str, ...],
    added: Dict[str, int], text: str,
) -> List[int]:  # fmt: skip
    """One text through fastokens: the added-token literals split out here, the pieces between encoded."""
    try:
        if pattern is None or not _may_hold(text, starts):
            return ordinary(text).ids
        ids: List[int] = []
        position = 0
        for match in pattern.finditer(text):
            if match.start() > position:
                ids += ordinary(text[position : match.start()]).ids
            ids.append(added[match.group()])
            position = match.end()
        if position < len(text):
            ids += ordinary(text[position:]).ids
        return ids
    except UnicodeEncodeError:  # lone surrogates
        return _fastokens_encode(ordinary, pattern, starts, added, _without_surrogates(text))
    except BaseException as exc:  # noqa: B036 -- only a Rust panic is turned into a ValueError
        if _is_rust_panic(exc):
            raise _engine_error("fastokens", text, exc) from None
        raise


# a vocabulary's tiktoken encoding -> {(backend name, added tokens): backend}
_BACKENDS: "_Cache[tiktoken.Encoding, Dict[Tuple[str, Any], GLM4EncoderBackend]]" = (
    _Cache()
)
# (pattern, ranks digest) -> fastokens.Tokenizer: one per vocabulary and process (it takes ~2 s to load)
_FASTOKENS_NATIVE: "_Table" = _Table()  # (pattern, ranks digest) -> fastokens' native tokenizer
_FASTOKENS_LOCK = threading.Lock()


def _fastokens_missing() -> ImportError:
    return ImportError(
        "the fastokens encoder backend needs the fastokens package: pip install \"glm4-tokfix[fast]\" "
        f"(or unset {GLM4_ENCODER_ENV} / set tok.glm4_encoder = 'tiktoken')"
    )


def _import_fastokens() -> Any:
    try:
        return importlib.import_module("fastokens")
    except ImportError:
        raise _fastokens_missing() from None


def glm4_cache_dir() -> str:
    """The folder glm4-tokfix caches built files in: ``$GLM4_TOKFIX_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/glm4_tokfix``, else ``~/.cache/glm4_tokfix``."""
    given = os.environ.get(GLM4_CACHE_ENV)
    if given:
        return given
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "glm4_tokfix")


def _ranks_digest(ranks: Mapping[bytes, int], pat_str: str) -> str:
    """sha256 of the split pattern and the ranks (tokens in rank order, each length-prefixed)."""
    import hashlib

    digest = hashlib.sha256(b"glm4-tokfix fastokens tokenizer.json v1\0" + pat_str.encode("utf-8") + b"\0")
    by_rank = sorted(ranks.items(), key=operator.itemgetter(1))
    digest.update(b"".join(len(t).to_bytes(4, "little") + r.to_bytes(4, "little") + t for t, r in by_rank))
    return digest.hexdigest()


def fastokens_tokenizer_json(ranks: Mapping[bytes, int], pat_str: str) -> str:
    """The ``tokenizer.json`` (BPE only: no added tokens, no post-processor) fastokens loads for ``ranks``.

    Made by transformers' ``TikTokenConverter``, which sets ``ignore_merges=True``: GLM-4 has vocabulary
    tokens that no chain of merges reaches (893 on glm-4-9b-chat), and only then does a whole pre-token
    that is itself a token become that token, as in tiktoken. (fastokens' own ``from_tiktoken`` builds
    the model without it and fails on GLM-4's ranks.)
    """
    from transformers.convert_slow_tokenizer import TikTokenConverter, bytes_to_unicode

    given = dict(ranks)

    class _Converter(TikTokenConverter):
        # The converter reads a file through tiktoken's loader (which keeps a copy in a cache folder of
        # its own on transformers 4.x); here the ranks are given, on both lines alike.
        def extract_vocab_merges_from_model(self, _url: Any) -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
            byte_chars = bytes_to_unicode()

            def as_str(token: bytes) -> str:
                return "".join(byte_chars[b] for b in token)

            merges: List[Tuple[int, bytes, bytes]] = []
            for token, rank in given.items():
                # every way the token splits into two tokens, the lower-ranked parts first
                splits = [(token[:k], token[k:]) for k in range(1, len(token)) if token[:k] in given and token[k:] in given]
                splits.sort(key=lambda parts: (given[parts[0]], given[parts[1]]))
                merges += [(rank, left, right) for left, right in splits]
            merges.sort(key=operator.itemgetter(0))  # stable: by the merged token's rank
            vocab = {as_str(token): rank for token, rank in given.items()}
            return vocab, [(as_str(left), as_str(right)) for _, left, right in merges]

    # 4.x adds `additional_special_tokens` (None fails); 5.x takes it as an unknown keyword: [] adds none on both
    backend = _Converter(vocab_file="<ranks>", pattern=pat_str, additional_special_tokens=[]).converted()
    backend.post_processor = None
    return backend.to_str()


def _fastokens_native(ranks: Mapping[bytes, int], pat_str: str) -> Any:
    """fastokens' tokenizer for ``ranks``: from this process's memory, else from the cache folder's
    ``fastokens-<digest>.json``, else built (``fastokens_tokenizer_json``) and written there atomically.
    An unwritable cache folder only means the file is rebuilt in the next process."""
    fastokens = _import_fastokens()
    # fastokens' own worker pool is process-wide and sized once, on first use: glm4-tokfix does the
    # parallel work itself (glm4_encode_threads, TOKENIZERS_PARALLELISM), so that pool stays at one
    # thread unless you set FASTOKENS_BPE_THREADS yourself. No thread of its own also keeps fork() safe.
    os.environ.setdefault("FASTOKENS_BPE_THREADS", "1")
    digest = _ranks_digest(ranks, pat_str)
    with _FASTOKENS_LOCK:
        native = _FASTOKENS_NATIVE.get((pat_str, digest))
        if native is not None:
            return native
        folder = glm4_cache_dir()
        path = os.path.join(folder, f"fastokens-{digest[:40]}.json")
        if os.path.isfile(path):
            try:
                native = fastokens.Tokenizer.from_file(path)
            except (ValueError, OSError):  # a damaged file: build it again
                native = None
        if native is None:
            text = fastokens_tokenizer_json(ranks, pat_str)
            native = fastokens.Tokenizer.from_json_str(text)
            try:
                os.makedirs(folder, exist_ok=True)
                import tempfile

                handle, temporary = tempfile.mkstemp(prefix=".fastokens-", suffix=".json.tmp", dir=folder)
                try:
                    with os.fdopen(handle, "w", encoding="utf-8") as out:
                        out.write(text)
                    os.replace(temporary, path)
                except BaseException:
                    os.unlink(temporary)
                    raise
            except OSError:
                pass  # a read-only or full cache folder: the tokenizer is in memory
        _FASTOKENS_NATIVE[(pat_str, digest)] = native
        return native


class FastokensBackend(GLM4EncoderBackend):
    """fastokens (``fastokens.Tokenizer`` over a ``tokenizer.json`` from transformers' converter).

    The JSON is built once per vocabulary and cached (``glm4_cache_dir()``, keyed by a hash of the ranks
    and pattern; never in a model folder); the added tokens are split out here, as tiktoken does, so
    adding tokens never rebuilds it.
    """

    name = "fastokens"
    # encode_ordinary holds the GIL: measured here, two threads on one batch took 0.47x raw tiktoken's time,
    # one thread 0.33x (two long texts at once: 3x one alone)
    threads_help = False

    def __init__(self, ranks: Mapping[bytes, int], pat_str: str, added_tokens: Mapping[str, int]) -> None:
        self._native = _fastokens_native(ranks, pat_str)
        self._init(added_tokens)

    def with_added_tokens(self, added_tokens: Mapping[str, int]) -> "FastokensBackend":
        """The same vocabulary with other added tokens (no reload)."""
        backend = type(self).__new__(type(self))
        backend._native = self._native
        backend._init(added_tokens)
        return backend

    def _init(self, added_tokens: Mapping[str, int]) -> None:
        self.added_tokens = dict(added_tokens)
        ordinary = self._native.encode_ordinary
        self._ordinary = functools.partial(_fastokens_encode, ordinary, None, (), {})
        if self.added_tokens:
            pattern = _control_pattern(self.added_tokens)
            starts = _first_characters(self.added_tokens)
            self._special = functools.partial(_fastokens_encode, ordinary, pattern, starts, self.added_tokens)
        else:
            self._special = self._ordinary
        for encoder in (self._ordinary, self._special):
            encoder.threads_help = self.threads_help

    def text_encoder(self, split_special: bool = False) -> Callable[[str], List[int]]:
        return self._ordinary if split_special else self._special


@functools.lru_cache(maxsize=None)
def fastokens_available() -> bool:
    """True when the fastokens package imports (a broken install counts as absent)."""
    try:
        importlib.import_module("fastokens")
    except ImportError:
        return False
    return True


def resolve_encoder_name(choice: Optional[str] = None) -> str:
    """The backend a tokenizer with ``glm4_encoder = choice`` uses: ``choice``, else ``$GLM4_TOKFIX_ENCODER``,
    else fastokens when installed, else tiktoken. An unknown name is a ValueError; fastokens asked for
    but not installed an ImportError."""
    source = "glm4_encoder"
    if choice is None:
        choice = os.environ.get(GLM4_ENCODER_ENV) or None
        source = GLM4_ENCODER_ENV
    if choice is None:
        return "fastokens" if fastokens_available() else "tiktoken"
    if choice not in GLM4_ENCODERS:
        raise ValueError(f"{source} must be one of {', '.join(GLM4_ENCODERS)} (or unset), got {choice!r}")
    if choice == "fastokens" and not fastokens_available():
        raise _fastokens_missing()
    return choice


_UTF8_CONTINUATION = bytes(range(0x80, 0xC0))
def _offset_tables(pieces: Dict[int, bytes]) -> Tuple[List[int], List[int], frozenset]:
    """The per-id tables of offsets and assistant masks, from each token id's bytes: how many characters the
    token starts (its bytes that are not UTF-8 continuation bytes), 1 if it begins inside a character (its
    first byte is one), and the set of the ids that do. Ids missing from ``pieces`` start nothing."""
    size = max(pieces, default=-1) + 1
    starts_chars, begins_inside = [0] * size, [0] * size
    for i, piece in pieces.items():
        starts_chars[i] = len(piece.translate(None, _UTF8_CONTINUATION))
        begins_inside[i] = int(bool(piece) and (piece[0] & 0xC0) == 0x80)
    return starts_chars, begins_inside, frozenset(i for i, flag in enumerate(begins_inside) if flag)


# tiktoken encoding -> ((added-tokens key), (chars started per id, begins-inside-a-character per id))
_OFFSET_TABLES: "_Cache[Any, Any]" = _Cache()
# tokenizer -> (added-tokens key, signature, content -> id of the literals a backend splits out), see
# _glm4_added_literals
_ADDED_LITERALS: "_Cache[Any, Tuple[Any, Any, Optional[Dict[str, int]]]]" = _Cache()
# tokenizer -> (those literals, tiktoken encoding with them as special tokens), see _glm4_special_encoding
_SPECIAL_ENCODINGS: "_Cache[Any, Tuple[Any, Optional[tiktoken.Encoding]]]" = _Cache()
# class -> (names, defaults) of transformers' prepare_for_model arguments, see _glm4_prepare_params
_PREPARE_PARAMS: "_Cache[type, Tuple[Tuple[str, ...], Dict[str, Any]]]" = _Cache()


def token_char_offsets(pieces: Iterable[bytes], start: int = 0) -> List[Tuple[int, int]]:
    """``(start, end)`` character offsets of consecutive tokens, from their bytes alone.

    ``pieces`` are the UTF-8 bytes of each token of one text, in order (BPE tokens may end or begin
    inside a multi-byte character). The offsets count characters (code points) of that text from
    ``start``, exactly as a byte-level HF fast tokenizer with ``trim_offsets=False`` gives them: a
    token covers every character one of its bytes belongs to, so the tokens a character was split
    into all get that whole character::

        >>> token_char_offsets([b"a", b"\\xe4\\xbd", b"\\xa0", b" b"])   # "a你 b"
        [(0, 1), (1, 2), (1, 2), (2, 4)]

    A lone surrogate, which tiktoken encodes as U+FFFD, is one character like U+FFFD.
    """
    offsets: List[Tuple[int, int]] = []
    append = offsets.append
    chars = start  # characters started so far
    for piece in pieces:
        if piece.isascii():
            end = chars + len(piece)
            append((chars, end))
            chars = end
            continue
        begins_inside = piece[:1] and (piece[0] & 0xC0) == 0x80  # first byte continues the previous character
        end = chars + len(piece.translate(None, _UTF8_CONTINUATION))
        append((chars - 1 if begins_inside else chars, end))
        chars = end
    return offsets


def assistant_token_mask(offsets: Sequence[Sequence[int]], spans: Sequence[Sequence[int]]) -> List[int]:
    """1 on each token whose characters overlap one of ``spans``, 0 elsewhere.

    ``offsets`` are one row's ``(start, end)`` character offsets (``return_offsets_mapping=True``),
    ``spans`` the ``(start, end)`` character spans of the assistant replies in the same text (what
    transformers' chat-template renderer reports for ``{% generation %}`` blocks). Zero-width tokens
    -- an added prefix, pads -- are 0. A token cut by a span's edge counts as inside, so a reply cut by
    truncation keeps its remaining tokens. Works for any tokenizer that gives offsets.
    """
    spans = sorted((int(a), int(b)) for a, b in spans if b > a)
    mask = [0] * len(offsets)
    k = 0
    for i, (start, end) in enumerate(offsets):
        if end <= start:
            continue
        while k < len(spans) and spans[k][1] <= start:
            k += 1
        if k == len(spans):
            break
        if end > spans[k][0]:
            mask[i] = 1
    return mask


# transformers 5.24's private-use markers around control-token literals found in user input (the same
# characters, so a chat marked by either side encodes alike).
_CONTROL_START, _CONTROL_END = "\U000f0000", "\U000f0001"
_GENERATION_TAG = regex.compile(r"\{%-?\s*generation\s*-?%\}")
# {% generation %} / {% endgeneration %} with their whitespace control, for _span_marked_template
_GENERATION_TAGS = regex.compile(r"\{%(-?)\s*(generation|endgeneration)\s*(-?)%\}")
# the template variables that carry one call's span markers (see _span_marked_template)
_SPAN_OPEN_VAR, _SPAN_CLOSE_VAR = "glm4_tokfix_span_open", "glm4_tokfix_span_close"


@functools.lru_cache(maxsize=32)
def _span_marked_template(marked: str) -> str:
    """``marked`` with each ``{% generation %}`` / ``{% endgeneration %}`` turned into an if-block that
    prints a marker variable, whitespace control kept: one plain render then gives the rendering with a
    marker where each generation block starts and ends, instead of transformers' generation tracker
    (which renders block by block, about twice as slow). Used for the shipped marked copies only, whose
    blocks print straight into the rendering (tests/test_chat_templates.py compares the two routes)."""

    def block(match: "regex.Match[str]") -> str:
        var = _SPAN_OPEN_VAR if match.group(2) == "generation" else _SPAN_CLOSE_VAR
        return "{%" + match.group(1) + " if true %}{{ " + var + " }}{% endif " + match.group(3) + "%}"

    return _GENERATION_TAGS.sub(block, marked)


def _split_span_markers(text: str, marker: str, digits: str) -> Optional[Tuple[str, List[Tuple[int, int]]]]:
    """The rendering without ``marker`` + "<"/">" and the (start, end) of each marked block in it; None
    when the markers do not alternate open, close, or ``digits`` (the end of ``marker``, which no text holds
    by chance) appear without the rest of the marker (the template changed it): then the generation tracker
    decides. The text is searched once, for the digits."""
    parts = text.split(digits)
    head = marker[: len(marker) - len(digits)]
    pieces, spans, at, start = [], [], 0, None
    before = parts[0]
    for part in parts[1:]:
        if not before.endswith(head):
            return None
        before = before[: len(before) - len(head)]
        pieces.append(before)
        at += len(before)
        kind = part[:1]
        if kind == "<" and start is None:
            start = at
        elif kind == ">" and start is not None:
            spans.append((start, at))
            start = None
        else:
            return None
        before = part[1:]
    pieces.append(before)
    return ("".join(pieces), spans) if start is None else None


def _flat_ids(rows: Sequence[Sequence[int]]) -> Tuple[Any, List[int]]:
    """All rows' token ids as one numpy int64 array, and where each row starts in it (``bounds[k]`` ..
    ``bounds[k + 1]``): what the numpy passes over many rows (offsets, assistant masks) start from."""
    import numpy as np

    bounds = [0, *itertools.accumulate(map(len, rows))]
    return np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=bounds[-1]), bounds


class _RowCharacters:
    """Where the tokens of many rows fall in their texts' characters, for assistant masks.

    ``starts_chars[i]``: the characters token ``i`` starts; ``begins_inside[i]``: 1 if it begins inside a
    character (so it also covers the one before its running count). ``totals()``: each row's characters;
    ``token_ranges(spans, shifts)``: per row, the ``(lo, hi)`` token range of each character span -- the
    tokens that overlap it, the ones ``assistant_token_mask`` picks from the offsets -- with the row's
    characters counted from ``shifts[k]`` (what a left cut removed before them).

    One numpy pass over every row at once (numpy comes with transformers): a running sum of all ids, and
    the span ends found by ``searchsorted`` for all spans together. Without numpy, a running sum and
    bisection per row (the reference: tests compare the two).
    """

    def __init__(self, starts_chars: Sequence[int], begins_inside: Sequence[int], rows: Sequence[Sequence[int]]):
        self.starts_chars, self.begins_inside, self.rows = starts_chars, begins_inside, rows
        try:
            import numpy as np
        except ImportError:
            np = None
        self.np = np if rows else None
        if self.np is not None:
            self.flat, bounds = _flat_ids(rows)
            self.totals_all = np.zeros(len(self.flat) + 1, dtype=np.int64)
            np.cumsum(_numpy_table(starts_chars)[self.flat], out=self.totals_all[1:])
            self.bounds = np.asarray(bounds, dtype=np.int64)
            self.bases = self.totals_all[self.bounds]  # the characters before each row
        else:
            self.running = [list(itertools.accumulate(map(starts_chars.__getitem__, ids), initial=0)) for ids in rows]

    def totals(self) -> List[int]:
        if self.np is None:
            return [r[-1] for r in self.running]
        return (self.bases[1:] - self.bases[:-1]).tolist()

    def token_ranges(self, spans: Sequence[Sequence[Tuple[int, int]]], shifts: Sequence[int]) -> List[List[Tuple[int, int]]]:
        if self.np is None:
            return [self._ranges_of_row(k, row_spans, shift) for k, (row_spans, shift) in enumerate(zip(spans, shifts))]
        np = self.np
        which, starts, ends = [], [], []
        for k, (row_spans, shift) in enumerate(zip(spans, shifts)):
            for a, b in sorted(row_spans):
                if b > a:
                    which.append(k)
                    starts.append(a - shift)
                    ends.append(b - shift)
        out: List[List[Tuple[int, int]]] = [[] for _ in spans]
        if not which or not len(self.flat):
            return out
        rows_of = np.asarray(which, dtype=np.int64)
        first, stop = self.bounds[rows_of], self.bounds[rows_of + 1] + 1  # each span's row in totals_all
        base = self.bases[rows_of]
        totals, n = self.totals_all, stop - 1 - first
        want_a = np.asarray(starts, dtype=np.int64) + base
        want_b = np.asarray(ends, dtype=np.int64) + base
        # bisect_right / bisect_left in the row's running counts: the same in the sorted whole, clipped to the row
        lo = np.maximum(np.clip(np.searchsorted(totals, want_a, "right"), first, stop) - first - 1, 0)
        hi = np.minimum(np.maximum(np.clip(np.searchsorted(totals, want_b, "left"), first, stop) - first, lo), n)
        # a token at hi that begins inside the span's last character still overlaps it
        at = np.minimum(first + hi, max(len(self.flat) - 1, 0))
        inside = _numpy_table(self.begins_inside)
        more = (hi < n) & (totals[first + hi] - inside[self.flat[at]] < want_b)
        his = hi.tolist()
        for j in np.flatnonzero(more).tolist():
            h, last, row_first = his[j], int(n[j]), int(first[j])
            while h < last and int(totals[row_first + h]) - self.begins_inside[int(self.flat[row_first + h])] < ends[j] + int(base[j]):
                h += 1
            his[j] = h
        for k, l, h in zip(which, lo.tolist(), his):
            if h > l:
                out[k].append((l, h))
        return out

    def _ranges_of_row(self, k: int, row_spans: Sequence[Tuple[int, int]], shift: int) -> List[Tuple[int, int]]:
        import bisect

        ids, ends, inside = self.rows[k], self.running[k], self.begins_inside
        n, found = len(ids), []
        for a, b in sorted(row_spans):
            if b <= a:
                continue
            a, b = a - shift, b - shift
            lo = max(bisect.bisect_right(ends, a) - 1, 0)
            hi = min(bisect.bisect_left(ends, b, lo), n)
            while hi < n and ends[hi] - inside[ids[hi]] < b:
                hi += 1
            if hi > lo:
                found.append((lo, hi))
        return found


def _mask_of_ranges(width: int, lead: int, ranges: Sequence[Tuple[int, int]]) -> List[int]:
    """A row of ``width`` zeros with ones on each ``(lo, hi)`` range of tokens, shifted by ``lead`` pads."""
    mask = [0] * width
    for lo, hi in ranges:
        mask[lead + lo : lead + hi] = [1] * (hi - lo)
    return mask


def _row_ranges_at_literals(
    row: Sequence[int], text: str, row_spans: Sequence[Tuple[int, int]], literals: Tuple[Tuple[str, int], ...]
) -> Optional[List[Tuple[int, int]]]:
    """``_RowCharacters.token_ranges`` of one row without the characters of every token, for spans whose edges
    are next to added-token literals (or at the text's ends), as in GLM-4's templates: a reply starts after
    ``<|assistant|>`` and ends before the next turn's token or at the end. None when an edge is elsewhere.

    ``row`` must be the text's own encoding (nothing added, nothing cut) with ``literals`` (content -> id
    pairs) split out as their ids, ids BPE never makes, and no two occurrences of the literals able to
    overlap in the text (``GLM4ChatMixin._glm4_mask_literals``). Then the k-th occurrence of a literal in
    the text is the k-th occurrence of its id in the row, and no token crosses an edge: the tokens before
    an edge are counted with ``str.count`` and ``list.index``, in C.
    """
    ranges = []
    for a, b in sorted(row_spans):
        if b <= a:
            continue
        if a < 0 or b > len(text):
            return None
        lo = 0 if a == 0 else _token_next_to(row, text, a, literals, True)
        hi = len(row) if b == len(text) else _token_next_to(row, text, b, literals, False)
        if lo is None or hi is None:
            return None
        if hi > lo:
            ranges.append((lo, hi))
    return ranges


def _token_next_to(row: Sequence[int], text: str, at: int, literals: Tuple[Tuple[str, int], ...], after: bool) -> Optional[int]:
    """The index of the first token after (``after``) or at the literal that ends (starts) at character ``at`` of
    ``text``; None when no literal does, or the row does not hold its id that often."""
    for content, index in literals:
        if (text.endswith(content, 0, at) if after else text.startswith(content, at)):
            break
    else:
        return None
    seen = text.count(content, 0, at) + (0 if after else 1)  # its occurrences up to and with this one
    position = -1
    try:
        for _ in range(seen):
            position = row.index(index, position + 1)
    except (ValueError, TypeError, AttributeError):
        return None
    return position + 1 if after else position


# id(list) -> (the list, it as a numpy array): the per-id tables of _RowCharacters and offsets (the list is kept, so
# its id is not reused while the entry lives; a few tables at most, one per vocabulary and added tokens)
_NUMPY_TABLES: "_Table" = _Table()


def _numpy_table(values: Sequence[int]) -> Any:
    import numpy as np

    entry = _NUMPY_TABLES.get(id(values))
    if entry is None or entry[0] is not values:
        while len(_NUMPY_TABLES) >= 8:
            _NUMPY_TABLES.pop(next(iter(_NUMPY_TABLES)), None)
        entry = (values, np.asarray(values, dtype=np.int64))
        _NUMPY_TABLES[id(values)] = entry
    return entry[1]


# Offsets rows share their (start, end) tuples: _pair_table()[start * _PAIR_WIDTHS + width] is (start, start + width)
# for start < _PAIR_STARTS and width < _PAIR_WIDTHS (about 5 MB, built on the first offsets call with numpy, then
# only read). A tuple per token was most of what offsets cost, as allocations and the collections they set off.
# A _Table, so it pickles empty (datasets fingerprints of a remote-code tokenizer stay the same after offsets).
_PAIR_STARTS, _PAIR_WIDTHS = 4096, 16
_PAIR_TABLE: "_Table" = _Table()


def _pair_table() -> Any:
    """The shared ``(start, end)`` tuples, as a numpy object array (see ``_PAIR_STARTS``)."""
    table = _PAIR_TABLE.get("pairs")
    if table is not None:
        return table
    import numpy as np

    ints = list(range(_PAIR_STARTS + _PAIR_WIDTHS))
    table = np.empty(_PAIR_STARTS * _PAIR_WIDTHS, dtype=object)
    for start in range(_PAIR_STARTS):
        first = start * _PAIR_WIDTHS
        for width in range(_PAIR_WIDTHS):
            table[first + width] = (ints[start], ints[start + width])
    return _PAIR_TABLE.setdefault("pairs", table)  # two threads may both build it: either table is right


def _offset_pairs(starts: Any, ends: Any) -> Any:
    """``(start, end)`` tuples for numpy int arrays ``starts``/``ends``, as an object array: shared tuples from
    ``_pair_table()`` where they fit, fresh ones elsewhere."""
    import numpy as np

    widths = ends - starts
    # as unsigned, a negative start or width is too large: one comparison each
    fits = starts.view(np.uint64) < _PAIR_STARTS
    fits &= widths.view(np.uint64) < _PAIR_WIDTHS
    keys = starts * _PAIR_WIDTHS
    keys += widths
    outside = np.flatnonzero(~fits) if not fits.all() else keys[:0]
    if outside.size:
        keys[outside] = 0
    pairs = _pair_table()[keys]
    if outside.size:
        for i, start, end in zip(outside.tolist(), starts[outside].tolist(), ends[outside].tolist()):
            pairs[i] = (start, end)
    return pairs


def _offset_arrays(
    tables: Optional[Tuple[List[int], List[int], frozenset]], rows: List[List[int]]
) -> Optional[Tuple[Any, Any, Any, List[int]]]:
    """Each token's ``(start, end)`` characters in its row's text, for the ids of whole texts (no added prefix):
    ``(flat, starts, ends, bounds)``, the ids, starts and ends of all rows at once as numpy int64 arrays, and
    where each row starts in them.

    A running sum of the characters each token starts, less each row's own start, gives the ends; the starts
    are the previous ends, one character back for a token that begins inside a character. None without
    the per-id ``tables`` or numpy (numpy comes with transformers)."""
    try:
        import numpy as np
    except ImportError:
        return None
    if tables is None:
        return None
    starts_chars, begins_inside, _ = tables
    flat, bounds = _flat_ids(rows)
    ends = np.cumsum(_numpy_table(starts_chars)[flat])
    firsts = np.asarray(bounds[:-1], dtype=np.int64)
    lengths = np.diff(np.asarray(bounds, dtype=np.int64))
    before = np.zeros(len(rows), dtype=np.int64)  # characters of the rows before each row
    later = firsts > 0
    before[later] = ends[firsts[later] - 1]
    ends -= np.repeat(before, lengths)
    starts = np.empty_like(ends)
    if ends.size:
        starts[1:] = ends[:-1]
        starts[firsts[lengths > 0]] = 0
        starts -= _numpy_table(begins_inside)[flat]
    return flat, starts, ends, bounds


def _offset_lists(arrays: Tuple[Any, Any, Any, List[int]]) -> List[List[Tuple[int, int]]]:
    """Each row's offsets of ``_offset_arrays`` as a list of ``(start, end)`` tuples, shared ones
    (``_pair_table``) where they fit."""
    _, starts, ends, bounds = arrays
    pairs = _offset_pairs(starts, ends)
    return [pairs[start:stop].tolist() for start, stop in zip(bounds, bounds[1:])]


class _OffsetRows:
    """The offsets of a fast-path call (``_offset_arrays`` of its texts' whole ids), kept as arrays until the
    rows' form is known: lists of ``(start, end)`` tuples (``body_field``, padded by ``_glm4_row_lists``) or
    one ``(rows, width, 2)`` array (``placement`` then ``padded_array``, for ``return_tensors``: no tuple is
    made; the rows' ids then come from the same arrays, ``token_ids``).

    Each row is its ids' offsets cut like the ids (``kept``: ``(starts, stops)`` of the ids each body keeps):
    ``n_prefix`` tokens under the prefix first, ``(0, 0)`` for an added prefix and the text's own offsets for
    a ``literal[i]`` one, then the body's."""

    def __init__(
        self, literal: List[bool], n_prefix: int, kept: Tuple[List[int], List[int]],
        arrays: Optional[Tuple[Any, Any, Any, List[int]]] = None, lists: Optional[List[List[Tuple[int, int]]]] = None,
    ) -> None:  # fmt: skip
        self.arrays, self.lists = arrays, lists  # one of them: without numpy or tables, the rows' own lists
        self.literal, self.n_prefix, self.kept = literal, n_prefix, kept

    def body_field(self) -> Tuple[Any, ...]:
        """``(bodies' offsets, (0, 0), heads)`` for ``_padded_body_field``: lists of shared tuples."""
        n_prefix = self.n_prefix
        offsets = self.lists if self.lists is not None else _offset_lists(self.arrays)
        heads = [offs[:n_prefix] if lit else None for offs, lit in zip(offsets, self.literal)]
        for offs, start, stop in zip(offsets, *self.kept):  # cut like the ids, in place (this call's lists)
            if stop < len(offs):
                del offs[stop:]
            if start:
                del offs[:start]
        return offsets, (0, 0), heads

    def placement(self, lengths: List[int], width: int, left: bool) -> Optional[Tuple[Any, Any, Tuple[int, int]]]:
        """``(source, target, shape)`` of every real token of the rows (``lengths[i]`` each, prefix included), in
        order: where its id and offsets are in the whole texts' arrays extended by the added prefix (the j-th
        token under an added prefix is at ``len(flat) + j``), where it goes in a flat ``rows * width`` batch
        padded on the ``left`` or right, and that batch's shape. None without the arrays, or with no tokens at
        all (then transformers' conversion of the lists decides the shape)."""
        if self.arrays is None or not any(lengths):
            return None
        import numpy as np

        flat, _, _, bounds = self.arrays
        n_prefix = self.n_prefix
        firsts = np.asarray(bounds[:-1], dtype=np.int64)
        body_starts = np.asarray(self.kept[0], dtype=np.int64)
        counts = np.asarray(lengths, dtype=np.int64)
        j = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        source = j + np.repeat(firsts + body_starts - n_prefix, counts)
        if n_prefix:
            under = np.flatnonzero(j < n_prefix)
            own = np.repeat(np.asarray(self.literal, dtype=bool), counts)[under]
            source[under] = np.where(own, np.repeat(firsts, counts)[under], flat.size) + j[under]
        rows = np.arange(len(lengths), dtype=np.int64) * width + (width - counts if left else 0)
        return source, j + np.repeat(rows, counts), (len(lengths), width)

    def token_ids(self, head: List[int], placement: Tuple[Any, Any, Tuple[int, int]]) -> Any:
        """The rows' real ids in order (``head`` under an added prefix), int64, from the arrays the offsets came
        from: what ``ids[real]`` of ``_glm4_row_arrays`` takes."""
        import numpy as np

        return np.concatenate([self.arrays[0], np.asarray(head, dtype=np.int64)])[placement[0]]

    def padded_array(self, placement: Tuple[Any, Any, Tuple[int, int]]) -> Any:
        """The offsets as one int64 array of shape ``(rows, width, 2)``, ``(0, 0)`` on pads and under an added
        prefix."""
        import numpy as np

        source, target, shape = placement
        _, starts, ends, _ = self.arrays
        out = np.zeros((shape[0] * shape[1], 2), dtype=np.int64)
        padding = np.zeros(self.n_prefix, dtype=np.int64)  # an added prefix's (0, 0)
        for column, values in ((0, starts), (1, ends)):  # one column at a time: 1-d gathers, about twice as fast
            column_view = out[:, column]
            column_view[target] = np.concatenate([values, padding])[source]
        return out.reshape(*shape, 2)


def _control_pattern(tokens: Iterable[str]) -> "regex.Pattern[str]":
    longest_first = sorted(set(tokens), key=len, reverse=True)
    return regex.compile("|".join(map(regex.escape, longest_first)) or "(?!)")


def _mark_control_tokens(obj: Any, pattern: "regex.Pattern[str]") -> Any:
    """Wrap each control-token literal in user strings (recursively; dict keys excepted) in the markers.

    Markers already in a string are dropped first, so a user cannot forge a marked token.
    """
    if isinstance(obj, str):
        obj = obj.replace(_CONTROL_START, "").replace(_CONTROL_END, "")
        return pattern.sub(lambda m: _CONTROL_START + m.group(0) + _CONTROL_END, obj)
    if isinstance(obj, dict):
        return {key: _mark_control_tokens(value, pattern) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_mark_control_tokens(value, pattern) for value in obj]
    return obj


# ---------------------------------------------------------------- assistant spans of any GLM-4 template
#: The tokens that open a turn in every GLM-4 chat format.
GLM4_ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|observation|>")
_ROLE_LITERAL = regex.compile("|".join(map(regex.escape, GLM4_ROLE_TOKENS)))
# Private-use stand-ins: for "<" and ">" of role-token literals in the caller's strings (same length, so
# positions carry over), and around the marker that takes an assistant reply's place.
_HIDE_OPEN, _HIDE_CLOSE = "\U000f0010", "\U000f0012"
_REPLY_MARK = "\U000f0013glm4-tokfix reply\U000f0014"
_SPAN_PRIVATE = ("\U000f0010", "\U000f0012", "\U000f0013", "\U000f0014")


def _hide_role_literals(obj: Any) -> Any:
    """``obj`` with each role-token literal in its strings (recursively; dict keys excepted) written with
    private-use characters for its ``<`` and ``>``: the same length, and no longer a role token."""
    if isinstance(obj, str):
        if "<|" not in obj:
            return obj
        return _ROLE_LITERAL.sub(lambda m: _HIDE_OPEN + m.group(0)[1:-1] + _HIDE_CLOSE, obj)
    if isinstance(obj, dict):
        return {key: _hide_role_literals(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_hide_role_literals(value) for value in obj]
    if isinstance(obj, tuple):
        return tuple(_hide_role_literals(value) for value in obj)
    return obj


def _has_role_literal(obj: Any) -> bool:
    if isinstance(obj, str):
        return "<|" in obj and _ROLE_LITERAL.search(obj) is not None
    if isinstance(obj, dict):
        return any(_has_role_literal(value) for value in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_role_literal(value) for value in obj)
    return False


def _empty_content(content: Any) -> bool:
    return content is None or (isinstance(content, (str, list, tuple)) and not content)


def glm4_reply_spans(
    render: Callable[[List[Any], Any, Any, Dict[str, Any]], List[str]],
    chats: List[Any],
    rendered: List[str],
    tools: Any = None,
    documents: Any = None,
    template_kwargs: Optional[Dict[str, Any]] = None,
) -> List[List[Tuple[int, int]]]:
    """The character span of each assistant turn in ``rendered`` (the real rendering of each chat), for
    a GLM-4 chat template without ``{% generation %}`` markers; found and verified, never guessed.

    ``render(chats, tools, documents, template_kwargs)`` renders chats with the template (same options
    as ``rendered``). A turn's span runs from just after the ``<|assistant|>`` the template writes for
    an assistant message to the next role token the template writes (or the end): for GLM-4's
    templates, what the marked copies in ``glm4_tokfix.chat_templates`` mark.

    How: role-token literals in the caller's strings are first written with private-use characters
    (same length), and the rendering must then differ from the real one in exactly those characters,
    so every role token left is the template's own. Then for each assistant message the chat is
    rendered with that message's content replaced by a unique marker: the marker must appear exactly
    once, and the rendering before and after it must be exactly the real rendering's start and end --
    so the part in between is what the template wrote for that content, whatever it does to it
    (``strip()``, ``split('</think>')[-1]``, ...). An empty content that cannot be located this way
    must write nothing (the chat without the message renders alike) and gets no span. Anything else
    is a ``ValueError`` saying which message and why.
    """
    template_kwargs = dict(template_kwargs or {})
    for n, (chat, text) in enumerate(zip(chats, rendered)):
        has_reply = any(isinstance(m, Mapping) and m.get("role") == "assistant" for m in chat)
        for ch in _SPAN_PRIVATE if has_reply else ():
            if ch in text:
                raise _span_error(
                    f"chat {n}: assistant masks for a template without {{% generation %}} markers mark the chat with "
                    f"private-use characters (U+{ord(ch):X}), and this chat already holds one"
                )
    hide = _has_role_literal([chats, tools, documents, template_kwargs])
    if hide:
        chats_h = [_hide_role_literals(chat) for chat in chats]
        tools_h, documents_h = _hide_role_literals(tools), _hide_role_literals(documents)
        kwargs_h = _hide_role_literals(template_kwargs)
    else:
        chats_h, tools_h, documents_h, kwargs_h = chats, tools, documents, template_kwargs

    variants: List[Any] = []  # every chat with one assistant content replaced by the marker
    where: List[List[Tuple[int, int]]] = []  # per chat: (message index, variant index)
    for chat in chats_h:
        found = []
        for i, message in enumerate(chat):
            if isinstance(message, Mapping) and message.get("role") == "assistant":
                variant = list(chat)
                variant[i] = {**message, "content": _REPLY_MARK}
                found.append((i, len(variants)))
                variants.append(variant)
        where.append(found)
    texts_h = render(chats_h, tools_h, documents_h, kwargs_h) if hide else rendered
    texts_v = render(variants, tools_h, documents_h, kwargs_h) if variants else []

    all_spans: List[List[Tuple[int, int]]] = []
    for n, (chat, text) in enumerate(zip(chats_h, texts_h)):
        if hide and text.replace(_HIDE_OPEN, "<").replace(_HIDE_CLOSE, ">") != rendered[n]:
            raise _span_error(
                f"chat {n}: the template renders role-token literals (<|user|>, ...) in the chat's text differently "
                "from other text, so the turns it writes cannot be told from the text"
            )
        spans: List[Tuple[int, int]] = []
        for i, k in where[n]:
            located = _locate_content(text, texts_v[k])
            if located is None:
                if _empty_content(chat[i].get("content")):
                    if render([chat[:i] + chat[i + 1 :]], tools_h, documents_h, kwargs_h)[0] == text:
                        continue  # the template writes nothing for this message: nothing to supervise
                    why = "its content is empty, and the template writes it in a way that cannot be located"
                else:
                    why = (
                        "the template's output around its content depends on the content (it moves part of it, "
                        "e.g. a <think> block, elsewhere; drops whitespace-only content; or writes it more than once "
                        "or not at all)"
                    )
                raise _span_error(f"chat {n}, message {i} (assistant): cannot locate the reply in the rendering: {why}")
            a, b = located
            start = text.rfind("<|assistant|>", 0, a)
            if start < 0 or _ROLE_LITERAL.search(text, start + len("<|assistant|>"), a):
                raise _span_error(
                    f"chat {n}, message {i} (assistant): the template writes its content without an <|assistant|> "
                    "token before it, so the turn cannot be located"
                )
            start += len("<|assistant|>")
            following = _ROLE_LITERAL.search(text, b)
            end = following.start() if following is not None else len(text)
            if spans and start < spans[-1][1]:
                raise _span_error(f"chat {n}, message {i} (assistant): its turn overlaps the previous one")
            spans.append((start, end))
        all_spans.append(spans)
    return all_spans


def _span_error(message: str) -> ValueError:
    return ValueError(
        f"return_assistant_tokens_mask=True: {message}. Pass chat_template= a template with "
        "{% generation %}...{% endgeneration %} around each assistant reply"
    )


def _locate_content(text: str, marked: str) -> Optional[Tuple[int, int]]:
    """(start, end) of what the template wrote for the marked content, or None when it cannot be proved."""
    at = marked.find(_REPLY_MARK)
    if at < 0 or marked.find(_REPLY_MARK, at + 1) >= 0:
        return None
    head, tail = marked[:at], marked[at + len(_REPLY_MARK) :]
    if len(head) + len(tail) > len(text) or not text.startswith(head) or not text.endswith(tail):
        return None
    return len(head), len(text) - len(tail)


def _glm4_row(text: Any, pair: Any) -> Tuple[Any, Any]:
    """One batch item as (text, text_pair): a 2-tuple/list of texts is a pair, as in transformers."""
    if pair is None and isinstance(text, (list, tuple)) and len(text) == 2 and all(isinstance(t, str) for t in text):
        return text[0], text[1]
    return text, pair


def _glm4_pair_rows(rows: Any) -> Optional[Tuple[List[str], List[str]]]:
    """A batch whose every row is a 2-tuple/list of texts, as (first texts, second texts); None otherwise."""
    if not all(isinstance(row, (list, tuple)) and len(row) == 2 and all(isinstance(t, str) for t in row) for row in rows):
        return None
    return [row[0] for row in rows], [row[1] for row in rows]


def _glm4_word_rows(text: Any, batch_only: bool = False) -> Optional[Tuple[List[List[str]], bool]]:
    """``is_split_into_words`` input as (rows of words, batched), when every row is a non-empty list of str
    words (a tuple row may be a pair in transformers 5: the generic path decides). None otherwise."""
    if not isinstance(text, (list, tuple)) or not text:
        return None
    if all(isinstance(word, str) for word in text):
        return None if batch_only else ([list(text)], False)
    if all(type(row) is list and row and all(isinstance(word, str) for word in row) for row in text):
        return [list(row) for row in text], True
    return None


@functools.lru_cache(maxsize=None)
def _transformers_sanitizes() -> bool:
    """True when transformers' own apply_chat_template has sanitize_control_tokens (5.x)."""
    import inspect

    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    return "sanitize_control_tokens" in inspect.signature(PreTrainedTokenizerBase.apply_chat_template).parameters


@functools.lru_cache(maxsize=None)
def _return_dict_default() -> bool:
    """transformers' default for apply_chat_template(return_dict=...): False on 4.x, True on 5.x."""
    import inspect

    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    return inspect.signature(PreTrainedTokenizerBase.apply_chat_template).parameters["return_dict"].default


def _max_length_too_small(n_special: int, remove: int, n_text: int) -> ValueError:
    names = "[gMASK]<sop>" if n_special == 2 else "[gMASK]<sop> and <|endoftext|> (a pair)"
    return ValueError(
        f"max_length is too small: it must leave room for the {n_special} special tokens {names} "
        f"(asked to remove {remove} tokens from a text of {n_text})"
    )


def _padded_body_field(
    values: List[Sequence[Any]],
    fill: Any,
    n_prefix: int,
    gaps: List[int],
    left: bool,
    heads: Optional[List[Optional[Sequence[Any]]]] = None,
) -> List[List[Any]]:
    """Per-token values of each row's body, with ``fill`` on the ``gaps[i]`` pads and under the prefix (or
    ``heads[i]`` there, when given and not None: e.g. a literal prefix's own offsets).

    The rows of ``values`` are this call's own (made for it): they are extended in place, so a long row's
    values are moved once, not copied item by item."""
    rows = []
    for i, (row, d) in enumerate(zip(values, gaps)):
        head = heads[i] if heads is not None and heads[i] is not None else [fill] * n_prefix
        if left:
            lead = [fill] * d if d else []
            lead += head
            row[:0] = lead
        else:
            row[:0] = head
            if d:
                row += [fill] * d
        rows.append(row)
    return rows


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


def _count_real(mask: Sequence[Any]) -> List[int]:
    """``position_ids`` for an attention mask: 0, 1, 2, ... over its nonzero entries, 0 on the others."""
    positions, count = [], 0
    for bit in mask:
        if bit:
            positions.append(count)
            count += 1
        else:
            positions.append(0)
    return positions


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


#: the per-token keys ``_pad`` pads as given (with their own fill); attention_mask and position_ids it computes
_PADDED_AS_GIVEN = ("token_type_ids", "special_tokens_mask", "offset_mapping")


class GLM4PaddingMixin:
    """GLM-4's padding rules: pads on the requested side, ``position_ids`` that count the real tokens.

    Uses only transformers' generic tokenizer attributes (``model_input_names``,
    ``pad_token_id``, ``pad_token_type_id``, ``padding_side``), so it fits any
    GLM-4 tokenizer class, slow or fast: put it before the tokenizer class in the
    bases. ``_pad`` states the rules for one encoding.
    """

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
        for key in _PADDED_AS_GIVEN:
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
        if "offset_mapping" in encoded_inputs:  # pads map to no characters
            encoded_inputs["offset_mapping"] = padded(encoded_inputs["offset_mapping"], (0, 0))
        if return_attention_mask:
            encoded_inputs["attention_mask"] = full_mask
        else:
            encoded_inputs.pop("attention_mask", None)
        if "position_ids" in self.model_input_names:
            # the common case: every given token is real
            encoded_inputs["position_ids"] = padded(range(n), 0) if 0 not in mask else _count_real(full_mask)
        return encoded_inputs

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
        return type(self)._pad is GLM4PaddingMixin._pad

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
        if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], Mapping):
            # a list of encodings (a collator's features): one list of rows per key of the first
            encoded = {key: [example[key] for example in encoded_inputs] for key in encoded_inputs[0].keys()}
        elif isinstance(encoded_inputs, (dict, BatchEncoding)):
            encoded = copy.copy(encoded_inputs)  # the caller's mapping is never written to
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
            return encoded
        first = required[0]
        if isinstance(first, (list, tuple)):  # the first token of the first row that has one
            first = next((row[0] for row in required if len(row)), first)
        if not isinstance(first, (int, list, tuple)):
            from transformers.utils import is_torch_tensor, to_py_obj

            import numpy as np

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
            row = GLM4PaddingMixin._pad(
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
        with_positions = "position_ids" in self.model_input_names
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

        # the keys _pad pads as given, with their pad values; attention_mask and position_ids it computes;
        # the other keys pass through
        fills: Dict[str, Any] = {main: self.pad_token_id}
        for key, fill in (("token_type_ids", self.pad_token_type_id), ("special_tokens_mask", 1), ("offset_mapping", (0, 0))):
            if key in batch:
                fills[key] = fill
        keys = [key for key in batch if key != "attention_mask" or return_attention_mask]
        if return_attention_mask and "attention_mask" not in batch:
            keys.append("attention_mask")
        if with_positions and "position_ids" not in batch:
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


class GLM4BatchEncoder:
    """The fast path: plain texts encoded by tiktoken in one call each, rows built in one pass.

    Same output as transformers' generic path through ``GLM4FixMixin`` (the
    specification; ``tests/test_fast_path.py`` compares the two). Rows are lists
    (``_glm4_row_lists``) or, for ``return_tensors="pt"``/``"np"``, arrays built
    directly (``_glm4_row_arrays``). Used through ``GLM4FixMixin``, over
    ``ChatGLM4Tokenizer``'s vocabulary; on any other class (a patched upstream
    tokenizer), or under someone else's ``_pad``, it steps aside.
    """

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
    #: switch transformers' fast tokenizers read -- or when the backend holds the GIL (fastokens: threads
    #: only slow it down). 1 encodes serially; N > 1 uses up to N threads with any backend. Rows are
    #: identical either way.
    glm4_encode_threads: Optional[int] = None
    #: A batch is split across threads only from this many characters on (a thread costs ~0.1 ms).
    glm4_parallel_min_chars = 65_536
    #: The encoder backend of the fast path: "tiktoken" or "fastokens" (see the module's "encoder
    #: backends"). None (the default) reads $GLM4_TOKFIX_ENCODER, and when that is unset too takes
    #: fastokens when it is installed, else tiktoken. ``glm4_encoder_name()`` says which one runs.
    glm4_encoder: Optional[str] = None

    def _encode_plus(self, text: Any = None, text_pair: Any = None, **kwargs: Any):
        # transformers 5: every __call__/encode goes through here (a batch too); 4.x: single texts only.
        if text_pair is not None and _OFFSET_ROWS.get() is None and self._glm4_fast_pairs_apply(kwargs):
            if isinstance(text, str) and isinstance(text_pair, str):
                return self._glm4_fast_encode([text], batched=False, pairs=[text_pair], **kwargs)
            if (
                isinstance(text, (list, tuple)) and isinstance(text_pair, (list, tuple))
                and text and len(text) == len(text_pair)
                and all(isinstance(t, str) for t in text) and all(isinstance(t, str) for t in text_pair)
            ):  # fmt: skip
                return self._glm4_fast_encode(list(text), batched=True, pairs=list(text_pair), **kwargs)
        if text_pair is None and _OFFSET_ROWS.get() is None and self._glm4_fast_applies(kwargs):
            if _ONE_ENCODE_PLUS and isinstance(text, (list, tuple)) and text and self._glm4_fast_pairs_apply(kwargs):
                rows = _glm4_pair_rows(text)
                if rows is not None:
                    return self._glm4_fast_encode(rows[0], batched=True, pairs=rows[1], **kwargs)
            if kwargs.get("is_split_into_words"):
                rows = _glm4_word_rows(text)
                if rows is not None and not kwargs.get("return_offsets_mapping"):
                    return self._glm4_fast_encode(rows[0], batched=rows[1], words=True, **kwargs)
            elif isinstance(text, str):
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
                tensors = kwargs.pop("return_tensors")
                encoded = self._encode_plus(text=text, text_pair=text_pair, return_tensors=None, **kwargs)
                return BatchEncoding(dict(encoded), tensor_type=tensors)
        if kwargs.get("return_offsets_mapping"):  # the generic path, with offsets of our own
            if isinstance(text, (list, tuple)) and text and not isinstance(text[0], int):  # a batch (5.x)
                if text_pair is not None and (not isinstance(text_pair, (list, tuple)) or len(text_pair) != len(text)):
                    raise ValueError("If `text` is a batch, `text_pair` must also be a batch of the same length.")
                rows = [_glm4_row(t, p) for t, p in zip(text, text_pair or [None] * len(text))]
            else:
                rows = [(text, text_pair)]
            encode = functools.partial(super()._encode_plus, text=text, text_pair=text_pair)
            return self._glm4_generic_offsets(encode, rows, kwargs)
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

    _GLM4_ENCODE_FAST_KWARGS = _NameSet({"split_special_tokens", "verbose", "return_tensors", "stride"})

    def _batch_encode_plus(self, batch_text_or_text_pairs: Any, **kwargs: Any):
        # transformers 4.x batch path (5.x has no _batch_encode_plus and never calls this).
        texts = batch_text_or_text_pairs
        if isinstance(texts, (list, tuple)) and texts and self._glm4_fast_pairs_apply(kwargs):
            rows = _glm4_pair_rows(texts)
            if rows is not None:
                return self._glm4_fast_encode(rows[0], batched=True, pairs=rows[1], **kwargs)
        if kwargs.get("is_split_into_words") and not kwargs.get("return_offsets_mapping"):
            rows = _glm4_word_rows(texts, batch_only=True)
            if rows is not None and self._glm4_fast_applies(kwargs):
                return self._glm4_fast_encode(rows[0], batched=True, words=True, **kwargs)
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
            if kwargs.get("return_offsets_mapping"):  # the generic path, with offsets of our own
                rows = [_glm4_row(row, None) for row in texts]
                encode = functools.partial(super()._batch_encode_plus, batch_text_or_text_pairs)
                return self._glm4_generic_offsets(encode, rows, kwargs)
            return super()._batch_encode_plus(batch_text_or_text_pairs, **kwargs)
        finally:
            _SPLIT_SPECIAL.reset(token)

    _GLM4_FAST_KWARGS = _NameSet(
        {
            "add_special_tokens", "padding_strategy", "truncation_strategy", "max_length", "stride",
            "is_split_into_words", "pad_to_multiple_of", "padding_side", "return_tensors",
            "return_token_type_ids", "return_attention_mask", "return_overflowing_tokens",
            "return_special_tokens_mask", "return_offsets_mapping", "return_length", "verbose",
            "split_special_tokens",
        }
    )  # fmt: skip

    def _glm4_fast_pairs_apply(self, kwargs: Dict[str, Any]) -> bool:
        """Pairs take the fast path with special tokens added, no truncation, no special-tokens mask or offsets."""
        return (
            kwargs.get("add_special_tokens", True)
            and not kwargs.get("is_split_into_words")
            and not kwargs.get("return_special_tokens_mask")
            and not kwargs.get("return_offsets_mapping")
            and TruncationStrategy(kwargs.get("truncation_strategy", "do_not_truncate")) == TruncationStrategy.DO_NOT_TRUNCATE
            and self._glm4_fast_applies(kwargs)
        )

    def _glm4_fast_applies(self, kwargs: Dict[str, Any]) -> bool:
        """The fast path covers plain texts with every option of __call__ except overflow and pairs."""
        if self._glm4_text_encoder(kwargs.get("split_special_tokens")) is None:
            return False  # switched off, a custom _tokenize, do_lower_case, or added tokens tiktoken can't split
        if not self._GLM4_FAST_KWARGS.issuperset(kwargs) or not self._glm4_pads_by_these_rules():
            return False  # an option it does not cover, or a _pad of someone else's (transformers calls it)
        if kwargs.get("return_overflowing_tokens"):
            return False
        if TruncationStrategy(kwargs.get("truncation_strategy", "do_not_truncate")) == TruncationStrategy.ONLY_SECOND:
            return False
        # transformers 4.x refuses this combination; let it say so
        return not (kwargs.get("return_token_type_ids") and not kwargs.get("add_special_tokens", True))

    def _glm4_added_literals(self) -> Optional[Dict[str, int]]:
        """content -> id of the added tokens, when a backend can split them out exactly as transformers does.

        Cached per set of added tokens. None when an added token strips whitespace, is single-word, or
        overlaps another one (then transformers' own splitting is used).
        """
        added = self._added_tokens_decoder
        cached = _ADDED_LITERALS.get(self)
        key = (id(added), len(added))  # add_tokens() grows the dict; a new dict gets a new id
        if cached is not None and cached[0] == key:
            return cached[2]
        signature = tuple(sorted((i, t.content) for i, t in added.items()))
        if cached is not None and cached[1] == signature:
            _ADDED_LITERALS[self] = (key, signature, cached[2])
            return cached[2]
        literals: Optional[Dict[str, int]] = None
        contents = [content for _, content in signature]
        plain = all(not (t.lstrip or t.rstrip or t.single_word) for t in added.values())
        if plain and not _overlapping(contents) and len(set(contents)) == len(contents) and all(contents):
            literals = {content: i for i, content in signature}
        _ADDED_LITERALS[self] = (key, signature, literals)
        return literals

    def _glm4_special_encoding(self) -> Optional[tiktoken.Encoding]:
        """A tiktoken encoding that splits out this tokenizer's added tokens exactly as transformers does.

        Built once per set of added tokens. None when ``_glm4_added_literals`` is None or tiktoken
        refuses the vocabulary (then transformers' own splitting is used).
        """
        literals = self._glm4_added_literals()
        cached = _SPECIAL_ENCODINGS.get(self)
        if cached is not None and cached[0] is literals:
            return cached[1]
        encoding: Optional[tiktoken.Encoding] = None
        if literals is not None:
            try:
                encoding = tiktoken.Encoding(
                    name="glm4-with-added-tokens",
                    pat_str=self.tokenizer._pat_str,
                    mergeable_ranks=self.mergeable_ranks,
                    special_tokens=literals,
                )
            except Exception:  # tiktoken refuses some vocabularies (e.g. ids clashing): use the generic path
                encoding = None
        _SPECIAL_ENCODINGS[self] = (literals, encoding)
        return encoding

    def glm4_encoder_name(self) -> str:
        """The encoder backend this tokenizer's fast path runs on: ``"tiktoken"`` or ``"fastokens"``.

        ``glm4_encoder`` when set, else ``$GLM4_TOKFIX_ENCODER``, else fastokens when installed, else
        tiktoken. An unknown name is a ValueError; fastokens asked for but not installed an ImportError.
        """
        return resolve_encoder_name(self.glm4_encoder)

    def _glm4_backend(self, split_special_tokens: bool = False) -> Optional[GLM4EncoderBackend]:
        """The encoder backend for this tokenizer's vocabulary and added tokens (None: the fast path does
        not apply). Built once per vocabulary, backend and set of added tokens, and kept next to the
        tiktoken encoding, outside the tokenizer (pickles stay small)."""
        name = self.glm4_encoder_name()
        literals = None if split_special_tokens else self._glm4_added_literals()
        if literals is None and not split_special_tokens:
            return None
        encoding = self.tokenizer
        per_vocab = _BACKENDS.get(encoding)
        if per_vocab is None:
            per_vocab = _BACKENDS.setdefault(encoding, {})
        signature = tuple(sorted(literals.items())) if literals else ()
        backend = per_vocab.get((name, signature))
        if backend is not None:
            return backend
        if name == "tiktoken":
            special = self._glm4_special_encoding() if literals else None
            if literals and special is None:
                return None
            backend = TiktokenBackend.from_encodings(encoding, special)
        else:
            base = per_vocab.get((name, ()))
            if base is None:
                base = per_vocab[(name, ())] = FastokensBackend(self.mergeable_ranks, encoding._pat_str, {})
            backend = base.with_added_tokens(literals or {})
        per_vocab[(name, signature)] = backend
        return backend

    def _glm4_text_encoder(self, split_special_tokens: Optional[bool]) -> Optional[Callable[[str], List[int]]]:
        """text -> ids without special tokens added: literals of added tokens become their ids unless split.

        None when the fast path does not apply to this tokenizer (switched off, a custom ``_tokenize``,
        ``do_lower_case``, or added tokens the backend cannot split like transformers does).
        """
        if not self.glm4_fast_path or self.do_lower_case or type(self)._tokenize is not _ChatGLM4Vocab._tokenize:
            return None
        if split_special_tokens is None:
            split_special_tokens = self.split_special_tokens
        backend = self._glm4_backend(bool(split_special_tokens))
        return None if backend is None else backend.text_encoder(bool(split_special_tokens))

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
        """``[encode(t) for t in texts]``, split across threads for a large batch (see glm4_encode_threads;
        by default only with a backend whose engine releases the GIL)."""
        if self.glm4_encode_threads is None and not getattr(encode, "threads_help", True):
            return [encode(text) for text in texts]
        return _encode_in_threads(texts, encode, self._glm4_thread_count(texts))

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
        return_offsets_mapping: bool = False,
        verbose: bool = True,
        split_special_tokens: Optional[bool] = None,
        words: bool = False,
        pairs: Optional[List[str]] = None,
        **_ignored: Any,  # stride, is_split_into_words, return_overflowing_tokens=False, ...
    ) -> BatchEncoding:
        """``tok(texts, ...)`` for plain texts: what transformers' generic path returns, built directly.

        ``words=True``: each of ``texts`` is a list of words (``is_split_into_words=True``), encoded word by
        word and joined, as transformers' generic path does. ``pairs``: the second text of each row
        (``[gMASK]<sop> A B <|endoftext|>``; special tokens added, no truncation, no special-tokens mask or
        offsets -- ``_glm4_fast_pairs_apply``).
        """
        padding_strategy = PaddingStrategy(padding_strategy)
        truncate = TruncationStrategy(truncation_strategy) != TruncationStrategy.DO_NOT_TRUNCATE and bool(max_length)
        encode = self._glm4_text_encoder(split_special_tokens)
        prefix = self._glm4_call_prefix(add_special_tokens)
        head = prefix if prefix is not None else []
        if truncate and self.truncation_side not in ("left", "right"):
            raise ValueError(f"truncation_side must be 'left' or 'right', got {self.truncation_side!r}")

        if words:
            flat = self._glm4_encode_texts([word for row in texts for word in row], encode)
            encoded, at = [], 0
            for row in texts:
                encoded.append(list(chain.from_iterable(flat[at : at + len(row)])))
                at += len(row)
            del flat
        else:
            encoded = self._glm4_encode_texts(texts, encode)
        offset_arrays = offset_lists = literal = None
        if return_offsets_mapping:  # from the full ids, before the bodies are cut out of them in place
            literal = [prefix is not None and ids[: len(head)] == head for ids in encoded]
            offset_arrays = _offset_arrays(self._glm4_offset_tables(), encoded) if encoded else None
            if offset_arrays is None:  # no numpy or tables: each row's own offsets
                offset_lists = [self._glm4_offsets(ids) for ids in encoded]
        bodies, kept = self._glm4_bodies(encoded, prefix, max_length if truncate else None)
        del encoded
        if pairs is not None:  # B and the closing <|endoftext|> follow A in the body
            suffix = [self._glm4_token_id(PAIR_SUFFIX_TOKEN)]
            for body, second in zip(bodies, self._glm4_encode_texts(pairs, encode)):
                body += second
                body += suffix
        lengths = [len(b) + len(head) for b in bodies]
        for n in lengths:  # transformers' "longer than model_max_length" warning looks at the length only
            self._eventual_warn_about_too_long_sequence(range(n), max_length, verbose)
        # Optional per-row fields: name -> (each row's values, cut like its ids with ``kept``; the value
        # on pads and under an added prefix[; per row, the values under the prefix instead, or None]), or an
        # _OffsetRows that gives that tuple for lists (body_field) and builds its array itself (padded_array).
        body_fields: Dict[str, Any] = {}
        if literal is not None:  # an added prefix and pads map to no characters; a literal prefix to its own
            body_fields["offset_mapping"] = _OffsetRows(literal, len(head), kept, offset_arrays, offset_lists)

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
        gaps = [target - n if target is not None and target > n else 0 for n in lengths]
        if self.pad_token_id is None and any(gaps):
            raise ValueError("cannot pad: the tokenizer has no pad_token (GLM-4 uses <|endoftext|>)")

        width = max(max(lengths), target or 0)
        fields = dict(
            with_types=return_token_type_ids,
            with_special=return_special_tokens_mask,
            with_mask=pad_phase and want_mask,
            with_positions=pad_phase and "position_ids" in self.model_input_names,
            body_fields=body_fields,
        )
        kind = _tensor_kind(return_tensors) if batched else None
        if kind is not None and all(n + d == width for n, d in zip(lengths, gaps)):
            rows = self._glm4_row_arrays(kind, bodies, head, lengths, width, left, **fields)
        else:  # lists; transformers' BatchEncoding turns them into tensors if asked (ragged rows: its error)
            rows = self._glm4_row_lists(bodies, head, lengths, gaps, left, **fields)

        data: Dict[str, Any] = {}
        for key in ("input_ids", "token_type_ids", "special_tokens_mask", *body_fields):
            if key in rows:
                data[key] = rows.pop(key)
        if return_length and batched:
            data["length"] = lengths
        data.update(rows)  # attention_mask, position_ids
        if empty_single and want_mask:
            data["attention_mask"] = [[]]
        if return_length and not batched:  # a single text's length counts its pads, as in transformers
            data["length"] = [lengths[0] + gaps[0]]

        if not batched:
            data = {key: value[0] for key, value in data.items()}
            return BatchEncoding(data, tensor_type=return_tensors, prepend_batch_axis=True)
        return BatchEncoding(data, tensor_type=return_tensors)

    def _glm4_call_prefix(self, add_special_tokens: bool) -> Optional[List[int]]:
        """The ids put in front of a text lacking them (None: nothing is added). A patched fast tokenizer that
        reuses this fast path gives its own post-processor's policy here."""
        return self.get_prefix_tokens() if add_special_tokens else None

    def _glm4_bodies(
        self, encoded: List[List[int]], prefix: Optional[List[int]], max_length: Optional[int]
    ) -> Tuple[List[List[int]], Tuple[List[int], List[int]]]:
        """Each text's ids without a leading prefix, truncated to leave ``max_length`` with the prefix.

        Returns the bodies (tiktoken's own lists, changed in place) and ``(starts, stops)``: per text, where
        the ids its body keeps start and stop (ints, not slices: one object less per row to collect).
        ``prefix`` None: no special tokens are added (nothing is taken off).
        """
        n_prefix = len(prefix) if prefix is not None else 0
        left_cut = self.truncation_side == "left"
        bodies: List[List[int]] = []
        starts: List[int] = []
        for ids in encoded:
            start = 0
            if prefix is not None and ids[:n_prefix] == prefix:
                del ids[:n_prefix]
                start = n_prefix
            remove = len(ids) + n_prefix - max_length if max_length is not None else 0
            if remove > 0:
                if remove > len(ids):
                    raise _max_length_too_small(n_prefix, remove, len(ids))
                if left_cut:
                    del ids[:remove]
                    start += remove
                else:
                    del ids[len(ids) - remove :]
            bodies.append(ids)
            starts.append(start)
        return bodies, (starts, [start + len(ids) for start, ids in zip(starts, bodies)])

    def _glm4_row_lists(
        self,
        bodies: List[List[int]],
        head: List[int],
        lengths: List[int],
        gaps: List[int],
        left: bool,
        with_types: bool,
        with_special: bool,
        with_mask: bool,
        with_positions: bool,
        body_fields: Dict[str, Any],
    ) -> Dict[str, List[List[Any]]]:
        """Rows as lists: ``head + body`` with ``gaps[i]`` pads on the ``left`` or right, and the fields asked for.

        Every row is cut from shared runs: about one copy per row and field, no per-token Python work. Each
        body becomes its row in place (tiktoken's fresh list is referenced nowhere else), and is let go of
        in ``bodies`` once its row is built.
        """
        n_prefix = len(head)
        gap = max(gaps)
        # zeros_ones[W-d : W+n] is d zeros then n ones; zeros_counting[W-d : W+n] is d zeros then 0..n-1;
        # ones_zeros[W-n : W+d] is n ones then d zeros (W = width >= n + d).
        width = max(n + d for n, d in zip(lengths, gaps))
        zeros, ones, counting = [0] * width, [1] * width, list(range(width))
        zeros_ones, zeros_counting, ones_zeros = zeros + ones, zeros + counting, ones + zeros
        pads = [self.pad_token_id] * gap
        pads_head = pads + head  # pads_head[gap - d : gap + n_prefix] is d pads then the prefix
        type_pads = [self.pad_token_type_id] * gap
        ids_rows: List[List[int]] = []
        masks, positions, type_ids, special = [], [], [], []
        for i, (n, d) in enumerate(zip(lengths, gaps)):
            body, bodies[i] = bodies[i], None
            if left:
                body[:0] = pads_head[gap - d :] if d else head
            else:
                body[:0] = head
                if d:
                    body += pads[:d]
            ids_rows.append(body)
            if with_types:
                type_ids.append(type_pads[:d] + zeros[:n] if left else zeros[:n] + type_pads[:d])
            if with_special:
                body_zeros = zeros[: n - n_prefix]
                special.append(ones[: d + n_prefix] + body_zeros if left else ones[:n_prefix] + body_zeros + ones[:d])
            if with_mask:
                masks.append(zeros_ones[width - d : width + n] if left else ones_zeros[width - n : width + d])
            if with_positions:
                if left:
                    positions.append(zeros_counting[width - d : width + n])
                else:
                    positions.append(counting[:n] + zeros[:d] if d else counting[:n])

        rows: Dict[str, List[List[Any]]] = {"input_ids": ids_rows}
        if with_types:
            rows["token_type_ids"] = type_ids
        if with_special:
            rows["special_tokens_mask"] = special
        for key, spec in body_fields.items():
            values, fill, *heads = spec.body_field() if isinstance(spec, _OffsetRows) else spec
            rows[key] = _padded_body_field(values, fill, n_prefix, gaps, left, *heads)
        if with_mask:
            rows["attention_mask"] = masks
        if with_positions:
            rows["position_ids"] = positions
        return rows

    def _glm4_row_arrays(
        self,
        kind: str,
        bodies: List[List[int]],
        head: List[int],
        lengths: List[int],
        width: int,
        left: bool,
        with_types: bool,
        with_special: bool,
        with_mask: bool,
        with_positions: bool,
        body_fields: Dict[str, Any],
    ) -> Dict[str, Any]:
        """The rows of ``_glm4_row_lists`` when every row is ``width`` long, as arrays of ``kind`` ('np'/'pt').

        The ids are copied once, from tiktoken's lists into one array; masks, positions and the other
        fields come from the row lengths. Same dtype and values as transformers' conversion of the lists.
        """
        import numpy as np

        dtype = _int_dtype(np, kind)
        real, index = _real_region(np, lengths, width, left)
        ids = np.full(real.shape, self.pad_token_id if self.pad_token_id is not None else 0, dtype=dtype)
        offsets = body_fields.get("offset_mapping")
        placement = offsets.placement(lengths, width, left) if isinstance(offsets, _OffsetRows) else None
        if placement is not None:  # the arrays the offsets came from hold the ids already
            ids[real] = offsets.token_ids(head, placement)
        else:
            flat = chain.from_iterable(part for body in bodies for part in (head, body))
            ids[real] = np.fromiter(flat, dtype=dtype, count=sum(lengths))
        bodies.clear()
        rows: Dict[str, Any] = {"input_ids": ids}
        if with_types:
            rows["token_type_ids"] = np.where(real, 0, self.pad_token_type_id).astype(dtype)
        if with_special:
            rows["special_tokens_mask"] = (~real | (index < len(head))).astype(dtype)
        for key, spec in body_fields.items():  # as transformers converts them (per-token values)
            if isinstance(spec, _OffsetRows):
                if placement is not None:
                    rows[key] = spec.padded_array(placement)
                    continue
                spec = spec.body_field()
            values, fill, *heads = spec
            gaps = [width - n for n in lengths]
            padded = np.asarray(_padded_body_field(values, fill, len(head), gaps, left, *heads))
            if not padded.size:  # no tokens at all: ints all the same, as transformers' own rows give
                padded = padded.astype(np.int64)
            rows[key] = padded
        if with_mask:
            rows["attention_mask"] = real.astype(dtype)
        if with_positions:
            rows["position_ids"] = np.where(real, index, 0).astype(dtype)
        return _as_framework(rows, kind)


class GLM4ChatMixin:
    """Chat templates for training: assistant-token masks and control-token sanitizing.

    Tokenizer-agnostic: it needs ``self(..., return_offsets_mapping=True)``, ``encode``, ``prepare_for_model``,
    ``pad`` and the public ``added_tokens_*`` views, so the slow (``GLM4FixMixin``) and the fast
    (``GLM4FastFixMixin``) GLM-4 fixes share it.
    """

    # ------------------------------------------------------- chat template
    def apply_chat_template(self, conversation: Any, *args: Any, **kwargs: Any):
        """transformers' ``apply_chat_template``, plus ``return_assistant_tokens_mask=True`` (both lines, slow
        and fast GLM-4 tokenizers) and ``sanitize_control_tokens=True`` on transformers 4.x.

        ``tokenize=True`` renders the chats and encodes them in one list call (the tokenizer's fast path),
        with transformers' output. ``return_assistant_tokens_mask=True``: ``assistant_masks`` is 1 on the
        tokens of each assistant turn, 0 elsewhere and on pads. The turns are the template's
        ``{% generation %}`` spans; a GLM-4 template without markers is swapped for its marked copy from
        ``glm4_tokfix.chat_templates`` (same rendering) when there is one, and otherwise its turns are
        located and verified by ``glm4_reply_spans`` (``ValueError`` when they cannot be proved).
        ``sanitize_control_tokens=True``: control-token literals in messages, tools, documents and template
        variables are encoded as text, with transformers 5.24's ids.
        """
        if args:  # tools, documents, ... given positionally: name them, as transformers' signature does
            names = ("tools", "documents", "chat_template", "add_generation_prompt", "continue_final_message", "tokenize")
            if len(args) > len(names):
                raise TypeError(f"apply_chat_template takes at most {len(names)} positional options; pass the rest by name")
            for name, value in zip(names, args):
                if name in kwargs:
                    raise TypeError(f"apply_chat_template got {name!r} twice")
                kwargs[name] = value
        mask = kwargs.get("return_assistant_tokens_mask", False)
        sanitize = kwargs.get("sanitize_control_tokens", False)
        own_sanitize = sanitize and not _transformers_sanitizes()
        # Every tokenizing call renders here and encodes the texts in one list call: transformers 5 passes
        # sanitize_control_tokens=False to the tokenizer, which sends each row down the per-token generic path.
        if mask or own_sanitize or (kwargs.get("tokenize", True) and not sanitize):
            return self._glm4_apply_chat_template(conversation, **kwargs)
        if "sanitize_control_tokens" in kwargs and not _transformers_sanitizes():
            kwargs.pop("sanitize_control_tokens")  # False: nothing to do, and 4.x would pass it to the template
        return super().apply_chat_template(conversation, **kwargs)

    @staticmethod
    def _glm4_render_span_marked(
        marked: str, conversations: List[Any], tools: Any, documents: Any, add_generation_prompt: bool,
        template_kwargs: Dict[str, Any],
    ) -> Tuple[Optional[List[str]], Optional[List[List[Tuple[int, int]]]]]:
        """Render ``marked`` (a template with generation blocks) once, plainly, with a marker printed where
        each block starts and ends; the renderings without the markers and each one's block spans, the
        same as transformers' generation tracker gives. (None, None) when the markers cannot be trusted
        (not alternating open, close, or changed by the template): then the tracker renders."""
        from transformers.utils.chat_template_utils import render_jinja_template

        digits = str(int.from_bytes(os.urandom(10), "big"))  # this call's: no text can hold it by chance
        marker = "\x00glm4-tokfix-span-" + digits
        try:
            texts, _ = render_jinja_template(
                conversations=conversations, tools=tools, documents=documents,
                chat_template=_span_marked_template(marked), add_generation_prompt=add_generation_prompt,
                **{**template_kwargs, _SPAN_OPEN_VAR: marker + "<", _SPAN_CLOSE_VAR: marker + ">"},
            )  # fmt: skip
        except Exception:  # noqa: BLE001 -- e.g. a template jinja compiles only as written: the tracker decides
            return None, None
        rendered, spans = [], []
        for text in texts:
            split = _split_span_markers(text, marker, digits)
            if split is None:  # e.g. a marker the template changed (say, upper-cased)
                return None, None
            rendered.append(split[0])
            spans.append(split[1])
        return rendered, spans

    @staticmethod
    def _glm4_shipped_marked(marked: Optional[str], template: str) -> bool:
        """Whether ``marked`` (``_glm4_marked_template(template)``) is one of the shipped marked copies."""
        if marked is None:
            return False
        if marked is not template:  # looked up for a known original
            return True
        try:
            template_name = importlib.import_module("glm4_tokfix.chat_templates").template_name
        except ImportError:
            return False
        return template_name(marked) is not None

    def _glm4_marked_template(self, template: str) -> Optional[str]:
        """``template`` if it has ``{% generation %}`` markers, else the shipped marked copy of it, else None
        (then the replies are located by ``glm4_reply_spans``)."""
        if _GENERATION_TAG.search(template):
            return template
        try:  # optional: a model folder's copy of this module works without the package (generic spans then)
            marked_template = importlib.import_module("glm4_tokfix.chat_templates").marked_template
        except ImportError:
            return None
        return marked_template(template)

    def _glm4_apply_chat_template(
        self,
        conversation: Any,
        tools: Any = None,
        documents: Any = None,
        chat_template: Optional[str] = None,
        add_generation_prompt: bool = False,
        continue_final_message: Any = False,
        tokenize: bool = True,
        sanitize_control_tokens: bool = False,
        padding: Any = False,
        truncation: Any = False,
        max_length: Optional[int] = None,
        return_tensors: Any = None,
        return_dict: Optional[bool] = None,
        return_assistant_tokens_mask: bool = False,
        tokenizer_kwargs: Optional[Dict[str, Any]] = None,
        **template_kwargs: Any,
    ):
        """``apply_chat_template``, rendered here and encoded in one list call, with assistant masks and
        control-token sanitizing done here."""
        from transformers import tokenization_utils_base as base
        from transformers.tokenization_utils_base import BatchEncoding
        from transformers.utils.chat_template_utils import render_jinja_template

        if return_dict is None:
            return_dict = _return_dict_default()
        if not tokenize:
            return_dict = False
        if return_assistant_tokens_mask and not (return_dict and tokenize):
            raise ValueError("`return_assistant_tokens_mask=True` requires `return_dict=True` and `tokenize=True`")
        if sanitize_control_tokens and (not tokenize or return_assistant_tokens_mask):
            raise ValueError(
                "`sanitize_control_tokens=True` requires `tokenize=True` and is not compatible with "
                "`return_assistant_tokens_mask=True`."
            )
        tokenizer_kwargs = dict(tokenizer_kwargs or {})
        template = self.get_chat_template(chat_template, tools)
        marked = self._glm4_marked_template(template) if return_assistant_tokens_mask else None
        if isinstance(conversation, (list, tuple)) and not conversation:
            raise ValueError("Cannot apply chat template to an empty conversation. Provide at least one message.")
        batched = isinstance(conversation, (list, tuple)) and (
            isinstance(conversation[0], (list, tuple)) or hasattr(conversation[0], "messages")
        )
        conversations = list(conversation) if batched else [conversation]
        normalize = getattr(base, "_normalize_chat_messages", None)  # transformers 5: message objects, None keys
        if normalize is not None:
            conversations = [normalize(chat) for chat in conversations]
        if continue_final_message:
            if add_generation_prompt:
                raise ValueError(
                    "continue_final_message and add_generation_prompt are not compatible. Use continue_final_message "
                    "when you want the model to continue the final message, and add_generation_prompt when you want "
                    "to add a header that will prompt it to start a new assistant message instead."
                )
            if return_assistant_tokens_mask:
                raise ValueError("continue_final_message is not compatible with return_assistant_tokens_mask.")
        if sanitize_control_tokens:
            pattern = _control_pattern(self._glm4_control_tokens(template))
            conversations = [_mark_control_tokens(getattr(c, "messages", c), pattern) for c in conversations]
            tools = _mark_control_tokens(tools, pattern)
            documents = _mark_control_tokens(documents, pattern)
            template_kwargs = _mark_control_tokens(template_kwargs, pattern)
        special = self.special_tokens_map
        rendered = spans = None
        if self._glm4_shipped_marked(marked, template) and not {_SPAN_OPEN_VAR, _SPAN_CLOSE_VAR} & template_kwargs.keys():
            rendered, spans = self._glm4_render_span_marked(
                marked, conversations, tools, documents, add_generation_prompt, {**special, **template_kwargs}
            )
        if rendered is None:
            rendered, spans = render_jinja_template(
                conversations=conversations,
                tools=tools,
                documents=documents,
                chat_template=marked if marked is not None else template,
                return_assistant_tokens_mask=marked is not None,
                continue_final_message=continue_final_message,
                add_generation_prompt=add_generation_prompt,
                **{**special, **template_kwargs},
            )
        if return_assistant_tokens_mask and marked is None:

            def render(chats: List[Any], tools: Any, documents: Any, kwargs: Dict[str, Any]) -> List[str]:
                return render_jinja_template(
                    conversations=chats,
                    tools=tools,
                    documents=documents,
                    chat_template=template,
                    add_generation_prompt=add_generation_prompt,
                    **{**special, **kwargs},
                )[0]

            chats = [list(getattr(c, "messages", c)) for c in conversations]
            spans = glm4_reply_spans(render, chats, rendered, tools, documents, template_kwargs)
        if not tokenize:
            return rendered if batched else rendered[0]
        options = dict(padding=padding, truncation=truncation, max_length=max_length)
        if sanitize_control_tokens:
            out = self._glm4_encode_id_rows(
                [self._glm4_encode_marked(text) for text in rendered], batched, return_tensors, options, tokenizer_kwargs
            )
        elif return_assistant_tokens_mask:
            out = self._glm4_encode_with_masks(rendered, spans, batched, return_tensors, options, tokenizer_kwargs)
        else:
            out = self(
                rendered if batched else rendered[0],
                add_special_tokens=False,
                return_tensors=return_tensors,
                **options,
                **tokenizer_kwargs,
            )
        return out if return_dict else out["input_ids"]

    #: tokenizer_kwargs under which assistant masks come from the ids and per-token character counts (no offsets).
    _GLM4_MASK_FAST_KWARGS = _NameSet(
        {"padding_side", "pad_to_multiple_of", "return_attention_mask", "return_token_type_ids",
         "return_special_tokens_mask", "return_length", "verbose", "split_special_tokens"}
    )  # fmt: skip

    def _glm4_encode_with_masks(
        self,
        rendered: List[str],
        spans: List[List[Tuple[int, int]]],
        batched: bool,
        return_tensors: Any,
        options: Dict[str, Any],
        tokenizer_kwargs: Dict[str, Any],
    ):
        """``self(rendered, add_special_tokens=False, ...)`` plus ``assistant_masks`` from the spans.

        On a tokenizer with per-id character tables (``GLM4FixMixin``) the masks come from the ids: spans whose
        edges are next to added-token literals by counting those literals (``_row_ranges_at_literals``), others
        from each token's character range, a running sum of the characters its bytes start (the same tokens
        ``assistant_token_mask`` picks from the offsets). Otherwise, or with options that reshape rows
        (overflow, offsets asked for), from the offsets.
        """
        from transformers.tokenization_utils_base import BatchEncoding

        texts = rendered if batched else rendered[0]
        tables_of = getattr(self, "_glm4_offset_tables", None)
        tables = tables_of() if tables_of is not None and tokenizer_kwargs.keys() <= self._GLM4_MASK_FAST_KWARGS else None
        if tables is not None and self._glm4_stripping_ids():
            tables = None  # added tokens that strip whitespace: the ids no longer cover the text (offsets do)
        padded = options["padding"] not in (False, None, "do_not_pad", PaddingStrategy.DO_NOT_PAD)
        if tables is not None and padded and tokenizer_kwargs.get("return_attention_mask") is False:
            tables = None  # pads could not be told from ids
        masks: Optional[List[List[int]]] = None
        if tables is not None:
            out = self(texts, add_special_tokens=False, return_tensors=None, **options, **tokenizer_kwargs)
            split = tokenizer_kwargs.get("split_special_tokens")
            if split is None:
                split = getattr(self, "split_special_tokens", False)
            literals = None if options["truncation"] or split else self._glm4_mask_literals()
            masks = self._glm4_masks_from_ids(
                out, rendered, spans, batched, tables, bool(options["truncation"]), padded, literals
            )
        if masks is None:
            want_offsets = tokenizer_kwargs.pop("return_offsets_mapping", False)
            out = self(
                texts, add_special_tokens=False, return_tensors=None, return_offsets_mapping=True, **options,
                **tokenizer_kwargs,
            )  # fmt: skip
            offsets = out["offset_mapping"] if batched else [out["offset_mapping"]]
            masks = [assistant_token_mask(row, row_spans) for row, row_spans in zip(offsets, spans)]
            if not want_offsets:
                del out["offset_mapping"]
        out["assistant_masks"] = masks if batched else masks[0]
        if return_tensors is not None:
            out = BatchEncoding(dict(out), tensor_type=return_tensors, prepend_batch_axis=not batched)
        return out

    def _glm4_masks_from_ids(
        self,
        out: Any,
        rendered: List[str],
        spans: List[List[Tuple[int, int]]],
        batched: bool,
        tables: Tuple[List[int], List[int], Any],
        truncated: bool,
        padded: bool,
        literals: Optional[Mapping[str, int]] = None,
    ) -> Optional[List[List[int]]]:
        """Each row's assistant mask from its ids, or None when the rows are not one per text (then offsets).

        ``literals``: the added tokens of ``_glm4_mask_literals`` when the rows are the texts' whole encodings;
        spans whose edges are next to them are found by counting them (``_row_ranges_at_literals``), else
        by the characters of every token (``_RowCharacters``)."""
        rows = out["input_ids"] if batched else [out["input_ids"]]
        if len(rows) != len(rendered):
            return None
        attention = out.get("attention_mask") if padded else None  # unpadded rows are all real tokens
        if attention is not None and not batched:
            attention = [attention]
        left_cut = self.truncation_side == "left"
        # each row's ids without its pads, and where they start in the row (two lists, not a pair per row: each
        # pair would be one more object for the garbage collector to count)
        real_ids, leads = rows, [0] * len(rows)
        if attention is not None:
            real_ids = []
            for k, row in enumerate(rows):
                width, lead = len(row), 0
                n_real = sum(attention[k])
                if n_real < width and not attention[k][0]:
                    lead = width - n_real
                leads[k] = lead
                real_ids.append(row[lead : lead + n_real] if n_real < width else row)
        if literals is not None and not truncated:
            items = tuple(literals.items())
            masks = []
            for row, ids, lead, text, row_spans in zip(rows, real_ids, leads, rendered, spans):
                ranges = _row_ranges_at_literals(ids, text, row_spans, items)  # one row's at a time: let go at once
                if ranges is None:  # an edge next to no literal: every row by its characters
                    break
                masks.append(_mask_of_ranges(len(row), lead, ranges))
            else:
                return masks
        chars = _RowCharacters(tables[0], tables[1], real_ids)
        shifts = []
        for total, text in zip(chars.totals(), rendered):
            if total > len(text) or (not truncated and total != len(text)):
                return None  # not the plain encoding of the text: let the offsets decide
            shifts.append(len(text) - total if left_cut and total < len(text) else 0)  # a left cut keeps the end
        found = chars.token_ranges(spans, shifts)
        return [_mask_of_ranges(len(row), lead, ranges) for row, lead, ranges in zip(rows, leads, found)]

    def _glm4_mask_literals(self) -> Optional[Dict[str, int]]:
        """content -> id of the added tokens that this tokenizer's encodings split out as their ids, ids that BPE
        never makes, when no two occurrences of them can overlap in a text (``_row_ranges_at_literals``);
        None when that is not known to hold."""
        return None

    def _glm4_control_tokens(self, template: str) -> List[str]:
        """The tokens ``sanitize_control_tokens=True`` encodes as text in user input, as transformers 5.24
        picks them: the special added tokens, plus ``chat_control_tokens`` when set, else the added
        tokens the template itself writes (whitespace-only tokens excepted)."""
        chosen = getattr(self, "chat_control_tokens", None)
        tokens = []
        for token in self.added_tokens_decoder.values():
            if token.special:
                tokens.append(token.content)
            elif chosen is not None:
                if token.content in chosen:
                    tokens.append(token.content)
            elif token.content in template and not token.content.isspace():
                tokens.append(token.content)
        return tokens

    def _glm4_encode_marked(self, text: str) -> List[int]:
        """ids of a chat rendered from marked input: marked literals as text, the template's own tokens as tokens.

        A lone marker (a template string method split a marked literal) is dropped but still separates
        the text around it. Each piece after the first is encoded after a newline that is then taken off
        again (when the newline stays a token of its own), as transformers 5.24 does.
        """
        pattern = _control_pattern(self.added_tokens_encoder)
        splitter = regex.compile(
            f"{_CONTROL_START}({pattern.pattern}){_CONTROL_END}|[{_CONTROL_START}{_CONTROL_END}]"
        )
        pieces = splitter.split(text)
        newline = self.encode("\n", add_special_tokens=False)
        ids = self.encode(pieces[0], add_special_tokens=False)
        for i, piece in enumerate(pieces[1:], start=1):
            if not piece:
                continue
            as_text = i % 2 == 1  # odd pieces are marked literals
            piece_ids = self.encode("\n" + piece, add_special_tokens=False, split_special_tokens=as_text)
            if piece_ids[: len(newline)] == newline:
                piece_ids = piece_ids[len(newline) :]
            else:
                piece_ids = self.encode(piece, add_special_tokens=False, split_special_tokens=as_text)
            ids += piece_ids
        return ids

    def _glm4_encode_id_rows(
        self, rows: List[List[int]], batched: bool, return_tensors: Any, options: Dict[str, Any], extra: Dict[str, Any]
    ):
        """Truncate and pad ready ids as ``tok(texts, add_special_tokens=False, **options)`` would."""
        from transformers.tokenization_utils_base import BatchEncoding

        extra = dict(extra)
        pad_kwargs = {k: extra.pop(k) for k in ("pad_to_multiple_of", "padding_side", "return_attention_mask") if k in extra}
        encoded = [
            self.prepare_for_model(
                ids,
                add_special_tokens=False,
                truncation=options["truncation"],
                max_length=options["max_length"],
                padding=False,
                return_attention_mask=False,
                **extra,
            )
            for ids in rows
        ]
        data = {key: [row[key] for row in encoded] for key in encoded[0]} if batched else dict(encoded[0])
        data = self.pad(data, padding=options["padding"], max_length=options["max_length"], **pad_kwargs)
        return BatchEncoding(dict(data), tensor_type=return_tensors, prepend_batch_axis=not batched)


class GLM4FixMixin(GLM4ChatMixin, GLM4BatchEncoder, GLM4PaddingMixin):
    """The GLM-4 batch-encoding fix, as methods to lay over a tokenizer class.

    Put it first in the bases (``class Fixed(GLM4FixMixin, UpstreamTokenizer)``).
    It relies only on transformers' slow-tokenizer API plus the attributes every
    GLM-4 tokenizer revision has: ``decoder`` (id -> bytes) and
    ``mergeable_ranks`` (bytes -> id). Its methods are the specification of the
    fix; it inherits the padding rules (``GLM4PaddingMixin``), the fast path
    that gives the same output faster (``GLM4BatchEncoder``) and the chat
    template's training options (``GLM4ChatMixin``).
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

    # -------------------------------------------------------------- offsets
    def _glm4_offsets(self, ids: Sequence[int], text: Optional[str] = None) -> List[Tuple[int, int]]:
        """Character offsets of ``ids``, the tokens of one whole text (no added prefix), into that text.

        The same as ``token_char_offsets`` over the tokens' bytes, computed from per-id tables (characters
        each token starts, and whether it begins inside a character) so the walk runs in C. When an added
        token strips whitespace (``lstrip``/``rstrip``), the tokens' bytes no longer cover the text: given
        ``text``, such a token then covers the whitespace it took, as in HF fast tokenizers.
        """
        if text is not None and self._glm4_stripping_ids():
            return self._glm4_aligned_offsets(ids, text)
        tables = self._glm4_offset_tables()
        if tables is None:
            decoder, added = self.decoder, self._added_tokens_decoder
            return token_char_offsets([decoder.get(i) or added[i].content.encode("utf-8") for i in ids])
        starts_chars, begins_inside, inside_ids = tables
        ends = list(itertools.accumulate(map(starts_chars.__getitem__, ids)))
        if inside_ids.isdisjoint(ids):  # the common case: every token starts where the previous one ended
            return list(zip(itertools.chain((0,), ends), ends))
        starts = map(operator.sub, itertools.chain((0,), ends), map(begins_inside.__getitem__, ids))
        return list(zip(starts, ends))

    def _glm4_mask_literals(self) -> Optional[Dict[str, int]]:
        literals = self._glm4_added_literals()  # None: stripping, single-word or overlapping tokens
        if literals is None or any(index in self.decoder for index in literals.values()):
            return None
        return literals if _disjoint_literals(tuple(sorted(literals))) else None

    def _glm4_stripping_ids(self) -> Dict[int, Any]:
        """id -> added token, for the added tokens that strip whitespace next to them."""
        return {i: t for i, t in self._added_tokens_decoder.items() if t.lstrip or t.rstrip}

    def _glm4_aligned_offsets(self, ids: Sequence[int], text: str) -> List[Tuple[int, int]]:
        """``_glm4_offsets`` walking ``text``: BPE tokens take their characters, an added token its literal
        plus the whitespace transformers stripped next to it (lstrip: before it, rstrip: after it)."""
        decoder, added = self.decoder, self._added_tokens_decoder
        offsets: List[Tuple[int, int]] = []
        position, size = 0, len(text)
        for index in ids:
            token = added.get(index)
            piece = decoder.get(index) if token is None else None
            if piece is not None or token is None:
                (start, end), = token_char_offsets([piece or b""], position)
                offsets.append((start, end))
                position = end
                continue
            content = token.content
            start = position
            found = position
            while found < size and not text.startswith(content, found) and text[found].isspace():
                found += 1
            if not text.startswith(content, found):  # not where expected: its length, as the bytes say
                found = position
            end = found + len(content)
            if token.rstrip:
                while end < size and text[end].isspace():
                    end += 1
            offsets.append((start, end))
            position = end
        return offsets

    def _glm4_offset_tables(self) -> Optional[Tuple[List[int], List[int], frozenset]]:
        """Per token id: how many characters it starts, and 1 if it begins inside a character (and the set
        of the ids that do).

        Built once per vocabulary and set of added tokens (kept next to the tiktoken encoding, outside
        the tokenizer, so pickles stay small); None when the tokenizer has no tiktoken encoding.
        """
        encoding = getattr(self, "tokenizer", None)
        added = self._added_tokens_decoder
        key = (id(added), len(added))
        try:
            cached = _OFFSET_TABLES.get(encoding)
        except TypeError:  # not weak-referenceable
            return None
        if cached is not None and cached[0] == key:
            return cached[1]
        pieces = dict(self.decoder)
        pieces.update((i, token.content.encode("utf-8")) for i, token in added.items())
        tables = _offset_tables(pieces)
        _OFFSET_TABLES[encoding] = (key, tables)
        return tables

    def _glm4_generic_offsets(self, encode: Callable[..., Any], rows: List[Tuple[Any, Any]], kwargs: Dict[str, Any]):
        """Run transformers' generic ``encode`` (``_encode_plus``/``_batch_encode_plus``) with offsets.

        ``rows`` are the (text, text_pair) of each row. Their ids and offsets are computed here and
        handed to ``prepare_for_model`` (one row per call), which truncates and pads the offsets with
        the ids; ``_pad`` pads them with ``(0, 0)``.
        """
        if kwargs.get("is_split_into_words"):
            raise ValueError("return_offsets_mapping=True needs plain texts; it is not available with is_split_into_words")
        if kwargs.get("sanitize_control_tokens"):
            raise ValueError("return_offsets_mapping=True is not available with sanitize_control_tokens=True")
        split = kwargs.get("split_special_tokens")
        pending: List[Any] = []
        for row in rows:
            encoded = []
            for text in row:
                if text is None:
                    encoded.append(None)
                    continue
                if not isinstance(text, str):
                    raise ValueError(
                        f"return_offsets_mapping=True needs texts (str), got {type(text).__name__}: offsets are "
                        "character positions in a text"
                    )
                ids = self.encode(text, add_special_tokens=False, split_special_tokens=split)
                encoded.append((ids, self._glm4_offsets(ids, text)))
            pending.append(encoded)
        kwargs = dict(kwargs, return_offsets_mapping=False)
        token = _OFFSET_ROWS.set(pending)
        try:
            out = encode(**kwargs)
        finally:
            _OFFSET_ROWS.reset(token)
        if pending:
            raise RuntimeError(f"internal error: {len(pending)} rows of offsets were not used")
        return out

    def _glm4_prepare_with_offsets(
        self, ids: List[int], pair_ids: Optional[List[int]], row: List[Any], kwargs: Dict[str, Any]
    ):
        """``prepare_for_model`` for one row of ``_glm4_generic_offsets``: ids, then offsets, then padding."""
        from transformers.tokenization_utils_base import BatchEncoding

        for given, expected in zip((ids, pair_ids), row):
            if (given is None) != (expected is None) or (given is not None and list(given) != expected[0]):
                raise RuntimeError("internal error: the ids of a row differ from those its offsets were computed on")
        offsets = list(row[0][1])
        pair_offsets = list(row[1][1]) if row[1] is not None else None
        add_special = kwargs.get("add_special_tokens", True)
        head: List[Tuple[int, int]] = []
        if add_special:
            prefix = self.get_prefix_tokens()
            if self._glm4_has_prefix(ids, prefix):  # a literal prefix maps to its own characters
                head, offsets = offsets[: len(prefix)], offsets[len(prefix) :]
            else:
                head = [(0, 0)] * len(prefix)
        padding = kwargs.pop("padding", False)
        max_length = kwargs.get("max_length")
        pad_to_multiple_of = kwargs.pop("pad_to_multiple_of", None)
        padding_side = kwargs.pop("padding_side", None)
        return_tensors = kwargs.pop("return_tensors", None)
        prepend_batch_axis = kwargs.pop("prepend_batch_axis", False)
        return_attention_mask = kwargs.pop("return_attention_mask", None)
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        return_length = kwargs.pop("return_length", False)
        log: List[Tuple[int, int]] = []
        token = _TRUNCATION_LOG.set(log)
        try:
            encoded = dict(self._glm4_prepare(ids, pair_ids, padding=False, return_attention_mask=False, **kwargs))
        finally:
            _TRUNCATION_LOG.reset(token)
        left = self.truncation_side == "left"
        if log:
            kept, kept_pair = log[-1]
            offsets = offsets[len(offsets) - kept :] if left else offsets[:kept]
            if pair_offsets is not None:
                pair_offsets = pair_offsets[len(pair_offsets) - kept_pair :] if left else pair_offsets[:kept_pair]
        row_offsets = head + offsets + (pair_offsets or [])
        if add_special and pair_offsets is not None:
            row_offsets.append((0, 0))  # the <|endoftext|> that closes a pair
        if len(row_offsets) != len(encoded["input_ids"]):
            raise RuntimeError("internal error: offsets and ids of a row differ in length")
        encoded["offset_mapping"] = row_offsets
        strategy, _, max_length, _ = self._get_padding_truncation_strategies(
            padding=padding, max_length=max_length, pad_to_multiple_of=pad_to_multiple_of, verbose=False
        )
        if strategy != PaddingStrategy.DO_NOT_PAD or return_attention_mask:
            encoded = self.pad(
                encoded,
                max_length=max_length,
                padding=strategy.value,
                pad_to_multiple_of=pad_to_multiple_of,
                padding_side=padding_side,
                return_attention_mask=return_attention_mask,
            )
        if return_length:
            encoded["length"] = len(encoded["input_ids"])
        return BatchEncoding(encoded, tensor_type=return_tensors, prepend_batch_axis=prepend_batch_axis)

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

    if not hasattr(PreTrainedTokenizerBase, "batch_encode_plus"):  # transformers 5 removed it

        def batch_encode_plus(
            self, batch_text_or_text_pairs: Any, add_special_tokens: bool = True, padding: Any = False,
            truncation: Any = None, max_length: Optional[int] = None, stride: int = 0,
            is_split_into_words: bool = False, pad_to_multiple_of: Optional[int] = None, **kwargs: Any,
        ) -> BatchEncoding:  # fmt: skip
            """transformers 4.x's ``batch_encode_plus`` (its parameters in its order), which transformers 5
            removed: ``self(batch, ...)``, the same meaning. A class laid under the fix may call it (GLM-4V-9B's
            ``apply_chat_template`` does, with rows of ids and ``is_split_into_words=True``)."""
            if not isinstance(batch_text_or_text_pairs, (list, tuple)):
                got = type(batch_text_or_text_pairs).__name__
                raise TypeError(f"batch_encode_plus takes a list of texts or text pairs, got {got}")
            return self(
                list(batch_text_or_text_pairs), add_special_tokens=add_special_tokens, padding=padding,
                truncation=truncation, max_length=max_length, stride=stride, is_split_into_words=is_split_into_words,
                pad_to_multiple_of=pad_to_multiple_of, **kwargs,
            )  # fmt: skip

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
        cached = _PREPARE_PARAMS.get(cls)
        if cached is None:
            params = list(inspect.signature(super(GLM4FixMixin, cls).prepare_for_model).parameters.values())[3:]
            names = tuple(p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD)
            defaults = {p.name: p.default for p in params if p.default is not p.empty}
            cached = _PREPARE_PARAMS[cls] = (names, defaults)
        return cached

    def prepare_for_model(self, ids: List[int], pair_ids: Optional[List[int]] = None, *args: Any, **kwargs: Any):
        """transformers' ``prepare_for_model`` with an idempotent prefix, exact pairs and overflow.

        When special tokens are added and ``ids`` already starts with
        ``[gMASK]<sop>``, that copy is taken off before truncation and put back
        by ``build_inputs_with_special_tokens``, so length accounting and
        ``truncation_side`` see the prefix exactly once (``_glm4_prepare``); rows
        of ``_glm4_generic_offsets`` also get their offsets.
        """
        rows = _OFFSET_ROWS.get()
        if rows:
            if args:
                raise TypeError("prepare_for_model: pass its options by keyword")
            row = rows.pop(0)
            token = _OFFSET_ROWS.set(None)
            try:
                return self._glm4_prepare_with_offsets(ids, pair_ids, row, dict(kwargs))
            finally:
                _OFFSET_ROWS.reset(token)
        return self._glm4_prepare(ids, pair_ids, *args, **kwargs)

    def _glm4_prepare(self, ids: List[int], pair_ids: Optional[List[int]] = None, *args: Any, **kwargs: Any):
        """``prepare_for_model`` with an idempotent prefix, exact pairs and overflow.

        A pair truncated to fewer than its 3 special tokens is a ValueError. With
        ``return_overflowing_tokens=True`` the result always holds ``overflowing_tokens`` (``[]`` when nothing
        was cut) and ``num_truncated_tokens`` (0 then), also as tensors, on both transformers lines, so a
        batch's rows line up with single calls.
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
        result = self._glm4_truncate(ids, pair_ids, num_tokens_to_remove, truncation_strategy, stride)
        log = _TRUNCATION_LOG.get()
        if log is not None:
            log.append((len(result[0]), len(result[1]) if result[1] is not None else 0))
        return result

    def _glm4_truncate(
        self,
        ids: List[int],
        pair_ids: Optional[List[int]],
        num_tokens_to_remove: int,
        truncation_strategy: Union[str, TruncationStrategy],
        stride: int,
    ) -> Tuple[List[int], Optional[List[int]], List[int]]:
        strategy = TruncationStrategy(truncation_strategy)
        single = pair_ids is None and strategy in (TruncationStrategy.ONLY_FIRST, TruncationStrategy.LONGEST_FIRST)
        if num_tokens_to_remove > 0 and pair_ids is not None:
            return self._glm4_truncate_pair(ids, pair_ids, num_tokens_to_remove, strategy, stride)
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

    def _glm4_truncate_pair(
        self, ids: List[int], pair_ids: List[int], remove: int, strategy: TruncationStrategy, stride: int
    ) -> Tuple[List[int], Optional[List[int]], List[int]]:
        """A pair's truncation, the same on both transformers lines and as on the fast tokenizer.

        ``only_first``/``only_second`` that would have to remove the whole text is a ``ValueError`` (4.x logged
        an error and kept the pair too long; 5.x deleted the text). ``longest_first`` is transformers' own, but
        an empty second text stays a (empty) second text: 5.x turned it into no second text with
        ``truncation_side="left"``, losing the pair's ``<|endoftext|>``.
        """
        if strategy in (TruncationStrategy.ONLY_FIRST, TruncationStrategy.ONLY_SECOND):
            which, target = ("first", ids) if strategy == TruncationStrategy.ONLY_FIRST else ("second", pair_ids)
            if remove >= len(target):
                raise ValueError(
                    f"truncation={strategy.value!r} cannot fit this pair: it would have to remove {remove} tokens "
                    f"from the {which} text, which has {len(target)} (the texts have {len(ids)} + {len(pair_ids)} "
                    f"tokens without special tokens); nothing is dropped silently -- use a larger max_length or "
                    f"truncation='longest_first'"
                )
        first, second, overflow = super().truncate_sequences(ids, pair_ids, remove, strategy, stride)  # type: ignore
        return first, ([] if second is None else second), overflow

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
        try:
            ids = self.tokenizer.encode_ordinary(text)
        except BaseException as exc:  # noqa: B036 -- only a Rust panic is turned into a ValueError
            if _is_rust_panic(exc):
                raise _engine_error("tiktoken", text, exc) from None
            raise
        return [decoder[i] for i in ids]

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


#: What the fix lays over a host class even where the host defines it itself: the spec hooks (special tokens,
#: truncation, padding, decode) and the vocabulary lookups they rest on. Any other method the host's own code
#: defines -- GLM-4V-9B's ``apply_chat_template`` with its images, say -- stays the host's.
GLM4_SPEC_HOOKS = frozenset({
    "build_inputs_with_special_tokens", "get_special_tokens_mask", "create_token_type_ids_from_sequences",
    "num_special_tokens_to_add", "prepare_for_model", "truncate_sequences", "_get_padding_truncation_strategies",
    "_pad", "pad", "_decode", "convert_tokens_to_string", "_convert_token_to_id", "_convert_id_to_token",
    "convert_tokens_to_ids", "get_prefix_tokens", "get_command", "batch_encode_plus",
})  # fmt: skip


def glm4_host_methods(host: type, mixin: type) -> Dict[str, Any]:
    """The methods of ``host``'s own code (its classes outside transformers) that ``mixin`` also defines and
    that are not spec hooks (``GLM4_SPEC_HOOKS``): name -> the host's attribute, to keep over the fix."""
    own = [k for k in host.__mro__[:-1] if not (k.__module__ or "").split(".")[0] == "transformers"]
    defined = {name for k in mixin.__mro__[:-1] for name in vars(k) if not name.startswith("__")}
    kept = {}
    for name in sorted(defined - GLM4_SPEC_HOOKS):
        if any(name in vars(k) for k in own):
            kept[name] = inspect.getattr_static(host, name)
    return kept


def glm4_fixed_class(host: type, mixin: type = GLM4FixMixin, namespace: Optional[Dict[str, Any]] = None,
                     first: Tuple[type, ...] = ()) -> type:  # fmt: skip
    """``class Fixed(*first, mixin, host)``, named as ``host``: the fix laid over a tokenizer's own class.

    The fix replaces the spec hooks; every other method ``host``'s own code defines stays the host's
    (``glm4_host_methods``), so GLM-4V-9B's image chat keeps working. ``namespace`` adds attributes.
    """
    body = {"__module__": host.__module__, "__qualname__": host.__qualname__, "__doc__": host.__doc__}
    body.update(glm4_host_methods(host, mixin))
    body.update(namespace or {})
    return type(host.__name__, (*first, mixin, host), body)


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
