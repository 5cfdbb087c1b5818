"""The property battery and its runner: quiet on the fixed tokenizer, every property fires on a broken one."""

from __future__ import annotations

import json

import pytest

from glm4_tokfix.testing.properties import PROPERTIES, by_name, select
from glm4_tokfix.testing.runner import run_properties, run_property
from strategies import SPECIAL_LITERALS

pytest.importorskip("jinja2", reason="the battery runs the chat-template property (jinja2)")

ALL = {p.name for p in PROPERTIES}
# what upstream's current revision gets right: batches padded on its one (left) side, and encode()
CURRENT_HOLDS = {"batch_matches_single_left", "encode_consistent"}


def violated(report):
    return {r.name for r in report.results if r.violations}


def test_battery_is_quiet_on_the_fix(tok):
    report = run_properties(tok, examples=25, seed=0)
    assert [r.name for r in report.results] == [p.name for p in PROPERTIES]
    assert all(r.examples == 25 for r in report.results), [(r.name, r.examples) for r in report.results]
    assert report.ok, [(r.name, r.counterexample.message) for r in report.results if r.counterexample]
    assert report.total_examples == 25 * len(PROPERTIES)


def test_battery_is_quiet_on_the_fix_loaded_as_remote_code(standin):
    assert run_properties(standin("fixed"), examples=15, seed=1).ok


def test_every_property_but_two_fires_on_upstream_current(standin):
    report = run_properties(standin("current"), examples=40, seed=0)
    assert violated(report) == ALL - CURRENT_HOLDS
    for r in report.results:
        if r.violations:
            assert r.counterexample is not None and r.counterexample.message
            assert r.counterexample.call.startswith(by_name(r.name).helper.__name__ + "(tokenizer")


def test_every_property_fires_on_upstream_mid2024(standin):
    report = run_properties(standin("mid2024"), examples=10, seed=0)
    assert violated(report) == ALL
    batch = next(r for r in report.results if r.name == "batch_matches_single_right")
    assert batch.violations == batch.examples  # TypeError on every padded call, each one counted
    assert "raised TypeError" in batch.counterexample.message
    assert "padding_side" in batch.counterexample.message


def test_counterexamples_are_shrunk(standin):
    tokenizer = standin("current")
    prefix = run_property(tokenizer, by_name("prefix_idempotent"), examples=30, seed=0)
    assert prefix.counterexample.shrunk
    assert prefix.counterexample.arguments == {"text": ""}  # any text shows the double prefix: the empty one

    decode = run_property(tokenizer, by_name("decode_round_trip"), examples=60, seed=0)
    text = decode.counterexample.arguments["text"]
    assert decode.counterexample.shrunk
    assert any(literal in text for literal in SPECIAL_LITERALS)  # the bug is around special tokens
    assert len(text) <= 20, text

    right = run_property(tokenizer, by_name("batch_matches_single_right"), examples=60, seed=0)
    arguments = right.counterexample.arguments
    assert arguments["padding_side"] == "right" and len(arguments["texts"]) == 2, arguments
    assert "padded on the right" in right.counterexample.message


def test_runs_are_reproducible_with_a_seed(standin):
    tokenizer = standin("current")
    props = select(["truncation_exact", "decode_round_trip"])
    first = run_properties(tokenizer, props, examples=30, seed=7).as_dict()
    second = run_properties(tokenizer, props, examples=30, seed=7).as_dict()
    for report in (first, second):
        report.pop("seconds")
        for prop in report["properties"]:
            prop.pop("seconds")
    assert first == second
    json.dumps(first)  # the report is plain JSON data


def test_shrinking_respects_its_budget(standin):
    result = run_property(standin("current"), by_name("decode_round_trip"), examples=40, seed=0, max_shrink_calls=0)
    assert result.violations and result.counterexample is not None
    assert result.shrink_calls == 0


def test_examples_must_be_positive(tiny_tok):
    with pytest.raises(ValueError, match="examples must be a positive integer"):
        run_property(tiny_tok, PROPERTIES[0], examples=0)


def test_select_names_unknown_properties():
    assert [p.name for p in select(["pair_encoding", "prefix_idempotent"])] == ["prefix_idempotent", "pair_encoding"]
    with pytest.raises(ValueError, match="unknown property 'nope'; known: prefix_idempotent"):
        select(["nope"])
