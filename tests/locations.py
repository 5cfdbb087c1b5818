"""Where the tests find their vocabularies: the embedded tiny one and the real glm-4-9b-chat one (when present).

Import these from here, not from ``conftest`` (pytest imports every folder's conftest.py as a module named
``conftest``, so importing names from ``conftest`` can find another folder's).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import glm4_tokfix

ROOT = Path(__file__).resolve().parent.parent
REAL_DIR = Path(os.environ.get("GLM4_TOKFIX_REAL_VOCAB", ROOT.parent / "shared" / "glm-4-9b-chat"))
HAVE_REAL = (REAL_DIR / "tokenizer.model").is_file() and (REAL_DIR / "tokenizer_config.json").is_file()
REAL_SKIP_REASON = (
    f"the real glm-4-9b-chat vocabulary is not at {REAL_DIR} "
    "(set GLM4_TOKFIX_REAL_VOCAB to a folder holding tokenizer.model and tokenizer_config.json)"
)
TINY_DIR = Path(glm4_tokfix.TINY_GLM4_DIR)

requires_real = pytest.mark.skipif(not HAVE_REAL, reason=REAL_SKIP_REASON)
