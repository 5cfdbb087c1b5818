"""glm4_tokfix.patch / is_patched / from_pretrained / enable / disable, and what patched tokenizers keep doing.

The route-by-route property checks are in test_patch_routes.py; here: in-place
patching and its class, detection (TypeError for anything that is not GLM-4),
pickling across processes, save_pretrained, and enable()/disable() restoring
transformers exactly while leaving other tokenizers alone.
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import pickle
import subprocess
import sys
import textwrap
import warnings

import pytest

import glm4_tokfix
from glm4_tokfix import model_folder, patching
from patch_helpers import (
    check_clean_report,
    load,
    load_in_clean_process,
    standin_folder,
    subprocess_env,
)

TEXTS = ["[gMASK]<sop><|user|>\nhi<|assistant|>", "<|user|>\na longer question 你好<|assistant|>", "x"]


def auto_from_pretrained():
    """The attribute object transformers keeps on AutoTokenizer (not the bound method)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.__dict__["from_pretrained"]


@pytest.fixture(autouse=True, scope="module")
def original_from_pretrained():
    original = auto_from_pretrained()
    yield original
    glm4_tokfix.disable()
    assert auto_from_pretrained() is original


@pytest.fixture(autouse=True)
def always_disabled(original_from_pretrained):
    """Every test starts and ends with transformers untouched."""
    assert auto_from_pretrained() is original_from_pretrained
    yield
    glm4_tokfix.disable()
    assert auto_from_pretrained() is original_from_pretrained
    assert not glm4_tokfix.patching.is_enabled()


@pytest.fixture(params=["current", "mid2024"])
def revision(request):
    return request.param


