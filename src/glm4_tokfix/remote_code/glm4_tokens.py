# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""GLM-4 vocabulary facts: the 14 special tokens, the prefix, the pair suffix, the roles, the split pattern.

No transformers import: the package's light modules read these too.
"""

from __future__ import annotations

from typing import Any, List

__all__ = ["GLM4_PAT_STR", "GLM4_ROLE_TOKENS", "GLM4_SPECIAL_TOKENS"]


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


# ---------------------------------------------------------------- assistant spans of any GLM-4 template
#: The tokens that open a turn in every GLM-4 chat format.
GLM4_ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|observation|>")


PREFIX_TEXT = "".join(PREFIX_TOKENS)


#: The tokens a GLM-4 tokenizer must have registered as added tokens.
REQUIRED_TOKENS = ("[gMASK]", "<sop>", "<|endoftext|>")
