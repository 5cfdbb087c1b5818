"""The pytest plugin (``--glm4-tokenizer``, ``--glm4-unpatched``, ``glm4_tokenizer``) and the ready battery.

Every run happens in a subprocess (pytester.runpytest_subprocess), so the
hypothesis profile a run loads cannot leak into this session.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from glm4_tokfix.testing.properties import PROPERTIES
from locations import TINY_DIR

pytest.importorskip("jinja2", reason="glm4-tokfix check and the pytest battery render chat templates (jinja2)")

pytest_plugins = ["pytester"]

NAMES = [p.name for p in PROPERTIES]
CURRENT_HOLDS = {"batch_matches_single_left", "encode_consistent"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from standins import make_model_folder

    return {rev: make_model_folder(tmp_path_factory.mktemp(rev), rev, TINY_DIR) for rev in ("current", "mid2024")}


def outcomes(result) -> dict:
    """test name -> PASSED/FAILED/ERROR, from a ``-v`` run."""
    found = re.findall(r"::(test_\w+) (PASSED|FAILED|ERROR)", result.stdout.str())
    return dict(found)


def test_plugin_imports_nothing_heavy():
    code = (
        "import sys, glm4_tokfix.testing.plugin\n"
        "heavy = ('transformers', 'hypothesis', 'tiktoken', 'numpy', 'torch', 'jinja2', 'regex',\n"
        "         'glm4_tokfix.testing.loading', 'glm4_tokfix.testing.properties',\n"
        "         'glm4_tokfix.remote_code.tokenization_glm4_tokfix')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_runs_that_do_not_use_it_stay_untouched(pytester):
    pytester.makepyfile(
        test_plain="""
        import sys

        def test_nothing_loaded():
            assert "transformers" not in sys.modules
            assert "hypothesis" not in sys.modules
            assert "glm4_tokfix.testing.loading" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "glm4-tokfix:" not in result.stdout.str()  # no report header line either


def test_help_lists_the_options(pytester):
    result = pytester.runpytest_subprocess("--help")
    out = result.stdout.str()
    assert "--glm4-tokenizer=PATH" in out
    assert "--glm4-unpatched" in out


def test_unpatched_needs_a_tokenizer(pytester):
    result = pytester.runpytest_subprocess("--glm4-unpatched")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--glm4-unpatched needs --glm4-tokenizer PATH" in result.stderr.str()


def test_fixture_default_is_the_fixed_embedded_tokenizer(pytester):
    pytester.makepyfile(
        test_fixture="""
        import glm4_tokfix

        def test_default(glm4_tokenizer):
            assert glm4_tokfix.is_patched(glm4_tokenizer)
            assert glm4_tokenizer.name_or_path == glm4_tokfix.TINY_GLM4_DIR
            batch = glm4_tokenizer(["[gMASK]<sop><|user|>\\nhi", "x"], padding=True, padding_side="right")
            assert batch["input_ids"][1][-1] == glm4_tokenizer.pad_token_id
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_fixture_loads_a_folder_with_or_without_the_fix(pytester, folders):
    pytester.makepyfile(
        test_fixture="""
        import glm4_tokfix

        def test_loaded(glm4_tokenizer, request):
            unpatched = request.config.getoption("glm4_unpatched")
            assert glm4_tokfix.is_patched(glm4_tokenizer) is not unpatched
            assert type(glm4_tokenizer).__module__.startswith(("transformers_modules", "glm4_tokfix"))
            ids = glm4_tokenizer("[gMASK]<sop>hi").input_ids
            assert (ids[:4] == ids[:2] * 2) is unpatched  # upstream adds the prefix a second time
        """
    )
    folder = str(folders["current"])
    fixed = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--glm4-tokenizer", folder)
    fixed.assert_outcomes(passed=1)
    fixed.stdout.fnmatch_lines([f"glm4-tokfix: glm4_tokenizer = {folder} (with the glm4-tokfix fix)"])
    raw = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--glm4-tokenizer", folder, "--glm4-unpatched")
    raw.assert_outcomes(passed=1)
    raw.stdout.fnmatch_lines([f"glm4-tokfix: glm4_tokenizer = {folder} (its own remote code, unpatched)"])


def test_fixture_reports_a_tokenizer_it_cannot_load(pytester, tmp_path):
    pytester.makepyfile(test_fixture="def test_x(glm4_tokenizer):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--glm4-tokenizer", str(tmp_path / "nope"))
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*--glm4-tokenizer {tmp_path / 'nope'}: cannot load a GLM-4 tokenizer: *"])


def test_glm4_profiles_set_the_number_of_examples(pytester):
    pytester.makepyfile(
        test_count="""
        from hypothesis import given, strategies as st

        CALLS = []

        @given(st.integers())
        def test_counted(n):
            CALLS.append(n)

        def test_zz_count():
            assert len(CALLS) == 10
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--hypothesis-profile", "glm4-quick")
    result.assert_outcomes(passed=2)


def test_battery_passes_on_the_embedded_tokenizer(pytester):
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-v", "--pyargs", "glm4_tokfix.testing.suite", "--hypothesis-profile", "glm4-quick"
    )
    result.assert_outcomes(passed=len(NAMES))
    assert outcomes(result) == {f"test_{name}": "PASSED" for name in NAMES}


def test_battery_passes_on_upstream_loaded_with_the_fix(pytester, folders):
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--pyargs", "glm4_tokfix.testing.suite",
        "--glm4-tokenizer", str(folders["mid2024"]), "--hypothesis-profile", "glm4-quick",
    )  # fmt: skip
    result.assert_outcomes(passed=len(NAMES))


def test_battery_fails_on_unpatched_upstream(pytester, folders):
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-v", "--pyargs", "glm4_tokfix.testing.suite",
        "--glm4-tokenizer", str(folders["current"]), "--glm4-unpatched",
        "--hypothesis-profile", "glm4-quick", "--hypothesis-seed", "0",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    got = outcomes(result)
    assert {name for name, outcome in got.items() if outcome == "PASSED"} == {f"test_{n}" for n in CURRENT_HOLDS}
    assert {name for name, outcome in got.items() if outcome == "FAILED"} == {
        f"test_{n}" for n in NAMES if n not in CURRENT_HOLDS
    }
    out = result.stdout.str()
    assert "the prefix is added a second time" in out
    assert "padded on the right" in out
    assert "raised KeyError: '<eos>'" in out
