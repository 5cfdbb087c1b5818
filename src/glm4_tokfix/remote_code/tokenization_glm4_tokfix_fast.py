# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""``GLM4FastFixMixin`` and ``ChatGLM4TokenizerFast``: the prefix rule for transformers-native fast tokenizers.

glm-4-9b-chat-hf's post-processor adds ``[gMASK]<sop>`` to every text, so a rendered chat gets it twice; the mixin
adds it exactly when missing, reading the policy from the tokenizer's own post-processor (one that adds nothing
keeps that policy). The Rust tokenizer stays the checkpoint's own; padding uses the slow tokenizer's rules.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

from .glm4_chat import GLM4ChatMixin

# transformers 4.x copies only the files a remote-code module imports itself (not their imports): name
# every bundle module this one needs
from .glm4_encoders import _disjoint_literals as _glm4_encoders  # noqa: F401
from .glm4_fast_encoder import PrefixRule as _glm4_fast_encoder  # noqa: F401
from .glm4_fast_route import GLM4FastRouteMixin
from .glm4_fast_spec import GLM4FastSpecMixin
from .glm4_offset_mixin import GLM4OffsetsMixin as _glm4_offset_mixin  # noqa: F401
from .glm4_offsets import _UTF8_CONTINUATION as _glm4_offsets  # noqa: F401
from .glm4_padding import GLM4PaddingMixin
from .glm4_rows import GLM4RowBuilder as _glm4_rows  # noqa: F401
from .glm4_spans import _ROLE_LITERAL as _glm4_spans  # noqa: F401
from .glm4_spec import GLM4SpecMixin as _glm4_spec  # noqa: F401
from .glm4_state import _Cache as _glm4_state  # noqa: F401
from .glm4_templates import _GENERATION as _glm4_templates  # noqa: F401
from .glm4_tokens import PREFIX_TEXT as _glm4_tokens  # noqa: F401
from .glm4_vocab import load_tiktoken_ranks as _glm4_vocab  # noqa: F401

__all__ = ["ChatGLM4TokenizerFast", "GLM4FastFixMixin"]


# ------------------------------------------------------------------------------------------------ mixin
class GLM4FastFixMixin(GLM4FastRouteMixin, GLM4ChatMixin, GLM4PaddingMixin, GLM4FastSpecMixin):
    """The GLM-4 fix as methods to lay over a transformers fast tokenizer class (put it first in the bases).

    The layers, in MRO order: the accelerator (``GLM4FastRouteMixin``: plain texts of a GLM-4-standard
    ``tokenizer.json`` through the row builder, with lazy Rust encodings), the chat features (``GLM4ChatMixin``:
    ``apply_chat_template`` gains assistant-token masks -- GLM-4 templates without ``{% generation %}`` markers are
    swapped for their marked copies -- and, on transformers 4.x, ``sanitize_control_tokens``, as on the slow
    tokenizer), the slow tokenizer's exact padding rules for ``pad()`` (collators; ``GLM4PaddingMixin``) and the
    fast spec (``GLM4FastSpecMixin``: the prefix rule on the Rust tokenizer's own encodings, which alone is a
    complete fixed fast tokenizer). The accelerator comes before the chat mixin so that its
    ``_glm4_mask_literals`` is the one used (the chat mixin's own is a default that knows no literals).
    """


class ChatGLM4TokenizerFast(GLM4FastFixMixin, PreTrainedTokenizerFast):
    """A GLM-4 fast tokenizer (``tokenizer.json``) with ``[gMASK]<sop>`` added only when missing.

    Loads any transformers-native GLM-4 tokenizer folder::

        tok = ChatGLM4TokenizerFast.from_pretrained("path/to/glm-4-9b-chat-hf")
        batch = tok([tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in chats],
                    padding=True, return_tensors="pt")

    ``save_pretrained`` writes this module and the bundle modules it imports next to ``tokenizer.json`` so the folder
    loads the fixed class through ``AutoTokenizer.from_pretrained(folder, trust_remote_code=True)``.
    """

    _auto_class = "AutoTokenizer"
    model_input_names = ["input_ids", "attention_mask"]
