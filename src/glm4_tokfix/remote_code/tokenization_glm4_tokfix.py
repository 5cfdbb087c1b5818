# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""``GLM4FixMixin`` (the fix in layers, laid over a GLM-4 tokenizer class) and ``ChatGLM4Tokenizer``.

The layers, from the host up (each a mixin in a bundle module of its own):

* ``GLM4SpecMixin`` (``glm4_spec``): the rules as transformers' documented hooks -- the spec, exact on its own;
* ``GLM4PaddingMixin`` (``glm4_padding``): ``pad()`` for many rows in one pass, by the spec's ``_pad``;
* ``GLM4OffsetsMixin`` (``glm4_offset_mixin``): ``return_offsets_mapping``, which transformers' slow tokenizers lack;
* ``GLM4BatchEncoder`` (``glm4_rows``): the accelerator -- plain texts to padded rows in one pass, taken only for
  calls it reproduces exactly, every other call handed to the layers below;
* ``GLM4ChatMixin`` (``glm4_chat``): assistant masks, sanitizing and one list call for ``apply_chat_template``.

``ChatGLM4Tokenizer`` is the fix over ``_ChatGLM4Vocab``: same ids as upstream for every text. The bundle (this
folder) imports only the standard library, ``regex``, ``tiktoken`` and ``transformers`` (``fastokens``, ``numpy``,
``torch`` lazily), so a model folder loads it with ``trust_remote_code=True`` and without glm4-tokfix installed.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, Optional, Tuple

from transformers.tokenization_utils_base import BatchEncoding, PreTrainedTokenizerBase

from .glm4_chat import GLM4ChatMixin
from .glm4_encoders import _disjoint_literals
from .glm4_offset_mixin import GLM4OffsetsMixin

# transformers 4.x copies only the files a remote-code module imports itself (not their imports): name
# every bundle module this one needs
from .glm4_offsets import token_char_offsets as _glm4_offsets  # noqa: F401
from .glm4_padding import GLM4PaddingMixin
from .glm4_rows import GLM4BatchEncoder
from .glm4_spans import _ROLE_LITERAL as _glm4_spans  # noqa: F401
from .glm4_spec import GLM4SpecMixin
from .glm4_state import _Cache
from .glm4_templates import _GENERATION as _glm4_templates  # noqa: F401
from .glm4_tokens import PREFIX_TEXT as _glm4_tokens  # noqa: F401
from .glm4_vocab import _ChatGLM4Vocab

__all__ = ["ChatGLM4Tokenizer", "GLM4FixMixin", "GLM4_SPEC_HOOKS", "glm4_fixed_class", "glm4_host_methods"]


# tokenizer -> (its added-token literals, those _glm4_mask_literals counts or None), see there
_MASK_LITERALS: _Cache[Any, Tuple[Any, Optional[Dict[str, int]]]] = _Cache()


class GLM4FixMixin(GLM4ChatMixin, GLM4BatchEncoder, GLM4OffsetsMixin, GLM4PaddingMixin, GLM4SpecMixin):
    """The GLM-4 fix, as methods to lay over a tokenizer class: ``class Fixed(GLM4FixMixin, UpstreamTokenizer)``.

    It relies only on transformers' slow-tokenizer API plus the attributes every GLM-4 tokenizer revision has:
    ``decoder`` (id -> bytes) and ``mergeable_ranks`` (bytes -> id). The rules are ``GLM4SpecMixin``'s; the other
    bases add speed (``GLM4BatchEncoder``, ``GLM4PaddingMixin``) and features (offsets, chat) without changing an
    answer. ``glm4_fixed_class`` lays it over a host class and keeps the host's own methods.
    """

    # ------------------------------------------------------ chat masks (GLM4ChatMixin asks)
    def _glm4_mask_literals(self) -> Optional[Dict[str, int]]:
        literals = self._glm4_added_literals()  # None: stripping, single-word or overlapping tokens
        cached = _MASK_LITERALS.get(self)
        if cached is not None and cached[0] is literals:  # decided once per set of literals (one cached dict)
            return cached[1]
        chosen = literals
        if (
            literals is None
            or any(index in self.decoder for index in literals.values())
            or not _disjoint_literals(tuple(sorted(literals)))
        ):
            chosen = None
        _MASK_LITERALS[self] = (literals, chosen)
        return chosen

    # ------------------------------------------------------ hosts written for transformers 4.x
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
    own = [k for k in host.__mro__[:-1] if (k.__module__ or "").split(".")[0] != "transformers"]
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
    row ``i`` equal ``tok(texts[i])``. ``save_pretrained`` writes this module (and
    the bundle modules it imports) next to the vocabulary so the folder loads the fixed class through
    ``AutoTokenizer.from_pretrained(folder, trust_remote_code=True)``.
    """

    _auto_class = "AutoTokenizer"
