"""Issue 31, items 10 and 11: ``glm4-tokfix convert`` takes a ``tokenizer.json`` GLM-4 folder (glm-4-9b-chat-hf,
or a folder transformers 5 saved), and ``export --minimal`` takes an upstream file that starts with a UTF-8 BOM."""

from __future__ import annotations

import json
import shutil

import pytest

import glm4_tokfix
from glm4_tokfix import cli

CHAT = "[gMASK]<sop><|user|>\nhi<|assistant|>"


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("style", ["chat-hf", "0414"])
def test_convert_a_tokenizer_json_folder(fast_folder, tmp_path, capsys, style):
    from transformers import AutoTokenizer

    source = fast_folder("tiny", style)
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    out = tmp_path / "converted"
    code, stdout, stderr = run(capsys, "convert", source, out)
    assert code == 0, stderr
    assert "trust_remote_code" in stdout
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before  # the source is left as it was
    assert (out / "tokenizer.json").read_bytes() == before["tokenizer.json"]
    fixed = AutoTokenizer.from_pretrained(str(out), trust_remote_code=True)
    assert type(fixed).__name__ == "ChatGLM4TokenizerFast"
    expected = glm4_tokfix.patch(AutoTokenizer.from_pretrained(str(source)))
    assert fixed(CHAT).input_ids == expected(CHAT).input_ids
    assert fixed(CHAT).input_ids[:4] != fixed(CHAT).input_ids[:2] * 2
    assert not glm4_tokfix.is_patched(AutoTokenizer.from_pretrained(str(out)))  # transformers' own class too


def test_convert_a_folder_transformers_saved(fast_folder, tmp_path, capsys):
    from transformers import AutoTokenizer

    saved = tmp_path / "saved"
    AutoTokenizer.from_pretrained(str(fast_folder("tiny", "chat-hf"))).save_pretrained(saved)
    code, _, stderr = run(capsys, "convert", saved, tmp_path / "out")
    assert code == 0, stderr
    fixed = AutoTokenizer.from_pretrained(str(tmp_path / "out"), trust_remote_code=True)
    assert (
        fixed(CHAT).input_ids
        == glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(glm4_tokfix.TINY_GLM4_DIR)(CHAT).input_ids
    )


def test_convert_a_tokenizer_json_folder_refuses_style(fast_folder, tmp_path, capsys):
    code, _, stderr = run(capsys, "convert", fast_folder("tiny", "chat-hf"), tmp_path / "out", "--style", "0414")
    assert code == 1 and "--style" in stderr and "tokenizer.json" in stderr
    assert not (tmp_path / "out").exists()


def test_convert_a_folder_that_is_not_glm4(fast_folder, tmp_path, capsys):
    folder = tmp_path / "other"
    shutil.copytree(fast_folder("tiny", "chat-hf"), folder)
    state = json.loads((folder / "tokenizer.json").read_text())
    state["added_tokens"] = [t for t in state["added_tokens"] if t["content"] != "<sop>"]
    (folder / "tokenizer.json").write_text(json.dumps(state))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    decoder = config["added_tokens_decoder"]
    config["added_tokens_decoder"] = {k: v for k, v in decoder.items() if v["content"] != "<sop>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    code, _, stderr = run(capsys, "convert", folder, tmp_path / "out")
    assert code == 1 and "<sop>" in stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("revision", ["current", "mid2024"])
def test_export_minimal_takes_a_file_with_a_utf8_bom(tmp_path, capsys, revision):
    from patch_helpers import (
        load,
        standin_folder,
    )  # (not conftest: tests/clients/vllm_engine has a conftest module too)

    tiny = glm4_tokfix.TINY_GLM4_DIR

    plain = standin_folder(tmp_path / "plain", revision, tiny)
    bom = standin_folder(tmp_path / "bom", revision, tiny)
    upstream = bom / "tokenization_chatglm.py"
    upstream.write_bytes(b"\xef\xbb\xbf" + upstream.read_bytes())
    # Python imports it as it is; transformers' remote-code loader does not (ast.parse of the text): the patched
    # file goes without the BOM, and the diff says so
    assert run(capsys, "export", "--minimal", plain, tmp_path / "out-plain")[0] == 0
    code, _, stderr = run(capsys, "export", "--minimal", bom, tmp_path / "out-bom")
    assert code == 0, stderr
    patched = (tmp_path / "out-bom" / "tokenization_chatglm.py").read_bytes()
    assert patched == (tmp_path / "out-plain" / "tokenization_chatglm.py").read_bytes()
    diff = (tmp_path / "out-bom" / "tokenization_chatglm.py.diff").read_text(encoding="utf-8")
    plain_diff = (tmp_path / "out-plain" / "tokenization_chatglm.py.diff").read_text(encoding="utf-8")
    assert "\n-\ufeff" in diff and diff.count("\n@@ ") == plain_diff.count("\n@@ ") + 1  # line 1 loses the BOM
    if shutil.which("patch"):
        import subprocess

        subprocess.run(["patch", "-p1", "-s", "-i", str(tmp_path / "out-bom" / "tokenization_chatglm.py.diff")],
                       cwd=bom, check=True)  # fmt: skip
        assert upstream.read_bytes() == patched
    shutil.copyfile(tmp_path / "out-bom" / "tokenization_chatglm.py", upstream)
    tok = load(bom)
    ids = tok(CHAT).input_ids
    assert ids[:4] != ids[:2] * 2
