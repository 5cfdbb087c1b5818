"""``glm4-tokfix check`` on each GLM-4 family kind: unpatched it reports the kind's bug, with the fix it passes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import glm4_tokfix
from glm4_tokfix import cli, model_folder
from standins import make_model_folder

pytest.importorskip("jinja2", reason="glm4-tokfix check renders chat templates (jinja2)")
pytest.importorskip("torch", reason="GLM-4V-9B's class imports torch")

TINY = Path(glm4_tokfix.TINY_GLM4_DIR)
# name -> (class revision, config changes); the siblings' templates are test_siblings.py's
from test_siblings import CHAT_1M, CODEGEEX4, LONGWRITER  # noqa: E402

KINDS = {
    "glm-4v-9b": ("glm4v", {}),
    "codegeex4-all-9b": ("current", {"chat_template": CODEGEEX4}),
    "LongWriter-glm4-9b": ("mid2024", {"chat_template": LONGWRITER}),
    "glm-4-9b-chat-1m": ("current", {"chat_template": CHAT_1M}),
    "glm-4-9b": ("current", {"chat_template": None}),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {name: make_model_folder(tmp_path_factory.mktemp("kinds") / name, rev, TINY, config=config)
            for name, (rev, config) in KINDS.items()}  # fmt: skip


def check_json(capsys, *argv):
    code = cli.main(["check", *map(str, argv), "--json"])
    out, _ = capsys.readouterr()
    return code, json.loads(out)


def violated(report):
    return {p["name"] for p in report["properties"] if p["violations"]}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_unpatched_kind_reports_its_bug(capsys, folders, name):
    code, report = check_json(capsys, folders[name], "--unpatched", "--examples", 12, "--seed", 0)
    assert code == 1 and report["unpatched"] is True
    found = violated(report)
    assert {"prefix_idempotent", "batch_matches_single_right"} <= found, found
    prefix = next(p for p in report["properties"] if p["name"] == "prefix_idempotent")
    if KINDS[name][0] != "mid2024":  # the mid-2024 class cannot pad at all: every call is a TypeError
        assert "the prefix is added a second time" in prefix["counterexample"]["message"]
    if name == "glm-4v-9b":
        assert report["own_chat_template"].endswith("tokenization_chatglm.ChatGLM4Tokenizer")
    if name == "glm-4-9b":
        chat = next(p for p in report["properties"] if p["name"] == "chat_template_consistent")
        assert chat["skipped"] and "no chat template" in chat["skipped"]


@pytest.mark.parametrize("name", sorted(KINDS))
def test_fixed_kind_passes(capsys, folders, name):
    code, report = check_json(capsys, folders[name], "--examples", 12, "--seed", 0)
    assert code == 0, [(p["name"], p["counterexample"]) for p in report["properties"] if p["violations"]]
    assert "glm4_tokfix.from_pretrained" in report["loaded"]
    ran = {p["name"] for p in report["properties"] if not p["skipped"]}
    assert "chat_template_consistent" in ran or name == "glm-4-9b"
    assert (report["own_chat_template"] is not None) == (name == "glm-4v-9b")


def test_patched_glm4v_folder_passes(capsys, folders, tmp_path):
    target = tmp_path / "glm-4v-9b"
    shutil.copytree(folders["glm-4v-9b"], target)
    model_folder.patch_folder(target)
    code, report = check_json(capsys, target, "--examples", 12, "--seed", 0)
    assert code == 0, [(p["name"], p["counterexample"]) for p in report["properties"] if p["violations"]]
    assert report["own_chat_template"].endswith("tokenization_chatglm.ChatGLM4Tokenizer")
    # --unpatched on the patched folder loads what the folder loads: the fixed class
    code, report = check_json(capsys, target, "--unpatched", "--examples", 6, "--seed", 0)
    assert code == 0
