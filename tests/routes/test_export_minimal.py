"""``glm4-tokfix export --minimal MODEL_DIR OUT_DIR``: the small upstream diff (``glm4_tokfix.minimal_patch``).

On both stand-ins (tests/standins) and on a real upstream ``tokenization_chatglm.py`` when the folder named by
``GLM4_TOKFIX_REAL_VOCAB`` holds one (the suite's way of being given the real glm-4-9b-chat files): the patched
file loads as remote code, passes the prefix, batch == single (both sides), pad and chat-template properties of
the battery, keeps upstream's ids for every text; the diff applies back to the patched file and stays under
60 changed lines; ``glm4-tokfix check --unpatched`` on the folder lists what the full module still adds.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import glm4_tokfix
from glm4_tokfix.minimal_patch import MINIMAL_FIXES, is_minimally_patched, minimal_patch, split_lines
from glm4_tokfix.testing import properties as props
from glm4_tokfix.testing.assertions import assert_prefix_idempotent
from glm4_tokfix.testing.runner import run_properties
from locations import HAVE_REAL, REAL_DIR, TINY_DIR
from patch_helpers import load, run_cli, snapshot, standin_folder
from standins import module_source
from strategies import PREFIX, texts

LIMIT = 60
REAL_UPSTREAM = REAL_DIR / "tokenization_chatglm.py"
SOURCES = ("current", "mid2024", pytest.param("real", marks=pytest.mark.real_vocab))
#: the battery properties the minimal patch must make hold (the prefix one is checked apart on 4.x, see below)
HOLDS = ("batch_matches_single_left", "batch_matches_single_right", "pad_idempotent", "chat_template_consistent",
         "pair_encoding", "encode_consistent")  # fmt: skip
#: what the full module adds on top: violated by the minimally patched file on both revisions and both lines
FULL_FIX_ADDS = ("batch_matches_single_options", "truncation_exact", "special_tokens_mask", "unknown_ids_rejected")


def _transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


def upstream_folder(base: Path, source: str, vocab_dir: Path) -> Path:
    """A model folder whose tokenization_chatglm.py is ``source``'s upstream file (stand-in or real)."""
    if source == "real":
        if not REAL_UPSTREAM.is_file():
            pytest.skip(f"no real upstream tokenization_chatglm.py in {REAL_DIR} (put one there to test it)")
        folder = Path(base) / f"glm4_real_{uuid.uuid4().hex[:10]}"
        folder.mkdir(parents=True)
        for name in ("tokenizer.model", "tokenizer_config.json", "tokenization_chatglm.py"):
            shutil.copyfile(REAL_DIR / name, folder / name)
        return folder
    return standin_folder(base, source, vocab_dir)


