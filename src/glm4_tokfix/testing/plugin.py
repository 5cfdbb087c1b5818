"""pytest plugin (entry point ``pytest11``): ``--glm4-tokenizer``, ``--glm4-unpatched``, the ``glm4_tokenizer`` fixture.

Loaded by pytest whenever glm4-tokfix is installed, so it imports nothing
heavy at import time (only pytest and the standard library) and changes
nothing for a run that does not use it: the fixture loads a tokenizer only
when a test asks for it, and hypothesis profiles are registered only when
``--hypothesis-profile`` names one of ours.

The ready battery, for your CI::

    pytest --pyargs glm4_tokfix.testing.suite --glm4-tokenizer path/to/glm-4-9b-chat
    pytest --pyargs glm4_tokfix.testing.suite --glm4-tokenizer path/to/folder --glm4-unpatched  # diagnose its own code
    pytest --pyargs glm4_tokfix.testing.suite --hypothesis-profile glm4-ci   # or glm4-quick, glm4-thorough, ci, ...

In your own tests::

    def test_my_batches(glm4_tokenizer):
        from glm4_tokfix.testing import assert_batch_matches_single
        assert_batch_matches_single(glm4_tokenizer, ["a", "bcd"], padding=True, padding_side="right")
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytest

#: Hypothesis profiles this plugin provides. All have no deadline and skip hypothesis' explain
#: phase (it traces every executed line, which makes a failing tokenizer run several times slower).
PROFILES: Dict[str, Dict[str, Any]] = {
    "glm4-quick": {"max_examples": 10, "report_multiple_bugs": False},
    "glm4-ci": {"max_examples": 200, "derandomize": True, "database": None, "report_multiple_bugs": False},
    "glm4-thorough": {"max_examples": 1000},
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("glm4-tokfix")
    group.addoption(
        "--glm4-tokenizer",
        action="store",
        default=None,
        metavar="PATH",
        help="GLM-4 model folder or hub id for the glm4_tokenizer fixture, loaded with the glm4-tokfix fix "
        "(default: the embedded tiny GLM-4 tokenizer)",
    )
    group.addoption(
        "--glm4-unpatched",
        action="store_true",
        default=False,
        help="load --glm4-tokenizer with its own remote code and without the fix, to diagnose it",
    )


def register_profiles() -> None:
    """Register the ``glm4-*`` hypothesis profiles (a profile already registered under that name is kept)."""
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis.errors import InvalidArgument

    phases = [phase for phase in Phase if phase.name != "explain"]
    for name, values in PROFILES.items():
        try:
            settings.get_profile(name)
        except InvalidArgument:
            settings.register_profile(
                name,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                phases=phases,
                **values,
            )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("glm4_unpatched") and not config.getoption("glm4_tokenizer"):
        raise pytest.UsageError(
            "--glm4-unpatched needs --glm4-tokenizer PATH: the folder whose own remote code to load without the fix"
        )
    # runs before hypothesis' own pytest_configure, which loads the profile named here
    if config.getoption("hypothesis_profile", default=None) in PROFILES:
        register_profiles()


def pytest_report_header(config: pytest.Config) -> Optional[List[str]]:
    path = config.getoption("glm4_tokenizer")
    if path is None:
        return None
    how = "its own remote code, unpatched" if config.getoption("glm4_unpatched") else "with the glm4-tokfix fix"
    return [f"glm4-tokfix: glm4_tokenizer = {path} ({how})"]


@pytest.fixture(scope="session")
def glm4_tokenizer(request: pytest.FixtureRequest) -> Any:
    """The GLM-4 tokenizer named by ``--glm4-tokenizer`` (default: the embedded tiny one), with the fix.

    With ``--glm4-unpatched`` it is the folder's own remote-code class without
    the fix. A tokenizer that cannot be loaded fails each test using it with
    one line naming the path and the error.
    """
    from glm4_tokfix.testing.loading import load_tokenizer

    path = request.config.getoption("glm4_tokenizer")
    unpatched = request.config.getoption("glm4_unpatched")
    try:
        tokenizer, _ = load_tokenizer(path, unpatched=unpatched)
    except Exception as exc:
        message = f"--glm4-tokenizer {path}: cannot load a GLM-4 tokenizer: {type(exc).__name__}: {exc}"
        pytest.fail(message, pytrace=False)
    return tokenizer
