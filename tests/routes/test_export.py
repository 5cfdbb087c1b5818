"""``glm4-tokfix export OUT_DIR``: the bundle for the upstream model repository.

It writes exactly the bundle's files (``glm4_tokfix.remote_code.BUNDLE_FILES``) -- the bytes of our modules --
which need only transformers, tiktoken, regex and the standard library, import each other relatively, and, dropped
into a model folder with ``auto_map`` pointing at them, load the fixed ``ChatGLM4Tokenizer`` with plain
AutoTokenizer in a process that cannot import glm4_tokfix.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import glm4_tokfix
from glm4_tokfix.remote_code import BUNDLE_FILES, bundle_bytes
from patch_helpers import check_clean_report, drop_export, load_in_clean_process, run_cli, snapshot, standin_folder

ALLOWED_THIRD_PARTY = {"transformers", "tiktoken", "regex"}
LAZY_THIRD_PARTY = {"numpy", "torch", "fastokens", "tokenizers"}  # imported inside functions only
BUNDLE_MODULES = {name[:-3] for name in BUNDLE_FILES}


def export(out: Path) -> Path:
    result = run_cli("export", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {len(BUNDLE_FILES)} files into {out}: {' '.join(BUNDLE_FILES)}"
    return out


def test_writes_exactly_the_bundle_with_our_bytes(tmp_path):
    out = tmp_path / "new" / "folder"  # created when missing
    export(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(BUNDLE_FILES)
    assert {name: (out / name).read_bytes() for name in BUNDLE_FILES} == bundle_bytes()


def _imported(nodes) -> set:
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                assert node.level == 1 and node.module in BUNDLE_MODULES, "only sibling bundle modules, relatively"
                continue
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("name", BUNDLE_FILES)
def test_module_needs_only_transformers_tiktoken_regex_and_stdlib(tmp_path, name):
    tree = ast.parse(bundle_bytes()[name])
    imported = _imported(ast.walk(tree))
    at_import = _imported(tree.body)  # what loading the module imports
    assert "glm4_tokfix" not in imported
    assert at_import - set(sys.stdlib_module_names) - {"__future__"} <= ALLOWED_THIRD_PARTY
    # numpy, torch, fastokens only inside functions
    assert imported - set(sys.stdlib_module_names) - {"__future__"} <= ALLOWED_THIRD_PARTY | LAZY_THIRD_PARTY


def test_slow_module_defines_the_class(tmp_path):
    tree = ast.parse((export(tmp_path) / "tokenization_glm4_tokfix.py").read_bytes())
    assert "ChatGLM4Tokenizer" in {node.name for node in tree.body if isinstance(node, ast.ClassDef)}


@pytest.mark.parametrize("revision", ["current", "mid2024"])
def test_dropped_into_a_model_folder_loads_fixed_without_the_package(tmp_path, vocab_dir, revision, tok):
    folder = standin_folder(tmp_path, revision, vocab_dir)
    drop_export(export(tmp_path / "export"), folder)
    check_clean_report(load_in_clean_process(folder, tmp_path), tok)


def test_export_again_is_harmless(tmp_path):
    export(tmp_path)
    before = snapshot(tmp_path)
    export(tmp_path)
    assert snapshot(tmp_path) == before


def test_keeps_a_different_file_unless_forced(tmp_path):
    folder = standin_folder(tmp_path, "current", glm4_tokfix.TINY_GLM4_DIR)
    (folder / "glm4_tokens.py").write_text("# another file\n")
    before = snapshot(folder)
    result = run_cli("export", folder)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("glm4-tokfix export: error: ") and "--force" in lines[0]
    assert snapshot(folder) == before

    result = run_cli("export", folder, "--force")
    assert result.returncode == 0, result.stderr
    after = snapshot(folder)
    assert {name: (folder / name).read_bytes() for name in BUNDLE_FILES} == bundle_bytes()
    assert {k: v for k, v in after.items() if k not in BUNDLE_FILES} == {
        k: v for k, v in before.items() if k not in BUNDLE_FILES
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

    import glm4_tokfix.remote_code as bundle

    allowed = set(sys.stdlib_module_names) | {"regex", "tiktoken", "transformers", "numpy", "tokenizers"}
    for name in BUNDLE_FILES:
        path = Path(bundle.__file__).parent / name
        assert set(get_imports(str(path))) - allowed == set(), name
