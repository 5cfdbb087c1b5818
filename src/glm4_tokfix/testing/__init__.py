"""Property checks for GLM-4 tokenizers, for your own tests and CI.

Assertion helpers (plain functions: each takes any GLM-4 tokenizer object and
raises ``AssertionError`` with the row, the two id sequences around the first
difference and the options used; an exception raised by the tokenizer itself
is reported the same way)::

    from glm4_tokfix.testing import assert_batch_matches_single, assert_prefix_idempotent

    def test_my_tokenizer_batches(my_tok):
        assert_batch_matches_single(my_tok, ["[gMASK]<sop><|user|>\\nhi", "x"], padding=True, padding_side="right")
        assert_prefix_idempotent(my_tok, "<|user|>\\nhi")

* ``assert_batch_matches_single(tokenizer, texts, **encode_kwargs)``
* ``assert_prefix_idempotent(tokenizer, text, **encode_kwargs)``
* ``assert_pad_idempotent(tokenizer, texts, padding_side=None, pad_to_multiple_of=None)``
* ``assert_chat_template_consistent(tokenizer, chats, add_generation_prompt=True)``
* ``assert_decode_round_trip(tokenizer, text)``
* ``assert_truncation_exact``, ``assert_pair_encoding``, ``assert_special_tokens_mask``,
  ``assert_decode_rejects_unknown_ids``, ``assert_encode_consistent``

Also here (imported on first use, since they import hypothesis or transformers):

* ``strategies`` -- hypothesis strategies (texts, prompt_texts, chats, batches, encode_options, ...)
* ``PROPERTIES`` -- the battery (``glm4_tokfix.testing.properties``), ``run_properties`` -- its runner
* ``load_tokenizer(path=None, unpatched=False)`` -- what ``--glm4-tokenizer`` and ``glm4-tokfix check`` load

The pytest plugin (``glm4_tokfix.testing.plugin``, active once glm4-tokfix is
installed) adds ``--glm4-tokenizer PATH``, ``--glm4-unpatched`` and the
``glm4_tokenizer`` fixture; the ready battery runs with::

    pytest --pyargs glm4_tokfix.testing.suite --glm4-tokenizer path/to/glm-4-9b-chat

This package imports only the standard library (the plugin loads it at every pytest start).
"""

from __future__ import annotations

import importlib
from typing import Any

from glm4_tokfix.testing import assertions as _assertions
from glm4_tokfix.testing.assertions import (
    PREFIX_TEXT,
    assert_batch_matches_single,
    assert_chat_template_consistent,
    assert_decode_rejects_unknown_ids,
    assert_decode_round_trip,
    assert_encode_consistent,
    assert_pad_idempotent,
    assert_pair_encoding,
    assert_prefix_idempotent,
    assert_special_tokens_mask,
    assert_truncation_exact,
)

_LAZY = {
    "strategies": ("glm4_tokfix.testing.strategies", None),
    "PROPERTIES": ("glm4_tokfix.testing.properties", "PROPERTIES"),
    "Property": ("glm4_tokfix.testing.properties", "Property"),
    "run_properties": ("glm4_tokfix.testing.runner", "run_properties"),
    "load_tokenizer": ("glm4_tokfix.testing.loading", "load_tokenizer"),
}

__all__ = [*_assertions.__all__, *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'glm4_tokfix.testing' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))
