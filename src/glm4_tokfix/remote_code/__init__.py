"""The bundle a model folder receives: flat modules importing each other relatively, never ``glm4_tokfix``.

``BUNDLE_FILES`` names them; ``glm4-tokfix patch``/``export``/``convert`` and a patched tokenizer's
``save_pretrained`` write every one of them beside the folder's tokenizer files. Nothing here imports
transformers: reading ``BUNDLE_FILES`` stays cheap.
"""

from __future__ import annotations

from typing import Dict, Tuple

__all__ = ["BUNDLE_FILES", "SLOW_MODULE", "FAST_MODULE", "bundle_bytes"]

#: the module ``auto_map`` names for the slow class, and the one for the fast class
SLOW_MODULE = "tokenization_glm4_tokfix"
FAST_MODULE = "tokenization_glm4_tokfix_fast"

#: the files a patched (or saved) model folder receives: the whole bundle, in import order
BUNDLE_FILES: Tuple[str, ...] = (
    "glm4_tokens.py",
    "glm4_state.py",
    "glm4_spec.py",
    "glm4_encoders.py",
    "glm4_vocab.py",
    "glm4_offsets.py",
    "glm4_offset_mixin.py",
    "glm4_padding.py",
    "glm4_rows.py",
    "glm4_spans.py",
    "glm4_templates.py",
    "glm4_chat.py",
    "glm4_fast_encoder.py",
    "glm4_fast_spec.py",
    "glm4_fast_route.py",
    SLOW_MODULE + ".py",
    FAST_MODULE + ".py",
)


def bundle_bytes() -> Dict[str, bytes]:
    """Each bundle file's bytes, by file name (read from the installed package, not imported)."""
    import importlib.resources

    folder = importlib.resources.files(__name__)
    return {name: folder.joinpath(name).read_bytes() for name in BUNDLE_FILES}
