"""Shared fixtures: the embedded tiny tokenizer, the real glm-4-9b-chat one when present, hypothesis profiles."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# Nothing in the test suite may reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Remote code loaded by the tests goes to a modules cache of this process's own (each pytest-xdist worker
# is a process of its own), never the user's ~/.cache/huggingface/modules: transformers caches a folder's
# module under the folder's basename, so a shared cache would mix our test folders with anyone else's.
# transformers reads HF_MODULES_CACHE once, when it is first imported: nothing above imports it.
_RUN_TMP = tempfile.mkdtemp(prefix="glm4-tokfix-tests-")
atexit.register(shutil.rmtree, _RUN_TMP, ignore_errors=True)
os.environ["HF_MODULES_CACHE"] = os.path.join(_RUN_TMP, "hf_modules")
# Files glm4-tokfix builds once (fastokens' tokenizer.json) go to this run's own cache, never the user's.
os.environ["GLM4_TOKFIX_CACHE_DIR"] = os.path.join(_RUN_TMP, "glm4_tokfix_cache")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import glm4_tokfix  # noqa: E402
from glm4_tokfix.testing.runner import missing_package  # noqa: E402
from locations import HAVE_REAL, REAL_DIR, REAL_SKIP_REASON, ROOT, TINY_DIR, requires_real  # noqa: E402, F401

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=150, **_common)
settings.register_profile("dev", max_examples=40, **_common)
settings.register_profile("quick", max_examples=10, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_report_header(config: pytest.Config) -> list[str]:
    import tiktoken
    import transformers

    return [
        f"glm4-tokfix {glm4_tokfix.__version__}, transformers {transformers.__version__}, "
        f"tiktoken {tiktoken.__version__}",
        f"real vocabulary: {REAL_DIR if HAVE_REAL else 'absent (real_vocab tests skip)'}",
        f"hypothesis profile: {settings._current_profile}",
    ]


# Optional packages of the test extra (and of transformers' own features, such as jinja2 for chat
# templates). A test or fixture that stops on an ImportError for one of them while it is not installed
# is skipped with that reason instead of failing: the suite runs with only the package, pytest and
# hypothesis. A package that is installed but fails to import still fails the test.
OPTIONAL_PACKAGES = ("jinja2", "torch", "numpy", "datasets", "trl", "accelerate", "fastokens", "tokenizers", "dill")


def _skip_when_optional_missing():
    try:
        return (yield)
    except ImportError as exc:
        name = missing_package(exc, OPTIONAL_PACKAGES)
        if name is None:
            raise
        pytest.skip(f"needs {name}, which is not installed ({exc})")


pytest_runtest_setup = pytest.hookimpl(wrapper=True)(lambda item: (yield from _skip_when_optional_missing()))
pytest_runtest_call = pytest.hookimpl(wrapper=True)(lambda item: (yield from _skip_when_optional_missing()))


@pytest.fixture(scope="session")
def tiny_tok():
    return glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(TINY_DIR)


@pytest.fixture(scope="session")
def real_tok():
    if not HAVE_REAL:
        pytest.skip(REAL_SKIP_REASON)
    return glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(REAL_DIR)


@pytest.fixture(scope="session", params=["tiny", pytest.param("real", marks=pytest.mark.real_vocab)])
def vocab_dir(request) -> Path:
    """Each vocabulary the suite runs on: the embedded tiny one, and the real one when present."""
    if request.param == "real":
        if not HAVE_REAL:
            pytest.skip(REAL_SKIP_REASON)
        return REAL_DIR
    return TINY_DIR


@pytest.fixture(scope="session")
def tok(vocab_dir, request):
    """The fixed tokenizer on each vocabulary (shared per session: loading the real one takes a second)."""
    cache = request.config.__dict__.setdefault("_glm4_tok_cache", {})
    if vocab_dir not in cache:
        cache[vocab_dir] = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(vocab_dir)
    return cache[vocab_dir]


@pytest.fixture(scope="session")
def standin(tmp_path_factory):
    """revision -> our stand-in of that upstream revision on the tiny vocabulary, loaded as remote code."""
    from transformers import AutoTokenizer

    from standins import make_model_folder

    cache = {}

    def load(revision):
        if revision not in cache:
            folder = make_model_folder(tmp_path_factory.mktemp(revision), revision, TINY_DIR)
            cache[revision] = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True)
        return cache[revision]

    return load


@pytest.fixture(scope="session")
def fast_folder(tmp_path_factory):
    """(vocab, style) -> a transformers-native GLM-4 tokenizer folder built at test time (cached per session).

    ``vocab`` is ``"tiny"`` or ``"real"`` (skips when the real vocabulary is absent); ``style`` is ``"chat-hf"``
    or ``"0414"`` (see tests/fast_folders.py).
    """
    from fast_folders import make_fast_folder

    cache = {}

    def build(vocab: str, style: str) -> Path:
        if vocab == "real" and not HAVE_REAL:
            pytest.skip(REAL_SKIP_REASON)
        key = (vocab, style)
        if key not in cache:
            source = REAL_DIR if vocab == "real" else TINY_DIR
            cache[key] = make_fast_folder(tmp_path_factory.mktemp(f"fast-{vocab}-{style}"), source, style)
        return cache[key]

    return build
