"""``glm4-tokfix check``: the report, the exit codes, upstream's bugs found, the fix found clean."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from glm4_tokfix import cli
from glm4_tokfix.testing.properties import PROPERTIES
from locations import REAL_DIR, TINY_DIR, requires_real

pytest.importorskip("jinja2", reason="glm4-tokfix check and the battery render chat templates (jinja2)")

NAMES = [p.name for p in PROPERTIES]
SUMMARY = re.compile(r"^(\d+) propert(?:y|ies), (\d+) examples? in \d+\.\d s: ", re.M)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """revision -> a model folder on the tiny vocabulary whose remote code is that revision."""
    from standins import make_model_folder

    revisions = ("current", "mid2024", "fixed")
    return {rev: make_model_folder(tmp_path_factory.mktemp(rev), rev, TINY_DIR) for rev in revisions}


def check(capsys, *argv):
    """Run ``glm4-tokfix check ARGV`` in-process: (exit code, stdout, stderr)."""
    code = cli.main(["check", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def check_json(capsys, *argv):
    code, out, err = check(capsys, *argv, "--json")
    return code, json.loads(out), err


def test_embedded_tokenizer_passes_with_a_table(capsys):
    code, out, err = check(capsys, "--examples", 12, "--seed", 0)
    assert code == 0, out
    assert "glm4-tokfix check: embedded tiny GLM-4 tokenizer" in out
    assert re.search(r"^property\s+examples\s+violations\s+first counterexample$", out, re.M)
    for name in NAMES:
        assert re.search(rf"^{name}\s+12\s+0\s+-$", out, re.M), name
    match = SUMMARY.search(out)
    assert match and match.group(1, 2) == (str(len(NAMES)), str(12 * len(NAMES)))
    assert out.rstrip().endswith("no violations (seed 0)")
    # progress on stderr, one line per property when stderr is not a terminal
    assert f"[1/{len(NAMES)}] {NAMES[0]}: 12 examples, 0 violations" in err


def test_json_report(capsys):
    code, report, err = check_json(capsys, "--examples", 8, "--seed", 3)
    assert code == 0
    assert report["ok"] is True and report["tokenizer"] is None and report["unpatched"] is False
    assert report["seed"] == 3 and report["examples_per_property"] == 8
    assert [p["name"] for p in report["properties"]] == NAMES
    for prop in report["properties"]:
        assert (prop["examples"], prop["violations"], prop["counterexample"]) == (8, 0, None), prop
    assert report["total_examples"] == 8 * len(NAMES) and report["total_violations"] == 0
    assert isinstance(report["seconds"], float)
    assert SUMMARY.search(err)  # the timing line goes to stderr when stdout is JSON


def test_unpatched_upstream_shows_double_prefix_padding_side_and_decode(capsys, folders):
    code, report, _ = check_json(capsys, folders["current"], "--unpatched", "--examples", 40, "--seed", 0)
    assert code == 1 and report["ok"] is False and report["unpatched"] is True
    found = {p["name"]: p for p in report["properties"] if p["violations"]}
    assert {"prefix_idempotent", "batch_matches_single_right", "decode_round_trip"} <= set(found)
    assert "the prefix is added a second time" in found["prefix_idempotent"]["counterexample"]["message"]
    assert "padded on the right" in found["batch_matches_single_right"]["counterexample"]["message"]
    # transformers 4.x inserts spaces around special tokens, 5.x drops/repeats text: both are decode violations
    assert "does not give back the text" in found["decode_round_trip"]["counterexample"]["message"]
    assert all(p["counterexample"]["shrunk"] for p in found.values())
    assert report["total_violations"] == sum(p["violations"] for p in report["properties"])


def test_unpatched_upstream_table_lists_violations_and_the_seed(capsys, folders):
    code, out, _ = check(capsys, folders["current"], "--unpatched", "--examples", 20, "--seed", 4,
                         "--property", "prefix_idempotent", "--property", "encode_consistent")  # fmt: skip
    assert code == 1
    assert re.search(r"^prefix_idempotent\s+20\s+\d+\s+text=''$", out, re.M), out
    assert re.search(r"^encode_consistent\s+20\s+0\s+-$", out, re.M), out
    assert "Violations (first counterexample of each, shrunk):" in out
    assert "assert_prefix_idempotent(tokenizer, text='')" in out
    assert "loaded: the folder's own remote code (tokenization_chatglm.py), unpatched" in out
    assert re.search(r"1 property violated, \d+ violations \(seed 4; rerun with --seed 4 to reproduce\)", out)


def test_mid2024_type_errors_are_violations_not_a_crash(capsys, folders):
    code, report, _ = check_json(capsys, folders["mid2024"], "--unpatched", "--examples", 6, "--seed", 0)
    assert code == 1
    assert all(p["violations"] for p in report["properties"])
    batch = next(p for p in report["properties"] if p["name"] == "batch_matches_single_left")
    assert batch["violations"] == 6
    assert "raised TypeError" in batch["counterexample"]["message"]
    assert "padding_side" in batch["counterexample"]["message"]


@pytest.mark.parametrize("revision", ["current", "mid2024", "fixed"])
def test_folders_loaded_with_the_fix_pass(capsys, folders, revision):
    code, report, _ = check_json(capsys, folders[revision], "--examples", 10, "--seed", 0)
    assert code == 0, [p["counterexample"] for p in report["properties"] if p["counterexample"]]
    assert "glm4_tokfix.from_pretrained" in report["loaded"]
    assert report["tokenizer"] == str(folders[revision].resolve())


def test_vocabulary_only_folder(capsys, tmp_path):
    for name in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copyfile(TINY_DIR / name, tmp_path / name)
    code, report, _ = check_json(capsys, tmp_path, "--examples", 5, "--seed", 0, "--property", "prefix_idempotent")
    assert code == 0 and "ChatGLM4Tokenizer on the folder's vocabulary" in report["loaded"]
    code, _out, err = check(capsys, tmp_path, "--unpatched")
    assert code == 2 and "has no remote code of its own" in err


def _assert_one_line_error(err, fragment):
    assert "Traceback" not in err
    assert fragment in err, err
    assert err.startswith("glm4-tokfix check: error: ") or "error: argument" in err


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["{missing}"], "no such folder: "),
        (["--unpatched"], "--unpatched needs MODEL_DIR"),
        (["{file}"], "not a folder: "),
        (["{empty}"], "not a GLM-4 tokenizer folder: "),
        (["{broken}"], "cannot load a GLM-4 tokenizer from "),
        (["--property", "nope"], "unknown property 'nope'"),
    ],
)
def test_usage_errors_exit_2(capsys, tmp_path, argv, fragment):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "tokenizer.model").write_text("not base64 at all\n")
    shutil.copyfile(TINY_DIR / "tokenizer_config.json", tmp_path / "broken" / "tokenizer_config.json")
    names = {"missing": tmp_path / "missing", "file": tmp_path / "file.txt", "empty": tmp_path / "empty",
             "broken": tmp_path / "broken"}  # fmt: skip
    code, out, err = check(capsys, *[a.format(**names) for a in argv])
    assert code == 2 and out == ""
    _assert_one_line_error(err, fragment)
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_examples_must_be_positive(capsys, value):
    with pytest.raises(SystemExit) as info:
        cli.main(["check", "--examples", value])
    assert info.value.code == 2
    _assert_one_line_error(capsys.readouterr().err, "argument --examples/-n: must be a positive integer")


def test_nothing_is_written_to_the_working_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, _ = check(capsys, "--examples", 5, "--property", "decode_round_trip")
    assert code == 0
    assert list(tmp_path.iterdir()) == []  # no .hypothesis/ example database


def test_same_seed_same_report(capsys, folders):
    argv = (folders["current"], "--unpatched", "--examples", 30, "--seed", 11, "--property", "truncation_exact")
    _, first, _ = check_json(capsys, *argv)
    _, second, _ = check_json(capsys, *argv)
    assert first["properties"][0]["violations"] > 0
    for report in (first, second):
        report.pop("seconds"), report.pop("load_seconds"), report["properties"][0].pop("seconds")
    assert first == second


def test_console_entry_point_end_to_end(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "glm4_tokfix.cli", "check", "--examples", "5", "--property", "pair_encoding"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "1 property, 5 examples in " in run.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "glm4_tokfix.cli", "check", str(tmp_path / "nope")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"glm4-tokfix check: error: no such folder: {tmp_path / 'nope'}"


@requires_real
@pytest.mark.real_vocab
def test_real_vocabulary(capsys, tmp_path):
    code, report, _ = check_json(capsys, REAL_DIR, "--examples", 10, "--seed", 0)
    assert code == 0, [p["counterexample"] for p in report["properties"] if p["counterexample"]]

    from standins import make_model_folder

    folder = make_model_folder(tmp_path / "upstream", "current", REAL_DIR)
    wanted = ["prefix_idempotent", "batch_matches_single_right", "decode_round_trip"]
    argv = [folder, "--unpatched", "--examples", 40, "--seed", 0]
    code, report, _ = check_json(capsys, *argv, *[x for name in wanted for x in ("--property", name)])
    assert code == 1
    assert [p["name"] for p in report["properties"] if p["violations"]] == wanted


def test_check_without_hypothesis_says_what_to_install():
    """The tokenizer needs no hypothesis; `check` does, and says so in one line (exit 2, no traceback)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "hypothesis" or name.startswith("hypothesis."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        sys.meta_path.insert(0, Block())
        from glm4_tokfix.cli import main
        sys.exit(main(["check", "-n", "2"]))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "pip install 'glm4-tokfix[check]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_encoder_backend_is_reported(capsys, monkeypatch):
    from glm4_tokfix.remote_code import glm4_encoders as tc

    monkeypatch.setenv("GLM4_TOKFIX_ENCODER", "tiktoken")
    code, out, _ = check(capsys, "--examples", 2, "--seed", 0)
    assert code == 0 and "encoder backend: tiktoken ($GLM4_TOKFIX_ENCODER)" in out
    code, report, _ = check_json(capsys, "--examples", 2, "--seed", 0)
    assert report["encoder"] == "tiktoken ($GLM4_TOKFIX_ENCODER)"
    monkeypatch.delenv("GLM4_TOKFIX_ENCODER")
    code, out, _ = check(capsys, "--examples", 2, "--seed", 0)
    assert f"encoder backend: {'fastokens' if tc.fastokens_available() else 'tiktoken'} (default)" in out
    monkeypatch.setenv("GLM4_TOKFIX_ENCODER", "rust")
    code, out, err = check(capsys, "--examples", 2)
    assert code == 2 and "GLM4_TOKFIX_ENCODER must be one of tiktoken, fastokens" in err
    monkeypatch.setenv("GLM4_TOKFIX_ENCODER", "fastokens")
    monkeypatch.setattr(tc, "fastokens_available", lambda: False)
    code, out, err = check(capsys, "--examples", 2)
    assert code == 2 and 'pip install "glm4-tokfix[fast]"' in err