@pytest.fixture
def standin(revision, tmp_path):
    return load(standin_folder(tmp_path, revision, glm4_tokfix.TINY_GLM4_DIR))


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    """A tiny BERT tokenizer written locally (no download): not GLM-4."""
    folder = tmp_path_factory.mktemp("bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "the", "##s", ",", "!"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 32}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


# ------------------------------------------------------------------ patch()
def test_patch_is_in_place(standin):
    original_class = type(standin)
    assert not glm4_tokfix.is_patched(standin)
    assert glm4_tokfix.patch(standin) is standin
    assert glm4_tokfix.is_patched(standin)
    assert type(standin) is not original_class and isinstance(standin, original_class)
    # the fix (with the padding rules and fast path it is built from) sits right before the original class
    mixin = glm4_tokfix.GLM4FixMixin
    assert type(standin).__mro__[1 : len(mixin.__mro__) + 2] == (
        patching._PatchedTokenizer,
        *mixin.__mro__[:-1],
        original_class,
    )
    assert type(standin).__name__ == original_class.__name__  # what save_pretrained records as tokenizer_class
    assert "Patched[" in type(standin).__qualname__


def test_patching_twice_is_harmless(standin):
    glm4_tokfix.patch(standin)
    once = type(standin)
    before = dict(standin(TEXTS, padding=True, padding_side="right"))
    assert glm4_tokfix.patch(standin) is standin
    assert type(standin) is once
    assert dict(standin(TEXTS, padding=True, padding_side="right")) == before


def test_patched_class_is_built_once_per_class(tmp_path):
    a = load(standin_folder(tmp_path, "current", glm4_tokfix.TINY_GLM4_DIR))
    b = copy.copy(a)  # same class, another object
    other = load(standin_folder(tmp_path, "mid2024", glm4_tokfix.TINY_GLM4_DIR))
    glm4_tokfix.patch(a), glm4_tokfix.patch(b), glm4_tokfix.patch(other)
    assert type(a) is type(b)
    assert type(other) is not type(a)
    assert patching.patched_class(type(a)._glm4_tokfix_base) is type(a)


def test_mid2024_pad_takes_padding_side_after_patch(tmp_path):
    """The mid-2024 _pad has no padding_side parameter and asserts left; patched, both sides work."""
    tok = glm4_tokfix.patch(load(standin_folder(tmp_path, "mid2024", glm4_tokfix.TINY_GLM4_DIR)))
    right = tok(TEXTS, padding=True, padding_side="right")
    assert [m[0] for m in right.attention_mask] == [1, 1, 1] and right.attention_mask[2][-1] == 0
    tok.padding_side = "right"
    assert dict(tok(TEXTS, padding=True)) == dict(right)


def test_our_own_tokenizer_counts_as_patched(tiny_tok):
    assert glm4_tokfix.is_patched(tiny_tok)
    cls = type(tiny_tok)
    assert glm4_tokfix.patch(tiny_tok) is tiny_tok and type(tiny_tok) is cls


@pytest.mark.parametrize("value", [None, "THUDM/glm-4-9b-chat", 42, object()])
def test_patch_rejects_non_tokenizers(value):
    assert not glm4_tokfix.is_patched(value)
    with pytest.raises(TypeError, match=f"needs a GLM-4 tokenizer, got {type(value).__name__}"):
        glm4_tokfix.patch(value)


@pytest.mark.parametrize("use_fast", [True, False])
def test_patch_rejects_bert_and_leaves_it_alone(bert_folder, use_fast):
    from transformers import AutoTokenizer

    bert = AutoTokenizer.from_pretrained(str(bert_folder), use_fast=use_fast)
    cls = type(bert)
    before = bert("hello worlds!").input_ids
    with pytest.raises(TypeError, match=f"got transformers\\..*{cls.__name__}"):
        glm4_tokfix.patch(bert)
    assert type(bert) is cls and bert("hello worlds!").input_ids == before


def test_patch_rejects_a_tokenizer_without_glm4_added_tokens(tmp_path):
    """A GLM-like class whose config registers no [gMASK]/<sop>: not something the fix can work with."""
    folder = standin_folder(tmp_path, "current", glm4_tokfix.TINY_GLM4_DIR)
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    for key in ("added_tokens_decoder", "additional_special_tokens", "chat_template"):
        config.pop(key)
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    tok = load(folder)
    with pytest.raises(TypeError, match=r"\[gMASK\], <sop> are not registered as added tokens"):
        glm4_tokfix.patch(tok)
    assert not glm4_tokfix.is_patched(tok)


# ------------------------------------------------------------ from_pretrained()
def test_from_pretrained_passes_arguments_through(tmp_path, revision):
    folder = standin_folder(tmp_path, revision, glm4_tokfix.TINY_GLM4_DIR)
    tok = glm4_tokfix.from_pretrained(folder, padding_side="right")
    assert glm4_tokfix.is_patched(tok) and tok.padding_side == "right"
    assert tok(TEXTS, padding=True).attention_mask[2][-1] == 0


def test_from_pretrained_rejects_other_tokenizers(bert_folder):
    with pytest.raises(TypeError, match="needs a GLM-4 tokenizer, got transformers"):
        glm4_tokfix.from_pretrained(str(bert_folder))


# ---------------------------------------------------------------- pickling
def test_pickle_and_deepcopy(standin):
    glm4_tokfix.patch(standin)
    expected = dict(standin(TEXTS, padding=True, padding_side="right"))
    for clone in (pickle.loads(pickle.dumps(standin)), copy.deepcopy(standin)):
        assert type(clone) is type(standin) and clone is not standin
        assert dict(clone(TEXTS, padding=True, padding_side="right")) == expected
        assert clone.decode(clone("<|user|>\nhi").input_ids) == "[gMASK]<sop><|user|>\nhi"


def test_unpickles_in_a_fresh_process(standin, tmp_path):
    """A new interpreter has never loaded the remote module: unpickling finds it and patches again."""
    glm4_tokfix.patch(standin)
    path = tmp_path / "tok.pkl"
    path.write_bytes(pickle.dumps(standin))
    code = textwrap.dedent(
        """
        import json, pickle, sys
        tok = pickle.loads(open(sys.argv[1], "rb").read())
        texts = json.loads(sys.argv[2])
        print(json.dumps({"qualname": type(tok).__qualname__,
                          "right": {k: v for k, v in tok(texts, padding=True, padding_side="right").items()}}))
        """
    )
    env = subprocess_env()  # the same HF_MODULES_CACHE as this process: that is where the class lives
    result = subprocess.run([sys.executable, "-c", code, str(path), json.dumps(TEXTS)], capture_output=True,
                            text=True, env=env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["qualname"] == type(standin).__qualname__
    assert got["right"] == dict(standin(TEXTS, padding=True, padding_side="right"))


def _encode_right(args):
    tokenizer, texts = args
    return {k: list(v) for k, v in tokenizer(texts, padding=True, padding_side="right").items()}


def test_multiprocessing_spawn(standin):
    glm4_tokfix.patch(standin)
    jobs = [(standin, TEXTS), (standin, TEXTS[::-1])]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        got = pool.map(_encode_right, jobs)
    assert got == [_encode_right(job) for job in jobs]


# ------------------------------------------------------------ save_pretrained
def test_save_pretrained_writes_a_folder_that_loads_fixed(vocab_dir, revision, tok, tmp_path):
    patched = glm4_tokfix.patch(load(standin_folder(tmp_path, revision, vocab_dir)))
    out = tmp_path / "saved"
    files = patched.save_pretrained(out)
    module = out / model_folder.MODULE_FILE
    assert str(module) in files
    assert module.read_bytes() == model_folder.fixed_module_bytes()
    assert not (out / "tokenization_chatglm.py").exists()  # upstream's module is not carried along
    config = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["auto_map"]["AutoTokenizer"] == [model_folder.CLASS_REF, None]
    assert config["tokenizer_class"] == "ChatGLM4Tokenizer"
    check_clean_report(load_in_clean_process(out, tmp_path), tok)


def test_save_pretrained_with_filename_prefix(tmp_path):
    patched = glm4_tokfix.patch(load(standin_folder(tmp_path, "current", glm4_tokfix.TINY_GLM4_DIR)))
    patched.save_pretrained(tmp_path / "out", filename_prefix="mine")
    config = json.loads((tmp_path / "out" / "mine-tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["auto_map"]["AutoTokenizer"] == [model_folder.CLASS_REF, None]
    assert (tmp_path / "out" / model_folder.MODULE_FILE).is_file()


# ----------------------------------------------------------- enable/disable
def test_enable_fixes_glm4_and_leaves_other_tokenizers_alone(tmp_path, bert_folder, revision, original_from_pretrained):
    from transformers import AutoTokenizer

    glm_folder = standin_folder(tmp_path, revision, glm4_tokfix.TINY_GLM4_DIR)
    baseline_glm = load(glm_folder)
    baseline_bert = AutoTokenizer.from_pretrained(str(bert_folder), trust_remote_code=True)
    baseline_slow = AutoTokenizer.from_pretrained(str(bert_folder), use_fast=False)

    handle = glm4_tokfix.enable()
    assert auto_from_pretrained() is not original_from_pretrained
    glm = AutoTokenizer.from_pretrained(str(glm_folder), trust_remote_code=True)
    bert = AutoTokenizer.from_pretrained(str(bert_folder), trust_remote_code=True)
    slow = AutoTokenizer.from_pretrained(str(bert_folder), use_fast=False)
    assert glm4_tokfix.is_patched(glm) and isinstance(glm, type(baseline_glm))
    assert glm(TEXTS, padding=True, padding_side="right").attention_mask[2][-1] == 0
    for got, baseline in ((bert, baseline_bert), (slow, baseline_slow)):
        assert type(got) is type(baseline) and not glm4_tokfix.is_patched(got)
        assert dict(got(["hello worlds!", "the world"], padding=True)) == dict(
            baseline(["hello worlds!", "the world"], padding=True)
        )

    glm4_tokfix.disable()
    assert auto_from_pretrained() is original_from_pretrained
    assert not glm4_tokfix.is_patched(load(glm_folder))
    assert handle.was_enabled is False


def test_enable_is_a_context_manager(tmp_path, original_from_pretrained):
    folder = standin_folder(tmp_path, "current", glm4_tokfix.TINY_GLM4_DIR)
    with glm4_tokfix.enable() as handle:
        assert patching.is_enabled() and isinstance(handle, patching.EnableHandle)
        inside = load(folder)
    assert auto_from_pretrained() is original_from_pretrained and not patching.is_enabled()
    assert glm4_tokfix.is_patched(inside)
    assert not glm4_tokfix.is_patched(load(folder))


def test_context_manager_restores_even_on_error(original_from_pretrained):
    with pytest.raises(RuntimeError, match="boom"), glm4_tokfix.enable():
        raise RuntimeError("boom")
    assert auto_from_pretrained() is original_from_pretrained


def test_enable_twice_and_disable_when_not_enabled_are_harmless(tmp_path, original_from_pretrained):
    glm4_tokfix.disable()
    glm4_tokfix.disable()
    assert auto_from_pretrained() is original_from_pretrained
    glm4_tokfix.enable()
    wrapper = auto_from_pretrained()
    second = glm4_tokfix.enable()
    assert auto_from_pretrained() is wrapper and second.was_enabled
    assert glm4_tokfix.is_patched(load(standin_folder(tmp_path, "mid2024", glm4_tokfix.TINY_GLM4_DIR)))
    glm4_tokfix.disable()
    assert auto_from_pretrained() is original_from_pretrained
    glm4_tokfix.disable()
    assert auto_from_pretrained() is original_from_pretrained


def test_nested_context_managers(original_from_pretrained):
    with glm4_tokfix.enable():
        with glm4_tokfix.enable():
            pass
        assert patching.is_enabled()  # the inner block did not switch off the outer one
    assert auto_from_pretrained() is original_from_pretrained

    glm4_tokfix.enable()
    with glm4_tokfix.enable():
        pass
    assert patching.is_enabled()  # enabled before the block: still enabled after it
    glm4_tokfix.disable()
    assert auto_from_pretrained() is original_from_pretrained


def test_disable_leaves_a_later_foreign_wrapper_in_place(tmp_path, original_from_pretrained):
    from transformers import AutoTokenizer

    glm4_tokfix.enable()
    ours = auto_from_pretrained()
    calls = []

    def foreign(cls, *args, **kwargs):
        calls.append(args[0])
        return ours.__func__(cls, *args, **kwargs)

    foreign_cm = classmethod(foreign)
    AutoTokenizer.from_pretrained = foreign_cm
    try:
        with pytest.warns(RuntimeWarning, match="wrapped again"):
            glm4_tokfix.disable()
        assert auto_from_pretrained() is foreign_cm
        folder = standin_folder(tmp_path, "current", glm4_tokfix.TINY_GLM4_DIR)
        assert not glm4_tokfix.is_patched(AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True))
        assert calls == [str(folder)]
        glm4_tokfix.enable()  # our hook inside the foreign wrapper switches back on
        assert glm4_tokfix.is_patched(AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            glm4_tokfix.disable()
    finally:
        AutoTokenizer.from_pretrained = original_from_pretrained
    glm4_tokfix.disable()
    assert patching._HOOK is None


def test_enable_again_after_someone_restored_transformers(tmp_path, original_from_pretrained):
    from transformers import AutoTokenizer

    folder = standin_folder(tmp_path, "current", glm4_tokfix.TINY_GLM4_DIR)
    glm4_tokfix.enable()
    AutoTokenizer.from_pretrained = original_from_pretrained  # e.g. another library undoing its own patching
    assert not patching.is_enabled()
    assert not glm4_tokfix.is_patched(load(folder))
    assert glm4_tokfix.enable().was_enabled is False
    assert glm4_tokfix.is_patched(load(folder))
    glm4_tokfix.disable()
    assert auto_from_pretrained() is original_from_pretrained and patching._HOOK is None


# ----------------------------------------------------------- import hygiene
def test_imports_are_lazy_and_have_no_side_effects():
    code = textwrap.dedent(
        """
        import argparse, sys
        import glm4_tokfix, glm4_tokfix.patching, glm4_tokfix.model_folder, glm4_tokfix.cli
        parser = glm4_tokfix.cli.build_parser()
        parser.parse_args(["patch", "somewhere"])
        heavy = sorted(m for m in ("transformers", "tiktoken", "torch", "glm4_tokfix.remote_code.tokenization_glm4_tokfix")
                       if m in sys.modules)
        from transformers import AutoTokenizer
        before = AutoTokenizer.__dict__["from_pretrained"]
        glm4_tokfix.patch, glm4_tokfix.enable, glm4_tokfix.is_patched  # resolving the names enables nothing
        print(heavy, AutoTokenizer.__dict__["from_pretrained"] is before, glm4_tokfix.patching.is_enabled())
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["[]", "True", "False"]
