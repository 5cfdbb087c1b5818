"""``glm4-tokfix export OUT_DIR``: the one-file upstream contribution.

It writes exactly ``OUT_DIR/tokenization_chatglm.py`` -- the bytes of our
standalone module -- which needs only transformers, tiktoken, regex and the
standard library, and which, dropped into a model folder in place of
upstream's file, loads the fixed ``ChatGLM4Tokenizer`` with plain AutoTokenizer
in a process that cannot import glm4_tokfix.
"""

from __future__ import annotations

import ast
import shutil
import sys
from pathlib import Path

import pytest

import glm4_tokfix
from test_patch_helpers import check_clean_report, load_in_clean_process, run_cli, snapshot, standin_folder

SOURCE = Path(glm4_tokfix.__file__).resolve().parent / "tokenization_chatglm.py"
ALLOWED_THIRD_PARTY = {"transformers", "tiktoken", "regex"}
LAZY_THIRD_PARTY = {"numpy", "torch"}  # transformers needs numpy; torch is optional


def export(out: Path) -> Path:
    result = run_cli("export", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {out / 'tokenization_chatglm.py'}"
    return out / "tokenization_chatglm.py"


def test_writes_exactly_one_file_with_our_bytes(tmp_path):
    out = tmp_path / "new" / "folder"  # created when missing
    exported = export(out)
    assert sorted(p.name for p in out.iterdir()) == ["tokenization_chatglm.py"]
    assert exported.read_bytes() == SOURCE.read_bytes()


def _imported(nodes) -> set:
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import would need files next to the module"
            names.add(node.module.split(".")[0])
    return names


def test_module_needs_only_transformers_tiktoken_regex_and_stdlib(tmp_path):
    tree = ast.parse(export(tmp_path).read_bytes())
    imported = _imported(ast.walk(tree))
    at_import = _imported(tree.body)  # what loading the module imports
    assert "glm4_tokfix" not in imported
    assert at_import - set(sys.stdlib_module_names) - {"__future__"} <= ALLOWED_THIRD_PARTY
    # numpy and torch only inside functions, when return_tensors asks for them
    assert imported - set(sys.stdlib_module_names) - {"__future__"} <= ALLOWED_THIRD_PARTY | LAZY_THIRD_PARTY
    assert {"transformers", "tiktoken"} <= at_import
    classes = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    assert "ChatGLM4Tokenizer" in classes


@pytest.mark.parametrize("revision", ["current", "mid2024"])
def test_dropped_into_a_model_folder_loads_fixed_without_the_package(tmp_path, vocab_dir, revision, tok):
    folder = standin_folder(tmp_path, revision, vocab_dir)
    shutil.copyfile(export(tmp_path / "export"), folder / "tokenization_chatglm.py")
    check_clean_report(load_in_clean_process(folder, tmp_path), tok)


def test_export_again_is_harmless(tmp_path):
    export(tmp_path)
    before = snapshot(tmp_path)
    export(tmp_path)
    assert snapshot(tmp_path) == before


def test_keeps_a_different_file_unless_forced(tmp_path):
    folder = standin_folder(tmp_path, "current", glm4_tokfix.TINY_GLM4_DIR)
    before = snapshot(folder)
    result = run_cli("export", folder)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("glm4-tokfix export: error: ") and "--force" in lines[0]
    assert snapshot(folder) == before

    result = run_cli("export", folder, "--force")
    assert result.returncode == 0, result.stderr
    after = snapshot(folder)
    assert (folder / "tokenization_chatglm.py").read_bytes() == SOURCE.read_bytes()
    assert {k: v for k, v in after.items() if k != "tokenization_chatglm.py"} == {
        k: v for k, v in before.items() if k != "tokenization_chatglm.py"
    }


def test_out_dir_that_is_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    result = run_cli("export", target)
    assert result.returncode == 1 and "not a folder" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert target.read_text() == "x"


def test_remote_code_requires_no_optional_package():
    """transformers refuses remote code whose file imports a package that is not installed (its
    ``check_imports``): the modules a patched folder holds may need only what transformers itself needs."""
    from transformers.dynamic_module_utils import get_imports

    import glm4_tokfix.tokenization_chatglm as slow
    import glm4_tokfix.tokenization_chatglm_fast as fast

    allowed = set(sys.stdlib_module_names) | {"regex", "tiktoken", "transformers", "numpy", "tokenizers"}
    for module in (slow, fast):
        assert set(get_imports(module.__file__)) - allowed == set(), module.__name__