def export_minimal(folder: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli("export", "--minimal", folder, out, *extra)


def minimal_folder(base: Path, source: str, vocab_dir: Path) -> Path:
    """``source``'s folder with its tokenization_chatglm.py replaced by the minimally patched one."""
    folder = upstream_folder(base, source, vocab_dir)
    out = Path(base) / f"out_{uuid.uuid4().hex[:8]}"
    result = export_minimal(folder, out)
    assert result.returncode == 0, result.stderr
    shutil.copyfile(out / "tokenization_chatglm.py", folder / "tokenization_chatglm.py")
    return folder


def vocab_for(source: str) -> Path:
    return REAL_DIR if source == "real" else TINY_DIR


@pytest.fixture(scope="module", params=SOURCES)
def source(request) -> str:
    if request.param == "real" and not HAVE_REAL:
        pytest.skip("the real vocabulary is absent")
    return request.param


@pytest.fixture(scope="module")
def pair(source, tmp_path_factory):
    """(unpatched upstream tokenizer, minimally patched tokenizer) for ``source``."""
    base = tmp_path_factory.mktemp(f"minimal_{source}")
    return load(upstream_folder(base, source, vocab_for(source))), load(minimal_folder(base, source, vocab_for(source)))


def apply_unified(original: str, diff: str) -> str:
    """Apply a unified diff to ``original`` (our own small applier: hunks must match exactly)."""
    old = split_lines(original)
    out, pos = [], 0
    lines = diff.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        match = re.match(r"@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@", lines[i])
        i += 1
        if not match:
            continue
        start = int(match.group(1)) - (0 if match.group(2) == "0" else 1)
        out += old[pos:start]
        pos = start
        while i < len(lines) and not lines[i].startswith("@@"):
            tag, text = lines[i][0], lines[i][1:]
            if tag in " -":
                assert old[pos] == text, (pos, old[pos], text)
                pos += 1
            if tag in " +":
                out.append(text)
            i += 1
    return "".join(out + old[pos:])


# ------------------------------------------------------------------ the files written
@pytest.mark.parametrize("revision", ["current", "mid2024"])
def test_writes_the_patched_file_and_its_diff(tmp_path, revision):
    folder = upstream_folder(tmp_path, revision, TINY_DIR)
    before = snapshot(folder)
    out = tmp_path / "new" / "out"
    result = export_minimal(folder, out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["tokenization_chatglm.py", "tokenization_chatglm.py.diff"]
    assert snapshot(folder) == before  # the model folder is only read
    line = result.stdout.strip()
    assert line.startswith(f"wrote {out / 'tokenization_chatglm.py'} and {out / 'tokenization_chatglm.py.diff'}")
    changed = int(re.search(r"(\d+) lines changed", line).group(1))
    original = (folder / "tokenization_chatglm.py").read_text(encoding="utf-8")
    patched = (out / "tokenization_chatglm.py").read_text(encoding="utf-8")
    diff = (out / "tokenization_chatglm.py.diff").read_text(encoding="utf-8")
    counted = sum(1 for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---")))
    assert changed == counted < LIMIT
    assert apply_unified(original, diff) == patched
    assert "glm4_tokfix" not in patched and "glm4-tokfix" not in patched  # upstream's file, in upstream's words
    # exporting again is harmless; a different file there needs --force
    assert export_minimal(folder, out).returncode == 0
    (out / "tokenization_chatglm.py.diff").write_text("other\n")
    again = export_minimal(folder, out)
    assert again.returncode == 1 and "--force" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert export_minimal(folder, out, "--force").returncode == 0
    assert (out / "tokenization_chatglm.py.diff").read_text(encoding="utf-8") == diff


@pytest.mark.parametrize("revision", ["current", "mid2024"])
def test_the_diff_applies_with_patch(tmp_path, revision):
    if shutil.which("patch") is None:
        pytest.skip("no patch program")
    folder = upstream_folder(tmp_path, revision, TINY_DIR)
    out = tmp_path / "out"
    assert export_minimal(folder, out).returncode == 0
    subprocess.run(["patch", "-p1", "-s", "-i", str(out / "tokenization_chatglm.py.diff")], cwd=folder, check=True)
    assert (folder / "tokenization_chatglm.py").read_bytes() == (out / "tokenization_chatglm.py").read_bytes()


@pytest.mark.parametrize("revision", ["current", "mid2024"])
def test_nothing_else_in_the_file_moves(revision):
    original = module_source(revision).read_text(encoding="utf-8")
    result = minimal_patch(original)
    tree = ast.parse(original)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ChatGLM4Tokenizer")
    spans = [(n.lineno - 1, n.end_lineno + 1) for n in cls.body
             if isinstance(n, ast.FunctionDef) and n.name in ("build_inputs_with_special_tokens", "_pad")]  # fmt: skip
    old, new = split_lines(original), split_lines(result.patched)
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for tag, i1, i2, _, _ in matcher.get_opcodes():
        if tag != "equal":  # every change sits inside (or right after, for the added method) the two methods
            assert any(a <= i1 and i2 <= b for a, b in spans), (tag, i1, i2, old[i1:i2])
    assert result.revision == revision
    assert is_minimally_patched(result.patched) and not is_minimally_patched(original)


def _reshaped(source: str) -> str:
    """The mid-2024 stand-in laid out like a real upstream file: docstrings, one parameter per line, CRLF."""
    source = source.replace(
        "    def _pad(self, encoded_inputs, max_length=None, padding_strategy=PaddingStrategy.DO_NOT_PAD,\n"
        "             pad_to_multiple_of=None, return_attention_mask=None):  # fmt: skip\n",
        "    def _pad(\n            self,\n            encoded_inputs,\n            max_length: Optional[int] = None,\n"
        "            padding_strategy=PaddingStrategy.DO_NOT_PAD,\n            pad_to_multiple_of: Optional[int] = None,\n"
        "            return_attention_mask: Optional[bool] = None,\n    ) -> dict:\n"
        '        """\n        Pads one encoding on the left.\n        """\n        # defaults of the model\n',
    )
    source = source.replace(
        "    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):\n",
        "    def build_inputs_with_special_tokens(\n            self, token_ids_0, token_ids_1=None\n    ):\n"
        '        """\n        Adds the prefix.\n        """\n\n',
    )
    source = source.replace("import base64\n", "import base64\nfrom typing import Optional\n")
    assert source.count('"""\n') >= 4
    return source.replace("\n", "\r\n")


def test_a_file_laid_out_like_upstreams(tmp_path):
    folder = standin_folder(tmp_path, "mid2024", TINY_DIR)
    text = _reshaped(module_source("mid2024").read_text(encoding="utf-8"))
    (folder / "tokenization_chatglm.py").write_bytes(text.encode("utf-8"))
    result = minimal_patch(text)
    assert result.changed_lines < LIMIT
    assert "            padding_side: Optional[str] = None,\r\n" in result.patched  # a new line of the same shape
    assert "        Pads one encoding on the left.\r\n" in result.patched  # the docstring stays
    assert all(line.endswith("\r\n") for line in split_lines(result.patched))
    shutil.copyfile(folder / "tokenization_chatglm.py", tmp_path / "orig.py")
    (folder / "tokenization_chatglm.py").write_bytes(result.patched.encode("utf-8"))
    tok = load(folder)
    report = run_properties(tok, props.select(HOLDS), examples=10, seed=3)
    assert report.ok, [(r.name, r.counterexample.message) for r in report.results if r.violations]


# ------------------------------------------------------------------ bad folders and files
def _one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("glm4-tokfix export: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_refuses_what_is_not_upstreams_file(tmp_path):
    out = tmp_path / "out"
    _one_line_error(export_minimal(tmp_path / "missing", out), "no such folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "tokenizer.json").write_text("{}")
    _one_line_error(
        export_minimal(empty, out), "no tokenization_chatglm.py", "found: tokenizer.json", "docs/upstream.md"
    )
    folder = standin_folder(tmp_path, "current", TINY_DIR)
    full = folder / "tokenization_chatglm.py"
    original = full.read_text(encoding="utf-8")
    cases = {
        "class ChatGLM4Tokenizer(": (
            "class ChatGLMTokenizer(",
            "no class ChatGLM4Tokenizer (classes found: ChatGLMTokenizer)",
        ),
        "def _pad(\n        self,\n": ("def _pad(\n        self,\n        *more,\n", "other parameters than expected"),
        "    def get_prefix_tokens(self):": ("    def get_prefix(self):", "has no method get_prefix_tokens"),
        "def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):": (
            "@staticmethod\n    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):",
            "build_inputs_with_special_tokens is decorated",
        ),
    }
    for old, (new, message) in cases.items():
        assert old in original
        full.write_text(original.replace(old, new, 1), encoding="utf-8")
        _one_line_error(export_minimal(folder, out), message, str(full))
    full.write_text("def broken(:\n", encoding="utf-8")
    _one_line_error(export_minimal(folder, out), "does not parse as Python")
    shutil.copyfile(Path(glm4_tokfix.__file__).parent / "remote_code" / "tokenization_glm4_tokfix.py", full)
    _one_line_error(export_minimal(folder, out), "glm4-tokfix's own full module")
    full.write_text(minimal_patch(original).patched, encoding="utf-8")
    _one_line_error(export_minimal(folder, out), "already carries glm4-tokfix's minimal patch")
    assert not out.exists()


# ------------------------------------------------------------------ behaviour of the patched file
def test_loads_as_remote_code_and_fixes_the_seed_bug(pair):
    unpatched, patched = pair
    assert type(patched).__module__.startswith("transformers_modules") and not glm4_tokfix.is_patched(patched)
    rendered = "[gMASK]<sop><|user|>\nhi there<|assistant|>"
    prefix = patched.convert_tokens_to_ids(["[gMASK]", "<sop>"])
    plain = unpatched.convert_tokens_to_ids(unpatched.tokenize(rendered))
    assert unpatched.build_inputs_with_special_tokens(list(plain))[:4] == prefix * 2  # the bug is real
    assert patched(rendered).input_ids == plain
    for side in ("left", "right"):
        batch = patched([rendered, "<|user|>\nx"], padding=True, padding_side=side)
        short = patched("<|user|>\nx")
        pads = len(batch.input_ids[0]) - len(short.input_ids)
        mask = [0] * pads + [1] * len(short.input_ids) if side == "left" else [1] * len(short.input_ids) + [0] * pads
        assert batch.attention_mask[1] == mask
        positions = list(range(len(short.input_ids)))
        assert batch.position_ids[1] == ([0] * pads + positions if side == "left" else positions + [0] * pads)
    eos = patched.convert_tokens_to_ids("<|endoftext|>")
    a, b = patched.tokenize("a"), patched.tokenize("b")
    assert patched("a", "b").input_ids == prefix + patched.convert_tokens_to_ids(a + b) + [eos]
    with pytest.raises(ValueError, match="padding_side"):
        patched(["a", "bcd"], padding=True, padding_side="middle")


def test_passes_the_battery_properties(pair):
    pytest.importorskip("jinja2", reason="the battery's chat-template property renders chats (needs jinja2)")
    _, patched = pair
    report = run_properties(patched, props.select(HOLDS), examples=25, seed=0)
    assert report.ok, [(r.name, r.counterexample.message) for r in report.results if r.violations]


@given(text=texts(), length=st.one_of(st.none(), st.integers(3, 32)))
def test_prefix_idempotent(pair, text, length):
    """The battery's prefix property; max_length >= 3 (transformers 4.x itself will not truncate to the prefix)."""
    _, patched = pair
    options = {} if length is None else {"truncation": True, "max_length": length}
    assert_prefix_idempotent(patched, text, **options)


def test_the_unpatched_file_fails_the_same_properties(pair):
    """What the tests above check would fail before the patch (both revisions)."""
    unpatched, _ = pair
    report = run_properties(unpatched, props.select(HOLDS + ("prefix_idempotent",)), examples=15, seed=0)
    failing = {r.name for r in report.results if r.violations}
    expected = {"batch_matches_single_right", "chat_template_consistent", "prefix_idempotent", "pair_encoding"}
    if importlib.util.find_spec("jinja2") is None:  # chat templates cannot render here: that one is skipped
        assert [r.name for r in report.skipped] == ["chat_template_consistent"]
        expected.discard("chat_template_consistent")
    assert expected <= failing


@given(text=texts())
def test_keeps_upstreams_ids(pair, tok, text):
    unpatched, patched = pair
    plain = unpatched.convert_tokens_to_ids(unpatched.tokenize(text))
    assert patched(text, add_special_tokens=False).input_ids == plain
    expected = plain if text.startswith(PREFIX) else unpatched.build_inputs_with_special_tokens(list(plain))
    assert patched(text).input_ids == expected
    if len(tok) == len(patched):  # same vocabulary: glm4-tokfix's full module gives the same ids
        assert tok(text).input_ids == expected


def test_the_full_fix_still_lays_over_it(pair):
    """glm4_tokfix.patch on the minimally patched class: the battery holds (its prepare_for_model is skipped)."""
    _, patched = pair
    import copy

    fixed = glm4_tokfix.patch(copy.deepcopy(patched))
    report = run_properties(fixed, examples=10, seed=1)
    assert report.ok, [(r.name, r.counterexample.message) for r in report.results if r.violations]
    assert fixed("[gMASK]<sop>[gMASK]<sop>x").input_ids[:4] == fixed.get_prefix_tokens() * 2


# ------------------------------------------------------------------ glm4-tokfix check on such a folder
@pytest.mark.parametrize("revision", ["current", "mid2024"])
def test_check_reports_what_the_full_module_adds(tmp_path, revision):
    folder = minimal_folder(tmp_path, revision, TINY_DIR)
    result = run_cli("check", folder, "--unpatched", "--examples", 40, "--seed", 0, "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert "minimal patch" in report["loaded"]
    violated = {p["name"] for p in report["properties"] if p["violations"]}
    assert report["minimal_patch"]["still_violated"] == [p["name"] for p in report["properties"] if p["violations"]]
    assert not violated & set(HOLDS)
    assert set(FULL_FIX_ADDS) <= violated
    if revision == "current":  # the current revision's convert_tokens_to_string drops special tokens
        assert "decode_round_trip" in violated
    if _transformers_major() >= 5:  # 4.x refuses to truncate a text to max_length 2 (the prefix's length)
        assert "prefix_idempotent" not in violated
    assert set(MINIMAL_FIXES) & violated == set()
    text = run_cli("check", folder, "--unpatched", "--examples", 10, "--seed", 0)
    assert "what it still violates above" in text.stdout and "glm4-tokfix export OUT_DIR" in text.stdout
    fixed = run_cli("check", folder, "--examples", 10, "--seed", 0)  # with the fix laid over it: nothing left
    assert fixed.returncode == 0, fixed.stdout[-2000:]
