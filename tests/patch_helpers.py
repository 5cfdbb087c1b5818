"""Helpers shared by the patch/enable/CLI/export tests (this file holds no tests itself).

* ``standin_folder`` -- a fresh stand-in model folder (unique name: transformers
  caches remote modules by folder name, so reusing a name could load stale code);
* ``load`` -- ``AutoTokenizer.from_pretrained(folder, trust_remote_code=True)``;
* ``run_cli`` -- the ``glm4-tokfix`` command as a user runs it, in a subprocess;
* ``snapshot`` -- every entry of a folder: kind, sha256 (or link target) and mode;
* ``load_in_clean_process`` -- load a folder with plain AutoTokenizer in a
  subprocess where importing ``glm4_tokfix`` is impossible, and report what
  the tokenizer does.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pytest

from standins import make_model_folder

PREFIX = "[gMASK]<sop>"


def standin_folder(base: Path, revision: str, vocab_dir: Path) -> Path:
    return make_model_folder(Path(base) / f"glm4_{revision}_{uuid.uuid4().hex[:10]}", revision, vocab_dir)


def load(folder: Path, **kwargs: Any):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True, **kwargs)


def subprocess_env(tmp: Optional[Path] = None) -> Dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    if tmp is not None:
        env["HF_MODULES_CACHE"] = str(Path(tmp) / f"hf_modules_{uuid.uuid4().hex[:8]}")
    return env


def run_cli(
    *args: str, env: Optional[Dict[str, str]] = None, prefix: Sequence[str] = ()
) -> subprocess.CompletedProcess:
    """``glm4-tokfix ARGS`` in a subprocess (``python -m glm4_tokfix.cli``), output captured as text."""
    command = [*prefix, sys.executable, "-m", "glm4_tokfix.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env or subprocess_env(), timeout=300)


def snapshot(folder: Path) -> Dict[str, tuple]:
    """Everything in ``folder`` (recursively, symlinks not followed): relative path -> (kind, content, mode)."""
    folder = Path(folder)
    entries: Dict[str, tuple] = {}
    for path in sorted(folder.rglob("*")):
        info = os.lstat(path)
        rel = str(path.relative_to(folder))
        if stat.S_ISLNK(info.st_mode):
            entries[rel] = ("link", os.readlink(path), stat.S_IMODE(info.st_mode))
        elif stat.S_ISDIR(info.st_mode):
            entries[rel] = ("dir", None, stat.S_IMODE(info.st_mode))
        else:
            entries[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest(), stat.S_IMODE(info.st_mode))
    return entries


#: the start of every clean-process script: after it, glm4_tokfix cannot be imported
BLOCK_PACKAGE = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class BlockGlm4Tokfix(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "glm4_tokfix" or name.startswith("glm4_tokfix."):
                raise ModuleNotFoundError(f"{name} is blocked in this test", name=name)

    sys.meta_path.insert(0, BlockGlm4Tokfix())
    """
)

# Runs in a subprocess: make glm4_tokfix unimportable, load argv[1] with plain AutoTokenizer, report.
CLEAN_LOAD = BLOCK_PACKAGE + textwrap.dedent(
    """
    try:
        import glm4_tokfix  # noqa: F401
        blocked = False
    except ModuleNotFoundError:
        blocked = True

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
    job = json.loads(open(sys.argv[2], encoding="utf-8").read())
    texts, chats = job["texts"], job["chats"]
    rendered = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in chats]
    report = {
        "blocked": blocked,
        "class": type(tok).__name__,
        "module": type(tok).__module__,
        "mro": [c.__name__ for c in type(tok).__mro__],
        "singles": [tok(t).input_ids for t in texts],
        "plain": [tok(t, add_special_tokens=False).input_ids for t in texts],
        "left": {k: list(map(list, v)) for k, v in tok(texts, padding=True, padding_side="left").items()},
        "right": {k: list(map(list, v)) for k, v in tok(texts, padding=True, padding_side="right").items()},
        "rendered": rendered,
        "chat_batch": {k: list(map(list, v)) for k, v in tok(rendered, padding=True).items()},
        "decoded": [tok.decode(tok(t, add_special_tokens=False).input_ids) for t in texts],
        "pair": tok(texts[0], texts[-1]).input_ids,
        "prefix": tok.convert_tokens_to_ids(["[gMASK]", "<sop>"]),
        "eos": tok.convert_tokens_to_ids("<|endoftext|>"),
        "glm4_tokfix_modules": sorted(m for m in sys.modules if m.startswith("glm4_tokfix")),
    }
    print(json.dumps(report))
    """
)

