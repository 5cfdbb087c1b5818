"""Every route to a fixed fast GLM-4 tokenizer, and the folder commands on tokenizer.json folders."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys

import pytest
import transformers.convert_slow_tokenizer  # noqa: F401 -- imported before pytester snapshots sys.modules
from hypothesis import given, settings

import glm4_tokfix
from glm4_tokfix.remote_code import BUNDLE_FILES
from locations import REAL_DIR, TINY_DIR
from patch_helpers import load_saved_in_clean_process
from strategies import PREFIX, prompt_texts

TEXTS = [PREFIX + "<|user|>\nhi<|assistant|>", "<|user|>\na longer question<|assistant|>"]


def load(folder, **kwargs):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), **kwargs)


def snapshot(folder):
    return {p: hashlib.sha256(open(os.path.join(folder, p), "rb").read()).hexdigest() for p in os.listdir(folder)}


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "glm4_tokfix.cli", *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd
    )


@pytest.fixture
def chat_hf_copy(fast_folder, tmp_path):
    folder = tmp_path / "glm-4-9b-chat-hf"
    shutil.copytree(fast_folder("tiny", "chat-hf"), folder)
    return folder


# ------------------------------------------------------------------------------- in-process routes
def test_patch_pickle_and_deepcopy(fast_folder):
    tok = glm4_tokfix.patch(load(fast_folder("tiny", "chat-hf")))
    expected = tok(TEXTS, padding=True, return_offsets_mapping=True)
    for other in (pickle.loads(pickle.dumps(tok)), copy.deepcopy(tok)):
        assert glm4_tokfix.is_patched(other)
        assert other(TEXTS, padding=True, return_offsets_mapping=True) == expected


def test_from_pretrained_route(fast_folder):
    tok = glm4_tokfix.from_pretrained(str(fast_folder("tiny", "chat-hf")))
    assert glm4_tokfix.is_patched(tok)
    assert tok(TEXTS[0])["input_ids"] == tok(TEXTS[0][len(PREFIX) :])["input_ids"]


def test_enable_fixes_plain_autotokenizer_and_leaves_others(fast_folder, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    other_dir = tmp_path / "other"
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]").save_pretrained(other_dir)
    with glm4_tokfix.enable():
        for style in ("chat-hf", "0414"):
            tok = load(fast_folder("tiny", style))  # no trust_remote_code: transformers' built-in class
            assert glm4_tokfix.is_patched(tok)
            prefix = tok.convert_tokens_to_ids(["[gMASK]", "<sop>"])
            assert tok(TEXTS)["input_ids"][0][:4] != prefix * 2
        other = load(other_dir)
        assert not glm4_tokfix.is_patched(other)
    assert not glm4_tokfix.is_patched(load(fast_folder("tiny", "chat-hf")))


def test_saved_patched_folder_loads_fixed_without_the_package(fast_folder, tmp_path):
    tok = glm4_tokfix.patch(load(fast_folder("tiny", "chat-hf")))
    out = tmp_path / "saved"
    tok.save_pretrained(out)
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["auto_map"]["AutoTokenizer"][1] == "tokenization_glm4_tokfix_fast.ChatGLM4TokenizerFast"
    result = load_saved_in_clean_process(out, tmp_path)
    assert result["class"] == "ChatGLM4TokenizerFast" and not result["glm4_tokfix_loaded"]
    assert result["left"]["input_ids"] == [list(r) for r in tok(TEXTS, padding=True)["input_ids"]]
    assert result["right"]["input_ids"] == [
        list(r) for r in tok(TEXTS, padding=True, padding_side="right")["input_ids"]
    ]


def test_datasets_map_in_two_processes(fast_folder):
    datasets = pytest.importorskip("datasets")
    tok = glm4_tokfix.patch(load(fast_folder("tiny", "chat-hf")))
    rows = [PREFIX + f"<|user|>\nquestion {i}<|assistant|>" if i % 2 else f"plain text {i} 你好" for i in range(40)]
    data = datasets.Dataset.from_dict({"text": rows})
    mapped = data.map(lambda batch: tok(batch["text"]), batched=True, batch_size=8, num_proc=2)
    assert mapped["input_ids"] == tok(rows)["input_ids"]


@pytest.mark.parametrize("side", ["left", "right"])
def test_collator_pads_exactly(fast_folder, side):
    torch = pytest.importorskip("torch")
    from transformers import DataCollatorWithPadding

    tok = glm4_tokfix.patch(load(fast_folder("tiny", "chat-hf")))
    texts = TEXTS + ["x", PREFIX]
    features = [tok(t) for t in texts]
    old = tok.padding_side
    tok.padding_side = side
    try:
        batch = DataCollatorWithPadding(tok, return_tensors="pt")(features)
        expected = tok(texts, padding=True, return_tensors="pt")
    finally:
        tok.padding_side = old
    assert set(batch) == set(expected)
    for key in expected:
        assert torch.equal(batch[key], expected[key]), key


# --------------------------------------------------------------------------------- folder commands
def test_patch_and_unpatch_a_tokenizer_json_folder(chat_hf_copy, tmp_path):
    before = snapshot(chat_hf_copy)
    result = cli("patch", chat_hf_copy)
    assert result.returncode == 0, result.stderr
    assert "trust_remote_code" in result.stdout and "unfixed" in result.stdout
    assert set(BUNDLE_FILES) <= set(os.listdir(chat_hf_copy)) and "tokenization_chatglm.py" not in os.listdir(
        chat_hf_copy
    )
    loaded = load_saved_in_clean_process(chat_hf_copy, tmp_path)
    assert loaded["class"] == "ChatGLM4TokenizerFast" and not loaded["glm4_tokfix_loaded"]
    slow = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(TINY_DIR)
    assert loaded["left"]["input_ids"] == slow(TEXTS, padding=True)["input_ids"]  # one prefix per row
    unpatched_ids = load(chat_hf_copy)(TEXTS[0])["input_ids"]  # without trust_remote_code: built-in, unfixed
    assert unpatched_ids[:4] == slow.get_prefix_tokens() * 2
    assert cli("patch", chat_hf_copy).returncode == 0  # again: harmless
    result = cli("unpatch", chat_hf_copy)
    assert result.returncode == 0, result.stderr
    assert snapshot(chat_hf_copy) == before


def test_patch_refuses_a_foreign_module(chat_hf_copy):
    (chat_hf_copy / "glm4_tokens.py").write_text("# someone else's file\n")
    before = snapshot(chat_hf_copy)
    result = cli("patch", chat_hf_copy)
    assert result.returncode == 1 and "not written by glm4-tokfix" in result.stderr
    assert snapshot(chat_hf_copy) == before


def test_convert_writes_a_fixed_fast_folder(tmp_path):
    out = tmp_path / "converted"
    result = cli("convert", TINY_DIR, out)
    assert result.returncode == 0, result.stderr
    assert "trust_remote_code" in result.stdout
    loaded = load_saved_in_clean_process(out, tmp_path)
    slow = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(TINY_DIR)
    assert loaded["class"] == "ChatGLM4TokenizerFast"
    assert loaded["left"]["input_ids"] == slow(TEXTS, padding=True)["input_ids"]
    template = json.loads((out / "tokenizer_config.json").read_text())["chat_template"]
    from glm4_tokfix.chat_templates import has_generation_markers, template_name

    assert has_generation_markers(template) and template_name(template) == "glm-4-9b-chat"  # the marked copy
    again = cli("convert", TINY_DIR, out)
    assert again.returncode == 1 and "already exists" in again.stderr


@pytest.mark.real_vocab
@pytest.mark.slow
def test_converted_real_vocabulary_matches_the_slow_tokenizer(real_tok, tmp_path_factory):
    from glm4_tokfix.convert import convert_folder

    out = convert_folder(REAL_DIR, tmp_path_factory.mktemp("conv") / "glm-4-9b-chat-fast")
    fast = load(out, trust_remote_code=True)
    assert type(fast).__name__ == "ChatGLM4TokenizerFast"

    @settings(max_examples=300)
    @given(text=prompt_texts())
    def same(text):
        assert fast(text)["input_ids"] == real_tok(text)["input_ids"]

    same()


# ---------------------------------------------------------------------------------------- check CLI
def test_check_reports_the_double_prefix_of_an_unpatched_folder(fast_folder):
    pytest.importorskip("jinja2", reason="glm4-tokfix check and the battery render chat templates (jinja2)")
    folder = fast_folder("tiny", "chat-hf")
    unpatched = cli("check", folder, "--unpatched", "-n", "15", "--seed", "1", "-p", "prefix_idempotent")
    assert unpatched.returncode == 1, unpatched.stderr
    assert "prefix policy: adds [gMASK]<sop>" in unpatched.stdout
    assert "added a second time" in unpatched.stdout
    fixed = cli("check", folder, "-n", "15", "--seed", "1")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    policy = cli("check", fast_folder("tiny", "0414"), "-n", "5", "--seed", "1", "--json")
    assert policy.returncode == 0, policy.stderr
    assert json.loads(policy.stdout)["prefix_policy"].startswith("adds no prefix")


# ------------------------------------------------------------------------------------- pytest plugin
pytest_plugins = ["pytester"]


@pytest.mark.parametrize("style", ["chat-hf", "0414"])
def test_battery_passes_on_a_patched_fast_folder(pytester, fast_folder, style):
    pytest.importorskip("jinja2", reason="glm4-tokfix check and the battery render chat templates (jinja2)")
    from glm4_tokfix.testing.properties import PROPERTIES

    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--pyargs", "glm4_tokfix.testing.suite",
        "--glm4-tokenizer", str(fast_folder("tiny", style)), "--hypothesis-profile", "glm4-quick",
    )  # fmt: skip
    result.assert_outcomes(passed=len(PROPERTIES))


def test_battery_reports_the_unpatched_chat_hf_folder(pytester, fast_folder):
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-v", "--pyargs", "glm4_tokfix.testing.suite",
        "--glm4-tokenizer", str(fast_folder("tiny", "chat-hf")), "--glm4-unpatched",
        "--hypothesis-profile", "glm4-quick", "--hypothesis-seed", "0",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "test_prefix_idempotent FAILED" in result.stdout.str()
    assert "the prefix is added a second time" in result.stdout.str()
