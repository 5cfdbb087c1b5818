"""pytest plugin (entry point ``pytest11``): ``--glm4-tokenizer PATH`` and the ``glm4_tokenizer`` fixture.

Loaded by pytest whenever glm4-tokfix is installed, so it imports nothing heavy
at import time.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("glm4-tokfix")
    group.addoption(
        "--glm4-tokenizer",
        action="store",
        default=None,
        metavar="PATH",
        help="GLM-4 model folder or hub id to load (with the glm4-tokfix fix) for the glm4_tokenizer fixture; "
        "default: the embedded tiny GLM-4 tokenizer",
    )


@pytest.fixture(scope="session")
def glm4_tokenizer(request: pytest.FixtureRequest):
    """The GLM-4 tokenizer named by ``--glm4-tokenizer`` (default: the embedded tiny one), with the fix."""
    import glm4_tokfix

    path = request.config.getoption("--glm4-tokenizer")
    if path is None:
        return glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(glm4_tokfix.TINY_GLM4_DIR)
    return glm4_tokfix.from_pretrained(path)
