"""The runner without an optional package: a property that cannot run is skipped and says why, never passed."""

from __future__ import annotations

import importlib.util

from hypothesis import strategies as st

from glm4_tokfix.check import format_table
from glm4_tokfix.testing.properties import Property
from glm4_tokfix.testing.runner import run_properties, run_property


def _needing(package: str, every: int) -> Property:
    """A property whose helper raises a transformers-style ImportError naming ``package`` on every
    ``every``-th example (and passes on the others)."""

    def needs_package(tokenizer, n):
        if n % every == 0:
            raise ImportError(f"this call requires {package} to be installed")
        assert n >= 0

    return Property(
        "needs_" + package, "needs a package", needs_package, lambda: st.fixed_dictionaries({"n": st.integers(0, 1000)})
    )


def _jinja2_absent(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jinja2" else real(name, *a))


def test_a_property_that_needs_a_missing_package_is_skipped_not_passed(tiny_tok, monkeypatch):
    _jinja2_absent(monkeypatch)
    result = run_property(tiny_tok, _needing("jinja2", every=1), examples=20, seed=0)
    assert result.skipped and "needs jinja2, which is not installed" in result.skipped
    assert (result.examples, result.violations, result.counterexample) == (0, 0, None)
    report = run_properties(tiny_tok, [_needing("jinja2", every=1)], examples=5)
    assert report.ok and [r.name for r in report.skipped] == ["needs_jinja2"]
    assert report.as_dict()["skipped"] == ["needs_jinja2"]
    table = format_table(report, ["header"])
    assert "skipped: needs jinja2" in table and "(1 property skipped: needs_jinja2)" in table.splitlines()[-1]


def test_examples_that_need_a_missing_package_are_not_counted(tiny_tok, monkeypatch):
    _jinja2_absent(monkeypatch)
    partly = run_property(tiny_tok, _needing("jinja2", every=2), examples=40, seed=0)
    assert partly.skipped is None and 0 < partly.examples < 40 and partly.violations == 0


def test_an_import_error_of_an_installed_package_is_a_violation(tiny_tok):
    result = run_property(tiny_tok, _needing("hypothesis", every=1), examples=5, seed=0)
    assert result.skipped is None and result.violations == 5
    assert "ImportError while checking" in result.counterexample.message
