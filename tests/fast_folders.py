"""Fast (tokenizer.json) GLM-4 tokenizer folders, built at test time from a glm-4-9b-chat vocabulary.

Nothing is downloaded: ``glm4_tokfix.convert.write_fast_folder`` runs transformers' tiktoken converter on the
``tokenizer.model`` of the embedded tiny vocabulary or of the real one. Two styles, as on the hub:
``"chat-hf"`` (glm-4-9b-chat-hf: the post-processor adds ``[gMASK]<sop>``) and ``"0414"`` (GLM-4-0414/4.5: it
adds nothing; only the chat template writes the prefix).
"""

from __future__ import annotations

from pathlib import Path

from glm4_tokfix.convert import STYLES, write_fast_folder

__all__ = ["STYLES", "make_fast_folder"]


def make_fast_folder(dest: Path, vocab_dir: Path | str, style: str) -> Path:
    """Write a transformers-native GLM-4 tokenizer folder of ``style`` at ``dest`` from ``vocab_dir``."""
    return write_fast_folder(vocab_dir, dest, style)
