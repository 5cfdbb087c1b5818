"""What serving engines (vLLM, SGLang) need from glm4-tokfix, without an engine (tests/clients/vllm_engine/ runs the real vLLM).

* ``enable()`` on a glm-4-9b-chat remote-code folder loaded without ``trust_remote_code`` (left out or False):
  the installed ``glm4_tokfix.ChatGLM4Tokenizer``; nothing from the folder runs. With trust: today's behaviour.
* The vLLM plugin's entry point and ``register()``.
* Folders as transformers 5 writes them (added tokens only in tokenizer.json, ``chat_template.jinja``):
  ``patch``/``unpatch``/``check``/``convert``/``enable()``.
* A patched tokenizer.json tokenizer keeps a real ``tokenizers.Tokenizer`` that ``DecodeStream`` (vLLM's
  streaming detokenizer) accepts.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import pytest
import transformers

import glm4_tokfix
from glm4_tokfix import model_folder, patching
from patch_helpers import run_cli, snapshot, standin_folder

TINY = Path(glm4_tokfix.TINY_GLM4_DIR)
ROOT = Path(__file__).resolve().parents[2]
V5 = int(transformers.__version__.split(".")[0]) >= 5
TEXTS = ["hello world", "[gMASK]<sop><|user|>\nhi 你好<|assistant|>", ""]
CHAT = [{"role": "user", "content": "hi 你好"}, {"role": "assistant", "content": "yo"}]


@pytest.fixture(autouse=True)
def disabled_after():
    yield
    glm4_tokfix.disable()
    assert not patching.is_enabled()


def poisoned_remote_folder(base: Path, revision: str = "current") -> Path:
    """A glm-4-9b-chat remote-code folder whose tokenization_chatglm.py raises if anything imports it (its class
    stays in the file: enable() reads the file to tell glm-4-9b-chat's class from others, running nothing)."""
    folder = standin_folder(base, revision, TINY)
    module = folder / "tokenization_chatglm.py"
    module.write_text(
        "raise RuntimeError('the remote code ran')\n" + module.read_text(encoding="utf-8"), encoding="utf-8"
    )
    return folder


@pytest.mark.parametrize("trust", ["left out", False])
def test_enable_loads_the_installed_fix_without_trust(tmp_path, trust, tiny_tok):
    from transformers import AutoTokenizer

    folder = poisoned_remote_folder(tmp_path)
    kwargs = {} if trust == "left out" else {"trust_remote_code": False}
    with glm4_tokfix.enable():
        tok = AutoTokenizer.from_pretrained(str(folder), truncation_side="left", use_fast=True, **kwargs)
    assert type(tok) is glm4_tokfix.ChatGLM4Tokenizer
    assert tok.truncation_side == "left"
    for text in TEXTS:
        assert tok(text)["input_ids"] == tiny_tok(text)["input_ids"]
    assert tok(TEXTS[0])["input_ids"][:2] == tok.convert_tokens_to_ids(["[gMASK]", "<sop>"])
    assert tok.apply_chat_template(CHAT, tokenize=False) == tiny_tok.apply_chat_template(CHAT, tokenize=False)


def test_enable_takes_the_autotokenizer_only_arguments_off(tmp_path):
    """vLLM passes config, revision, cache_dir and (5.x) mistral_format; AutoTokenizer's own ones never reach
    the tokenizer's constructor."""
    from transformers import AutoTokenizer

    folder = poisoned_remote_folder(tmp_path)
    with glm4_tokfix.enable():
        tok = AutoTokenizer.from_pretrained(
            folder, trust_remote_code=False, config=None, revision=None, cache_dir=None, mistral_format=False,
            tokenizer_type=None, code_revision=None,
        )  # fmt: skip
    assert type(tok) is glm4_tokfix.ChatGLM4Tokenizer
    assert not {"mistral_format", "tokenizer_type", "code_revision", "config"} & set(tok.init_kwargs)


def test_enable_follows_subfolder(tmp_path):
    from transformers import AutoTokenizer

    folder = poisoned_remote_folder(tmp_path / "repo")
    with glm4_tokfix.enable():
        tok = AutoTokenizer.from_pretrained(str(folder.parent), subfolder=folder.name)
    assert type(tok) is glm4_tokfix.ChatGLM4Tokenizer


@pytest.mark.parametrize("revision", ["current", "mid2024"])
def test_enable_with_trust_keeps_the_folders_class_patched(tmp_path, revision):
    from transformers import AutoTokenizer

    folder = standin_folder(tmp_path, revision, TINY)
    with glm4_tokfix.enable():
        tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True)
    assert glm4_tokfix.is_patched(tok)
    assert type(tok)._glm4_tokfix_base.__module__.startswith("transformers_modules")


