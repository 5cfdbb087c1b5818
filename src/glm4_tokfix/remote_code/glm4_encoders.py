# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""Encoder backends (tiktoken, fastokens) behind ``GLM4EncoderBackend``, threads, added-token literals.

Pick one with ``tok.glm4_encoder`` or ``$GLM4_TOKFIX_ENCODER``; ``fastokens`` is imported lazily.
"""

from __future__ import annotations

import bisect
import functools
import importlib
import operator
import os
import threading
from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import regex
import tiktoken

from .glm4_state import _Cache, _Table

__all__ = ["FastokensBackend", "GLM4_ENCODERS", "GLM4EncoderBackend", "TiktokenBackend"]


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


@functools.lru_cache(maxsize=64)
def _character_class(characters: Tuple[str, ...]) -> regex.Pattern[str]:
    """A pattern matching any one of ``characters`` (none: never matches)."""
    return regex.compile("[" + "".join(map(regex.escape, characters)) + "]" if characters else "(?!)")


def _overlapping(contents: Sequence[str], itself: bool = False) -> bool:
    """Whether an added token lies inside another or a suffix of one starts another (splitting is ambiguous);
    ``itself=True``: also a suffix of one that starts the same one (``"aba"`` in ``"ababa"``), so that no two
    occurrences of the tokens in any text can overlap.

    Linear in the tokens' total length (times a logarithm), not pairwise: in sorted order a token that starts
    another one comes right before some token that starts with it, and only the suffixes that begin with a
    character some token begins with are looked up (by bisection), for a token inside them or one they start.
    """
    tokens = sorted(set(contents))
    if not tokens or tokens[0] == "":
        return len(tokens) > 1  # the empty token lies inside every other one
    if any(b.startswith(a) for a, b in zip(tokens, tokens[1:])):
        return True  # one token starts another
    starts = _character_class(_first_characters(tokens))
    for a in tokens:
        for match in starts.finditer(a, 1):
            suffix = a[match.start() :]
            below = bisect.bisect_right(tokens, suffix)  # tokens[below - 1] <= suffix < tokens[below]
            if below and suffix.startswith(tokens[below - 1]):
                return True  # a token lies inside a (the nearest one below: tokens start no other token)
            for b in tokens[below : below + 2]:  # the tokens the suffix starts (besides a itself: one more)
                if not b.startswith(suffix):
                    break
                if b != a or itself:
                    return True
    return False


@functools.lru_cache(maxsize=32)
def _disjoint_literals(contents: Tuple[str, ...]) -> bool:
    """Whether no two occurrences of these added-token literals can overlap in a text (cached)."""
    return all(contents) and not _overlapping(contents, itself=True)


def _may_hold(text: str, starts: Tuple[str, ...]) -> bool:
    """Whether ``text`` holds one of the characters ``starts`` (``_first_characters`` of the added tokens)."""
    if len(starts) > 8:  # many: one scan of the text, not one per character
        return _character_class(starts).search(text) is not None
    for start in starts:  # noqa: SIM110 -- a plain loop: any() over a generator costs ~1 us a text more (this runs per text)
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
    except BaseException as exc:
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
    #: the added tokens it splits out of a text (content -> id); each backend sets it
    added_tokens: Dict[str, int]

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
        if 0 < len(added_tokens) <= _FEW_LITERALS:
            special = tiktoken.Encoding(
                name="glm4-with-added-tokens", pat_str=pat_str, mergeable_ranks=dict(ranks),
                special_tokens=dict(added_tokens),
            )  # fmt: skip
        self._init(ordinary, special, added_tokens if len(added_tokens) > _FEW_LITERALS else None)

    @classmethod
    def from_encodings(
        cls, ordinary: tiktoken.Encoding, special: Optional[tiktoken.Encoding], many: Optional[Mapping[str, int]] = None
    ) -> TiktokenBackend:
        """A backend over ready encodings: ``ordinary`` without special tokens, ``special`` with the added
        tokens as its special tokens (None: no added tokens, or ``many`` of them, split out by ``_Literals``)."""
        backend = cls.__new__(cls)
        backend._init(ordinary, special, many)
        return backend

    def _init(
        self,
        ordinary: tiktoken.Encoding,
        special: Optional[tiktoken.Encoding],
        many: Optional[Mapping[str, int]] = None,
    ) -> None:
        self.added_tokens = dict(special._special_tokens) if special is not None else dict(many or {})
        core = ordinary._core_bpe
        self._ordinary = functools.partial(_encode_text, core.encode_ordinary, core.encode, (), frozenset())
        if many:  # tiktoken would convert the set of allowed special tokens on every call: split them out here
            self._special = functools.partial(_tiktoken_split_encode, core.encode_ordinary, _Literals(many))
        elif special is None:
            self._special = self._ordinary
        else:
            allowed = special.special_tokens_set
            core = special._core_bpe
            self._special = functools.partial(
                _encode_text, core.encode_ordinary, core.encode, _first_characters(allowed), allowed
            )

    def text_encoder(self, split_special: bool = False) -> Callable[[str], List[int]]:
        return self._ordinary if split_special else self._special


#: Up to this many added-token literals, tiktoken splits them out itself (as special tokens); with more, the
#: set of allowed ones it converts on every call costs more than splitting them out here (``_Literals``).
_FEW_LITERALS = 64


class _Literals:
    """Finds the literals of added tokens in texts, in time linear in a text's length and built in time linear
    in the number of literals (no regex alternation of thousands of them).

    A text is scanned for the characters literals start with; at each, the literals of each length that start
    with that character are looked up, longest first, so the leftmost occurrence wins and, at one position,
    the longest literal. For literals no two of which overlap (``_overlapping``), the one splitting there is.
    """

    __slots__ = ("first", "ids", "lengths", "pattern", "starts")

    def __init__(self, literals: Mapping[str, int]) -> None:
        self.ids = dict(literals)
        lengths: Dict[str, set] = {}
        for content in self.ids:
            if content:
                lengths.setdefault(content[0], set()).add(len(content))
        self.lengths = {start: sorted(sizes, reverse=True) for start, sizes in lengths.items()}
        self.first = _first_characters(self.ids)
        self.starts = _character_class(self.first)
        # A few literals (GLM-4's own 14): one regex alternation, longest first, which finds the same literals
        # with its scan in C; cheap to compile for so few (thousands would take seconds).
        self.pattern = None
        if len(self.ids) <= _FEW_LITERALS:
            longest_first = sorted((c for c in self.ids if c), key=len, reverse=True)
            self.pattern = regex.compile("|".join(map(regex.escape, longest_first)) or "(?!)")

    def find(self, text: str) -> List[Tuple[int, int, int]]:
        """``(start, end, id)`` of each literal in ``text``, left to right."""
        if not _may_hold(text, self.first):  # most texts hold none of GLM-4's first characters ("<", "[")
            return []
        if self.pattern is not None:
            ids = self.ids
            return [(match.start(), match.end(), ids[match.group()]) for match in self.pattern.finditer(text)]
        found: List[Tuple[int, int, int]] = []
        search, lengths, ids = self.starts.search, self.lengths, self.ids
        match = search(text)
        while match is not None:
            at = match.start()
            room = len(text) - at
            for size in lengths[text[at]]:
                index = ids.get(text[at : at + size]) if size <= room else None
                if index is not None:
                    found.append((at, at + size, index))
                    match = search(text, at + size)
                    break
            else:
                match = search(text, at + 1)
        return found


def _tiktoken_split_encode(ordinary: Callable[[str], List[int]], literals: _Literals, text: str) -> List[int]:
    """One text through tiktoken's core with many added tokens: the literals split out by ``literals``, the pieces
    between encoded as ordinary text (what tiktoken's own special-token splitting does)."""
    try:
        ids: List[int] = []
        position = 0
        for start, end, index in literals.find(text):
            if start > position:
                ids += ordinary(text[position:start])
            ids.append(index)
            position = end
        return ids + ordinary(text[position:]) if position < len(text) else ids
    except UnicodeEncodeError:  # lone surrogates
        return _tiktoken_split_encode(ordinary, literals, _without_surrogates(text))
    except BaseException as exc:
        if _is_rust_panic(exc):
            raise _engine_error("tiktoken", text, exc) from None
        raise


def _fastokens_encode(ordinary: Callable[[str], Any], literals: Optional[_Literals], text: str) -> List[int]:
    """One text through fastokens: the added-token literals split out here, the pieces between encoded."""
    try:
        found = literals.find(text) if literals is not None else None
        if not found:
            return ordinary(text).ids
        ids: List[int] = []
        position = 0
        for start, end, index in found:
            if start > position:
                ids += ordinary(text[position:start]).ids
            ids.append(index)
            position = end
        if position < len(text):
            ids += ordinary(text[position:]).ids
        return ids
    except UnicodeEncodeError:  # lone surrogates
        return _fastokens_encode(ordinary, literals, _without_surrogates(text))
    except BaseException as exc:
        if _is_rust_panic(exc):
            raise _engine_error("fastokens", text, exc) from None
        raise


# a vocabulary's tiktoken encoding -> {(backend name, added tokens): backend}
_BACKENDS: _Cache[tiktoken.Encoding, Dict[Tuple[str, Any], GLM4EncoderBackend]] = _Cache()


# (pattern, ranks digest) -> fastokens.Tokenizer: one per vocabulary and process (it takes ~2 s to load)
_FASTOKENS_NATIVE: _Table = _Table()  # (pattern, ranks digest) -> fastokens' native tokenizer


_FASTOKENS_LOCK = threading.Lock()


def _fastokens_missing() -> ImportError:
    return ImportError(
        'the fastokens encoder backend needs the fastokens package: pip install "glm4-tokfix[fast]" '
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
                splits = [
                    (token[:k], token[k:]) for k in range(1, len(token)) if token[:k] in given and token[k:] in given
                ]
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

    def with_added_tokens(self, added_tokens: Mapping[str, int]) -> FastokensBackend:
        """The same vocabulary with other added tokens (no reload)."""
        backend = type(self).__new__(type(self))
        backend._native = self._native
        backend._init(added_tokens)
        return backend

    def _init(self, added_tokens: Mapping[str, int]) -> None:
        self.added_tokens = dict(added_tokens)
        ordinary = self._native.encode_ordinary
        self._ordinary = functools.partial(_fastokens_encode, ordinary, None)
        if self.added_tokens:
            self._special = functools.partial(_fastokens_encode, ordinary, _Literals(self.added_tokens))
        else:
            self._special = self._ordinary
        for encoder in (self._ordinary, self._special):
            encoder.threads_help = self.threads_help  # type: ignore[attr-defined]  # read back from the partial by _encode_in_threads

    def text_encoder(self, split_special: bool = False) -> Callable[[str], List[int]]:
        return self._ordinary if split_special else self._special


@functools.cache
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
