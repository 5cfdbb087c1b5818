# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""``tokenizer.model`` reader and ``_ChatGLM4Vocab``: upstream's tiktoken vocabulary handling, reimplemented."""

from __future__ import annotations

import base64
import binascii
import os
import shutil
from typing import Any, Dict, List, Optional, Tuple, Union

import tiktoken
from transformers import PreTrainedTokenizer
from transformers.tokenization_utils_base import AddedToken

from .glm4_encoders import _engine_error, _is_rust_panic
from .glm4_tokens import GLM4_PAT_STR, GLM4_SPECIAL_TOKENS


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

    def get_vocab(self) -> Dict[Union[str, bytes], int]:  # type: ignore[override]  # upstream's keys: bytes (ranks) and str (added tokens)
        vocab: Dict[Union[str, bytes], int] = dict(self.mergeable_ranks)  # type: ignore[arg-type]  # bytes keys as str | bytes keys (dict is invariant)
        vocab.update(self._added_tokens_encoder)
        return vocab

    def _tokenize(self, text: str, **kwargs: Any) -> List[bytes]:
        decoder = self.decoder
        try:
            ids = self.tokenizer.encode_ordinary(text)
        except BaseException as exc:
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
