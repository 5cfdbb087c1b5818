"""datasets fingerprints of GLM-4 tokenizers: stable across loads and processes, different for different tokenizers.

``datasets`` names the cache of ``ds.map(fn, fn_kwargs={"tok": tok})`` after a dill hash of ``fn`` and its
arguments. A tokenizer that cannot be hashed gets a random hash (the map re-runs on every run: LLaMA-Factory's
tokenized-data cache is never reused); one whose hash changes with the process or with its own use misses the
cache just the same. A remote-code class (``transformers_modules...``) is hashed by value, module globals and
all, so the fixed module's per-call state, caches and name sets must pickle the same in every process.

Each load runs in a subprocess of its own with its own modules cache and hash seed, and reports, per route,
the tokenizer's hash just after loading, after using it (plain, pairs, offsets, chats with masks), after a
second load, and the fingerprint of a ``ds.map`` over it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import glm4_tokfix
from locations import REAL_DIR, TINY_DIR, requires_real

pytest.importorskip("datasets")

SCRIPT = textwrap.dedent(
    r"""
    import json, sys, warnings
    warnings.simplefilter("ignore")
    import glm4_tokfix
    import datasets
    from datasets.fingerprint import Hasher
    from transformers import AutoTokenizer

    datasets.disable_progress_bars()
    routes = json.loads(sys.argv[1])
    chat = [{"role": "user", "content": "hi <|user|> 你好"}, {"role": "assistant", "content": "yo 😀"}]

    def load(how, path):
        if how == "installed":
            return glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(path)
        if how == "remote":
            return AutoTokenizer.from_pretrained(path, trust_remote_code=True)
        if how == "patch":
            return glm4_tokfix.patch(AutoTokenizer.from_pretrained(path, trust_remote_code=True))
        if how == "fast-patch":
            return glm4_tokfix.from_pretrained(path)
        raise ValueError(how)

    def use(tok):
        tok(["hello world", "a"], padding=True, return_offsets_mapping=True)
        tok("a b c", "d", truncation=True, max_length=5)
        tok.apply_chat_template([chat], tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        tok.decode(tok("x <|user|> y")["input_ids"])

    def encode(batch, tok):
        return {"ids": tok(batch["text"])["input_ids"]}

    out = {}
    for name, (how, path, added) in routes.items():
        tok = load(how, path)
        if added:
            tok.add_tokens(added)
        fresh = Hasher.hash(tok)
        use(tok)
        used = Hasher.hash(tok)
        again = load(how, path)
        if added:
            again.add_tokens(added)
        ds = datasets.Dataset.from_dict({"text": ["hello world", "你好 <|user|>"]})
        mapped = ds.map(encode, fn_kwargs={"tok": tok}, batched=True, keep_in_memory=True)
        out[name] = [fresh, used, Hasher.hash(again), mapped._fingerprint]
    print(json.dumps(out))
    """
)


def fingerprints(routes, tmp_path, seed):
    """Run SCRIPT in a fresh process (own modules cache and hash seed): route -> [fresh, used, again, map]."""
    env = dict(os.environ, PYTHONHASHSEED=str(seed), HF_MODULES_CACHE=str(tmp_path / f"modules-{seed}"))
    env["HF_DATASETS_CACHE"] = str(tmp_path / f"datasets-{seed}")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(routes)], capture_output=True, text=True, timeout=900, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def remote_folders(tmp_path, vocab):
    """An upstream stand-in folder, and a copy patched with ``glm4-tokfix patch`` (loads the fix as remote code)."""
    from glm4_tokfix.model_folder import patch_folder
    from standins import make_model_folder

    upstream = make_model_folder(tmp_path / "glm-4-9b-chat", "current", vocab)
    patched = tmp_path / "glm-4-9b-chat-patched"
    shutil.copytree(upstream, patched)
    patch_folder(patched)
    return upstream, patched


def check(first, second, routes):
    for name in routes:
        assert len(set(first[name] + second[name])) == 2, (name, first[name], second[name])  # 3 hashes, 1 map
        assert first[name] == second[name], name
    tokenizer_hashes = [first[name][0] for name in routes]
    assert len(set(tokenizer_hashes)) == len(tokenizer_hashes), first  # different tokenizers, different hashes


def test_fingerprints_are_stable_across_loads_and_processes(tmp_path, fast_folder):
    from glm4_tokfix.model_folder import patch_folder

    upstream, patched = remote_folders(tmp_path, TINY_DIR)
    fast_remote = tmp_path / "glm-4-9b-chat-hf-patched"
    shutil.copytree(fast_folder("tiny", "chat-hf"), fast_remote)
    patch_folder(fast_remote)
    routes = {
        "installed": ["installed", str(TINY_DIR), None],
        "installed+token": ["installed", str(TINY_DIR), ["<x>"]],
        "patched folder (remote code)": ["remote", str(patched), None],
        "patched folder + token": ["remote", str(patched), ["<x>"]],
        "glm4_tokfix.patch(upstream)": ["patch", str(upstream), None],
        "fast, patched": ["fast-patch", str(fast_folder("tiny", "chat-hf")), None],
        "patched fast folder (remote code)": ["remote", str(fast_remote), None],
    }
    check(fingerprints(routes, tmp_path, 1), fingerprints(routes, tmp_path, 2), routes)


@requires_real
@pytest.mark.real_vocab
@pytest.mark.slow
def test_fingerprints_on_the_real_vocabulary(tmp_path):
    _, patched = remote_folders(tmp_path / "real", REAL_DIR)
    routes = {
        "patched folder (remote code)": ["remote", str(patched), None],
        "patched folder, tiny vocabulary": ["remote", str(remote_folders(tmp_path / "tiny", TINY_DIR)[1]), None],
    }
    check(fingerprints(routes, tmp_path, 3), fingerprints(routes, tmp_path, 4), routes)


def test_call_state_and_caches_pickle_as_their_definition():
    """The module's per-call state and caches pickle without their contents (what a by-value hash sees)."""
    import pickle

    from glm4_tokfix.remote_code import glm4_encoders, glm4_offset_mixin, glm4_rows, glm4_state

    tok = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(TINY_DIR)
    tok(["hello", "world"], return_offsets_mapping=True)
    assert len(glm4_encoders._BACKENDS) > 0 and len(glm4_rows._ADDED_LITERALS) > 0
    for cache in (glm4_encoders._BACKENDS, glm4_rows._ADDED_LITERALS, glm4_offset_mixin._OFFSET_TABLES):
        assert len(pickle.loads(pickle.dumps(cache))) == 0
    token = glm4_state._PREFIX_STRIPPED.set(True)
    try:
        copy = pickle.loads(pickle.dumps(glm4_state._PREFIX_STRIPPED))
        assert copy.get() is False and glm4_state._PREFIX_STRIPPED.get() is True
    finally:
        glm4_state._PREFIX_STRIPPED.reset(token)
    assert pickle.dumps(glm4_rows.GLM4BatchEncoder._GLM4_FAST_KWARGS) == pickle.dumps(
        glm4_state._NameSet(sorted(glm4_rows.GLM4BatchEncoder._GLM4_FAST_KWARGS, reverse=True))
    )
    assert not [name for name in vars(tok) if name.endswith("_cache")]
