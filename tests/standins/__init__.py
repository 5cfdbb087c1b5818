"""Stand-ins for upstream GLM-4 tokenizer revisions, and model folders that load them as remote code.

``make_model_folder(dest, revision, vocab_dir)`` copies ``tokenizer.model`` and
``tokenizer_config.json`` from ``vocab_dir`` (the embedded tiny tokenizer or
the real glm-4-9b-chat one) and writes the module of ``revision`` as
``tokenization_chatglm.py``, so ``AutoTokenizer.from_pretrained(dest,
trust_remote_code=True)`` loads it the way users load glm-4-9b-chat:

* ``"current"``  -- upstream's current behaviour (``upstream_current.py``)
* ``"mid2024"``  -- the mid-2024 revision (``upstream_mid2024.py``)
* ``"fixed"``    -- our bundle (``glm4_tokfix/remote_code``), with a ``tokenization_chatglm.py`` that re-exports
  its ``ChatGLM4Tokenizer`` (a test folder only: glm4-tokfix itself never writes that name)
"""

from __future__ import annotations

import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
REVISIONS = ("current", "mid2024")


def module_source(revision: str) -> Path:
    if revision == "fixed":
        import glm4_tokfix.remote_code.tokenization_glm4_tokfix as fixed

        return Path(fixed.__file__)
    if revision not in REVISIONS:
        raise ValueError(f"unknown revision {revision!r}; expected one of {REVISIONS + ('fixed',)}")
    return HERE / f"upstream_{revision}.py"


def make_model_folder(dest: Path, revision: str, vocab_dir: Path | str) -> Path:
    """Lay out a glm-4-9b-chat-like tokenizer folder at ``dest`` whose remote code is ``revision``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copyfile(Path(vocab_dir) / name, dest / name)
    if revision == "fixed":
        from glm4_tokfix.remote_code import bundle_bytes

        for name, data in bundle_bytes().items():
            (dest / name).write_bytes(data)
        (dest / "tokenization_chatglm.py").write_text("from .tokenization_glm4_tokfix import ChatGLM4Tokenizer  # noqa: F401\n")
        return dest
    shutil.copyfile(module_source(revision), dest / "tokenization_chatglm.py")
    return dest
