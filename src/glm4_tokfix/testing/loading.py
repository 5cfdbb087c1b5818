"""Load the GLM-4 tokenizer to check: the embedded tiny one, a folder or hub id with the fix, or without it.

Used by the pytest plugin (``--glm4-tokenizer``, ``--glm4-unpatched``) and by
``glm4-tokfix check``. Imports transformers only when called.

    >>> tok, how = load_tokenizer()                              # embedded tiny GLM-4, fixed
    >>> tok, how = load_tokenizer("path/to/glm-4-9b-chat")       # the folder, with the fix
    >>> tok, how = load_tokenizer("path/to/glm-4-9b-chat", unpatched=True)  # its own remote code
    >>> how
    "the folder's own remote code (tokenization_chatglm.py), unpatched"

A folder holding ``tokenizer.json`` and no remote code (glm-4-9b-chat-hf, GLM-4-0414, GLM-4.5) is loaded as
transformers' built-in fast tokenizer and patched (``unpatched``: as it is).

With the fix, a folder whose ``tokenizer_config.json`` maps ``AutoTokenizer``
to a remote-code module that is present is loaded through
``glm4_tokfix.from_pretrained`` (its own class with the fix laid over it); a
folder holding only the vocabulary (``tokenizer.model`` and
``tokenizer_config.json``) is loaded as ``glm4_tokfix.ChatGLM4Tokenizer``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional, Tuple

from glm4_tokfix.remote_code.glm4_tokens import PREFIX_TOKENS

TINY_DESCRIPTION = "the embedded tiny GLM-4 tokenizer (glm4_tokfix.TINY_GLM4_DIR), fixed"


def remote_code_module(folder: str) -> Optional[str]:
    """The remote-code file that ``folder``'s ``tokenizer_config.json`` maps AutoTokenizer to, if present.

    ``{"auto_map": {"AutoTokenizer": ["tokenization_chatglm.ChatGLM4Tokenizer", null]}}``
    gives ``folder/tokenization_chatglm.py`` when that file exists, else None.
    """
    config_path = os.path.join(folder, "tokenizer_config.json")
    try:
        with open(config_path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return None
    entry = (config.get("auto_map") or {}).get("AutoTokenizer") if isinstance(config, dict) else None
    if isinstance(entry, (list, tuple)):
        entry = next((e for e in entry if e), None)
    if not isinstance(entry, str) or "--" in entry or "." not in entry:
        return None  # no remote code, or code in another repository
    module_file = os.path.join(folder, entry.rsplit(".", 1)[0].replace(".", os.sep) + ".py")
    return module_file if os.path.isfile(module_file) else None


def is_minimally_patched_file(module_file: Optional[str]) -> bool:
    """Whether ``module_file`` is upstream's ``tokenization_chatglm.py`` with ``export --minimal``'s patch."""
    if not module_file:
        return False
    try:
        from glm4_tokfix.minimal_patch import is_minimally_patched
    except ModuleNotFoundError:
        return False
    try:
        with open(module_file, encoding="utf-8") as handle:
            return is_minimally_patched(handle.read())
    except (OSError, UnicodeDecodeError):
        return False


def _patching() -> Any:
    """``glm4_tokfix.patching``, or None while it is not part of the installed package."""
    try:
        import glm4_tokfix.patching as patching
    except ModuleNotFoundError as exc:
        if exc.name != "glm4_tokfix.patching":
            raise
        return None
    return patching


def load_tokenizer(name_or_path: Optional[str] = None, unpatched: bool = False) -> Tuple[Any, str]:
    """``(tokenizer, description of how it was loaded)``.

    ``name_or_path`` None means the embedded tiny tokenizer (``unpatched`` is
    then a ValueError: it has no remote code of its own). Errors from loading
    (a missing folder, a folder without a vocabulary, remote code that fails
    to import) propagate as raised by transformers.
    """
    import glm4_tokfix

    if name_or_path is None:
        if unpatched:
            raise ValueError("unpatched needs a model folder: the embedded tiny tokenizer has no remote code")
        return glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(glm4_tokfix.TINY_GLM4_DIR), TINY_DESCRIPTION
    path = os.fspath(name_or_path)
    is_folder = os.path.isdir(path)
    module = remote_code_module(path) if is_folder else None
    if is_folder and module is None and os.path.isfile(os.path.join(path, "tokenizer.json")):
        return _load_fast_folder(path, unpatched)
    owner = "the folder" if is_folder else "the repository"
    vocabulary_only = "glm4_tokfix.ChatGLM4Tokenizer on the folder's vocabulary"
    if unpatched:
        if is_folder and module is None:
            raise ValueError(
                f"{path} has no remote code of its own (no tokenizer_config.json auto_map entry for AutoTokenizer "
                "with its module file in the folder), so there is nothing to load unpatched"
            )
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
        where = f" ({os.path.basename(module)})" if module else ""
        if module and is_minimally_patched_file(module):
            where = f" ({os.path.basename(module)}: upstream's file with glm4-tokfix's minimal patch)"
        return tokenizer, f"{owner}'s own remote code{where}, unpatched"
    if is_folder and module is None:
        return glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(path), vocabulary_only
    patching = _patching()
    if patching is None:
        if not is_folder:
            raise ValueError(f"loading {path!r} with the fix needs glm4_tokfix.patching, which is not installed")
        return glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(path), f"{vocabulary_only} (no glm4_tokfix.patching)"
    tokenizer = patching.from_pretrained(path)
    return tokenizer, f"{owner}'s remote code with the glm4-tokfix fix (glm4_tokfix.from_pretrained)"


def _load_fast_folder(path: str, unpatched: bool) -> Tuple[Any, str]:
    """A transformers-native GLM-4 folder (``tokenizer.json``, no remote code): built-in fast class, fixed or not."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if unpatched:
        return tokenizer, "transformers' built-in fast tokenizer (tokenizer.json), unpatched"
    patching = _patching()
    if patching is None:
        raise ValueError(f"loading {path!r} with the fix needs glm4_tokfix.patching, which is not installed")
    return patching.patch(tokenizer), "transformers' fast tokenizer (tokenizer.json) with the glm4-tokfix fix"


def prefix_policy(tokenizer: Any) -> str:
    """One line: whether ``tokenizer`` adds ``[gMASK]<sop>`` to a text lacking it (read from ``tokenizer("")``)."""
    prefix = tokenizer.convert_tokens_to_ids(list(PREFIX_TOKENS))
    empty = list(tokenizer("")["input_ids"])
    if empty == prefix:
        return "adds [gMASK]<sop> to texts that lack it"
    if not empty:
        return "adds no prefix (the chat template writes [gMASK]<sop>)"
    return f"adds {empty} to an empty text"