def test_disabled_nothing_changes_without_trust(tmp_path):
    """Without enable(), transformers decides (5.x: a generic class or a prompt error; 4.x: an error)."""
    from transformers import AutoTokenizer

    folder = poisoned_remote_folder(tmp_path)
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except (ValueError, OSError, RuntimeError):
        return
    assert type(tok) is not glm4_tokfix.ChatGLM4Tokenizer


def test_enable_leaves_other_remote_code_folders_alone(tmp_path):
    """Only ChatGLM4Tokenizer classes are taken over: e.g. a ChatGLM3 style class name is transformers' business."""
    folder = standin_folder(tmp_path, "current", TINY)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoTokenizer": ["tokenization_chatglm.ChatGLMTokenizer", None]}
    config_path.write_text(json.dumps(config), encoding="utf-8")
    assert patching.remote_glm4_folder(str(folder)) is None
    assert patching.remote_glm4_folder(str(standin_folder(tmp_path / "b", "current", TINY))) is not None
    assert patching.remote_glm4_folder("THUDM/glm-4-9b-chat") is None  # hub ids: transformers decides
    assert patching.remote_glm4_folder(None) is None


def test_enable_leaves_bert_untouched(tmp_path):
    from transformers import AutoTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}), "utf-8")
    plain = AutoTokenizer.from_pretrained(str(tmp_path))
    with glm4_tokfix.enable():
        tok = AutoTokenizer.from_pretrained(str(tmp_path), trust_remote_code=False)
    assert type(tok) is type(plain) and not glm4_tokfix.is_patched(tok)
    assert tok("hello world")["input_ids"] == plain("hello world")["input_ids"]


# ------------------------------------------------------------------ the vLLM plugin
def test_pyproject_declares_the_vllm_general_plugin():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    entry = data["project"]["entry-points"]["vllm.general_plugins"]
    assert entry == {"glm4_tokfix": "glm4_tokfix.vllm_plugin:register"}
    from glm4_tokfix import vllm_plugin

    assert vllm_plugin.PLUGIN_NAME == "glm4_tokfix"


