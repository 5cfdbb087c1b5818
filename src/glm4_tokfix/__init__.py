"""glm4-tokfix: exact batch encoding for GLM-4 (glm-4-9b-chat) tokenizers.

The public API. Names are imported lazily, so ``import glm4_tokfix`` does not
import transformers until a tokenizer is asked for.

    >>> import glm4_tokfix
    >>> tok = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(glm4_tokfix.TINY_GLM4_DIR)
    >>> tok(["[gMASK]<sop><|user|>\\nhi<|assistant|>", "<|user|>\\nhello"], padding=True)

* ``ChatGLM4Tokenizer`` -- the fixed tokenizer (``glm4_tokfix.remote_code.tokenization_glm4_tokfix``; the
  ``remote_code`` bundle is what a model folder receives).
* ``GLM4FixMixin`` -- the fix as methods to lay over another GLM-4 tokenizer class.
* ``ChatGLM4TokenizerFast`` / ``GLM4FastFixMixin`` -- the same fix for transformers-native (``tokenizer.json``)
  GLM-4 tokenizers (``glm4_tokfix.remote_code.tokenization_glm4_tokfix_fast``).
* ``TINY_GLM4_DIR`` -- the embedded tiny GLM-4 tokenizer folder (the default for the CLI and tests).
* ``patch``, ``is_patched``, ``from_pretrained``, ``enable``, ``disable``, ``is_enabled`` -- swap the
  fix in where GLM-4 is loaded (``glm4_tokfix.patching``).
* ``glm4_tokfix.testing`` -- hypothesis strategies and assertion helpers for your own CI.
* ``glm4_tokfix.sft`` -- chats to SFT batches (``tokenize_chats``, ``SFTCollator``).
* ``glm4_tokfix.chat_templates`` -- GLM-4 chat templates with ``{% generation %}`` markers.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

__version__ = "0.1.0"

#: The embedded tiny GLM-4 tokenizer: a 550-rank byte-level BPE vocabulary in
#: ``tokenizer.model`` format, with GLM-4's 14 added tokens and chat template.
TINY_GLM4_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "tiny-glm4")

_LAZY = {
    "ChatGLM4Tokenizer": ".remote_code.tokenization_glm4_tokfix",
    "GLM4FixMixin": ".remote_code.tokenization_glm4_tokfix",
    "ChatGLM4TokenizerFast": ".remote_code.tokenization_glm4_tokfix_fast",
    "GLM4FastFixMixin": ".remote_code.tokenization_glm4_tokfix_fast",
    "patch": ".patching",
    "from_pretrained": ".patching",
    "enable": ".patching",
    "disable": ".patching",
    "is_patched": ".patching",
    "is_enabled": ".patching",
}

__all__ = ["TINY_GLM4_DIR", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'glm4_tokfix' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
