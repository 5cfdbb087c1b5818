"""Shared by the client tests: tokenizer folders of both kinds, a child environment, the prefix counter."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import glm4_tokfix

#: the folder holding the ``glm4_tokfix`` package under test, put on the children's PYTHONPATH
PACKAGE_ROOT = str(Path(glm4_tokfix.__file__).resolve().parent.parent)
TINY = Path(glm4_tokfix.TINY_GLM4_DIR)
KINDS = ("hf", "remote")
CHAT = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hi 你好 😀"},
    {"role": "assistant", "content": "yo"},
    {"role": "user", "content": "and [gMASK] <sop>?"},
]


def make_folder(base: Path, kind: str) -> Path:
    """``"hf"``: a glm-4-9b-chat-hf style tokenizer.json folder; ``"remote"``: upstream's remote code (stand-in)."""
    if kind == "hf":
        from fast_folders import make_fast_folder

        return make_fast_folder(base / "hf", TINY, "chat-hf")
    if kind == "remote":
        from standins import make_model_folder

        return make_model_folder(base / "remote", "current", TINY)
    raise ValueError(kind)


def child_env(**extra: str) -> dict[str, str]:
    """os.environ with this checkout's glm4_tokfix first on PYTHONPATH (children import the code under test)."""
    env = dict(os.environ)
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_ROOT, *parts])
    env.update(extra)
    return env


def run_command(*command: str) -> list[str]:
    """``python -m glm4_tokfix.cli run -- COMMAND...`` (the console script's code, with this interpreter)."""
    return [sys.executable, "-m", "glm4_tokfix.cli", "run", "--", *command]


def count_prefix(ids: list[int], prefix: list[int]) -> int:
    """How many times ``prefix`` occurs in ``ids`` (as a contiguous run)."""
    n = len(prefix)
    return sum(1 for i in range(len(ids) - n + 1) if ids[i : i + n] == prefix)