def test_plugin_module_imports_nothing_heavy():
    import subprocess

    code = (
        "import sys, glm4_tokfix.vllm_plugin as p; "
        "print(sorted(m for m in ('transformers', 'torch', 'vllm', 'tokenizers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_plugin_register_enables_and_logs_once(caplog, tmp_path):
    from transformers import AutoTokenizer

    from glm4_tokfix import vllm_plugin

    with caplog.at_level(logging.INFO, logger="vllm.plugins.glm4_tokfix"):
        vllm_plugin.register()
        vllm_plugin.register()  # vLLM may load plugins again in one process
    lines = [r.getMessage() for r in caplog.records if r.name == "vllm.plugins.glm4_tokfix"]
    assert len(lines) == 1 and "plugin active" in lines[0] and "VLLM_PLUGINS" in lines[0]
    assert patching.is_enabled()
    tok = AutoTokenizer.from_pretrained(str(poisoned_remote_folder(tmp_path)), trust_remote_code=False)
    assert type(tok) is glm4_tokfix.ChatGLM4Tokenizer


# ------------------------------------------------------------ folders transformers 5 writes
def transformers5_fast_folder(dest: Path, source: Path) -> Path:
    """``source`` (a fast GLM-4 folder) as transformers 5's save_pretrained writes it.

    On 5.x it is saved for real. On 4.x the same layout is written: tokenizer.json as it is (it holds the added
    tokens), tokenizer_config.json without added_tokens_decoder and chat_template, the template in
    chat_template.jinja.
    """
    if V5:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(dest))
    else:
        dest.mkdir(parents=True)
        shutil.copyfile(source / "tokenizer.json", dest / "tokenizer.json")
        config = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
        (dest / "chat_template.jinja").write_text(config.pop("chat_template"), encoding="utf-8")
        config.pop("added_tokens_decoder")
        config.pop("additional_special_tokens", None)
        # 5.x writes "TokenizersBackend", a class 4.x does not have (it cannot load such a folder unpatched)
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        (dest / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    config = json.loads((dest / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert "added_tokens_decoder" not in config and "chat_template" not in config
    assert (dest / "chat_template.jinja").is_file()
    return dest


@pytest.fixture(params=["chat-hf", "0414"])
def t5_folder(request, fast_folder, tmp_path):
    return transformers5_fast_folder(tmp_path / "saved", fast_folder("tiny", request.param)), request.param


def test_patch_unpatch_transformers5_folder(t5_folder, tiny_tok):
    from transformers import AutoTokenizer

    folder, style = t5_folder
    before = snapshot(folder)
    result = run_cli("patch", folder)
    assert result.returncode == 0, result.stderr
    assert model_folder.inspect_folder(folder).patched
    tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True)
    assert glm4_tokfix.is_patched(tok)
    for text in TEXTS:
        expected = (
            tiny_tok(text)["input_ids"] if style == "chat-hf" else tiny_tok(text, add_special_tokens=False)["input_ids"]
        )
        assert tok(text)["input_ids"] == expected
    assert tok.apply_chat_template(CHAT, tokenize=False) == tiny_tok.apply_chat_template(CHAT, tokenize=False)
    result = run_cli("unpatch", folder)
    assert result.returncode == 0, result.stderr
    assert snapshot(folder) == before


def test_check_and_enable_on_transformers5_folder(t5_folder, tiny_tok):
    from transformers import AutoTokenizer

    folder, style = t5_folder
    result = run_cli("check", folder, "--examples", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    with glm4_tokfix.enable():
        tok = AutoTokenizer.from_pretrained(str(folder))
    assert glm4_tokfix.is_patched(tok)
    if style == "chat-hf":
        assert tok(TEXTS[1])["input_ids"] == tiny_tok(TEXTS[1])["input_ids"]


def test_not_glm4_message_names_both_files(tmp_path, fast_folder):
    folder = transformers5_fast_folder(tmp_path / "saved", fast_folder("tiny", "chat-hf"))
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != "<sop>"]
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=r"does not register <sop> in added_tokens_decoder \(nor tokenizer.json"):
        model_folder.inspect_folder(folder)


def test_convert_a_folder_with_chat_template_jinja(tmp_path, tiny_tok):
    """A glm-4-9b-chat folder saved by transformers 5 keeps its template in chat_template.jinja."""
    from transformers import AutoTokenizer

    src = standin_folder(tmp_path, "current", TINY)
    config = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    (src / "chat_template.jinja").write_text(config.pop("chat_template"), encoding="utf-8")
    (src / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    out = tmp_path / "converted"
    result = run_cli("convert", src, out)
    assert result.returncode == 0, result.stderr
    assert "{% generation %}" in (out / "chat_template.jinja").read_text(encoding="utf-8")
    tok = AutoTokenizer.from_pretrained(str(out), trust_remote_code=True)
    assert tok.apply_chat_template(CHAT, tokenize=False) == tiny_tok.apply_chat_template(CHAT, tokenize=False)
    encoded = tok.apply_chat_template(CHAT, return_dict=True, return_assistant_tokens_mask=True)
    assert any(encoded["assistant_masks"])


# ------------------------------------------------------------ vLLM's streaming detokenizer
@pytest.mark.parametrize("how", ["patched", "converted"])
def test_decode_stream_takes_the_rust_tokenizer(how, fast_folder, tmp_path):
    """vLLM's FastIncrementalDetokenizer: DecodeStream.step(tok._tokenizer, id) per id gives decode(ids).

    Before the fix the patched tokenizer's _tokenizer was a GLM4FastBackend wrapper: every step raised TypeError
    and vLLM returned "" for every request.
    """
    from tokenizers import Tokenizer
    from tokenizers.decoders import DecodeStream
    from transformers import AutoTokenizer

    if how == "patched":
        tok = glm4_tokfix.patch(AutoTokenizer.from_pretrained(str(fast_folder("tiny", "chat-hf"))))
    else:
        out = tmp_path / "converted"
        assert run_cli("convert", TINY, out).returncode == 0
        tok = AutoTokenizer.from_pretrained(str(out), trust_remote_code=True)
    assert isinstance(tok._tokenizer, Tokenizer) and isinstance(tok.backend_tokenizer, Tokenizer)
    ids = tok("<|user|>\nhello 你好 world 🙂<|assistant|>")["input_ids"]
    for skip in (True, False):
        stream = DecodeStream(skip_special_tokens=skip)
        text = "".join(stream.step(tok._tokenizer, i) or "" for i in ids)
        assert text == tok.decode(ids, skip_special_tokens=skip)