CLEAN_TEXTS = [
    "[gMASK]<sop><|user|>\nhi<|assistant|>",
    "<|user|>\na much longer question, 你好 🎉<|assistant|>",
    "plain text with <|endoftext|> and [MASK] literals",
]
CLEAN_CHATS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is 2+2? 你好"}],
]


def load_in_clean_process(folder: Path, tmp: Path, texts: List[str] = CLEAN_TEXTS, chats=CLEAN_CHATS) -> Dict:
    if chats:
        pytest.importorskip("jinja2", reason="the clean process renders chats with the chat template")
    job = Path(tmp) / f"job_{uuid.uuid4().hex[:8]}.json"
    job.write_text(json.dumps({"texts": texts, "chats": chats}), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-c", CLEAN_LOAD, str(folder), str(job)],
        capture_output=True,
        text=True,
        env=subprocess_env(tmp),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_clean_report(report: Dict, reference, texts: List[str] = CLEAN_TEXTS) -> None:
    """The clean-process tokenizer is the fixed class and behaves exactly like ``reference`` (our fixed class)."""
    assert report["blocked"], "the subprocess could still import glm4_tokfix"
    assert report["glm4_tokfix_modules"] == []
    assert report["module"].startswith("transformers_modules"), report["module"]
    assert report["class"] == "ChatGLM4Tokenizer" and "GLM4FixMixin" in report["mro"], report["mro"]
    prefix = reference.get_prefix_tokens()
    assert report["prefix"] == prefix
    assert report["singles"] == [reference(t).input_ids for t in texts]
    for side in ("left", "right"):
        expected = reference(texts, padding=True, padding_side=side)
        assert report[side] == {k: list(map(list, v)) for k, v in expected.items()}
        for ids, mask, single in zip(report[side]["input_ids"], report[side]["attention_mask"], report["singles"]):
            assert [t for t, m in zip(ids, mask) if m] == single
            assert (mask[0] == 0) == (side == "left" and len(single) < len(ids))
    for row, mask in zip(report["chat_batch"]["input_ids"], report["chat_batch"]["attention_mask"]):
        real = [t for t, m in zip(row, mask) if m]
        assert real[:2] == prefix and real[2:4] != prefix, "a rendered chat got a second [gMASK]<sop>"
    assert report["decoded"] == texts
    plain0, plain1 = report["plain"][0], report["plain"][-1]
    body0 = plain0[2:] if plain0[:2] == prefix else plain0
    assert report["pair"] == prefix + body0 + plain1 + [report["eos"]]


def drop_export(out: Path, folder: Path) -> None:
    """Do with ``glm4-tokfix export``'s output what a model repository does: the bundle's files beside the
    vocabulary and ``auto_map.AutoTokenizer`` pointing at its ``ChatGLM4Tokenizer``."""
    import shutil

    from glm4_tokfix.remote_code import BUNDLE_FILES, SLOW_MODULE

    for name in BUNDLE_FILES:
        shutil.copyfile(out / name, folder / name)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.setdefault("auto_map", {})["AutoTokenizer"] = [f"{SLOW_MODULE}.ChatGLM4Tokenizer", None]
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")


# Run in a subprocess: make glm4_tokfix unimportable, then load a saved folder with plain AutoTokenizer.
LOAD_WITHOUT_PACKAGE = BLOCK_PACKAGE + textwrap.dedent(
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
    texts = ["[gMASK]<sop><|user|>\\nhi<|assistant|>", "<|user|>\\na longer question<|assistant|>"]
    right = tok(texts, padding=True, padding_side="right")
    print(json.dumps({
        "class": type(tok).__name__,
        "module": type(tok).__module__,
        "mro": [c.__name__ for c in type(tok).__mro__],
        "left": dict(tok(texts, padding=True)),
        "right": dict(right),
        "decoded": tok.decode(tok.encode(texts[0], add_special_tokens=False)),
        "glm4_tokfix_loaded": any(m.startswith("glm4_tokfix") for m in sys.modules),
    }))
    """
)


def load_saved_in_clean_process(folder, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_PACKAGE, str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
