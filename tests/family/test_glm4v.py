"""GLM-4V-9B (and CogAgent-9B, built on it): the fix keeps the class's own image chat on every route.

The checkpoint's class (stand-in: tests/standins/upstream_glm4v.py) overrides ``apply_chat_template``: a
message's ``image`` becomes ``<|begin_of_image|><|endoftext|><|end_of_image|>`` before its content and comes
back transformed as ``images``. Every route that lays the fix over it must keep that (same ``input_ids`` and
``images`` as unpatched on transformers 4.x), while the rendered-prompt route (``tokenize=False`` then
``tok(prompts, padding=True)``) gets the fix. On transformers 5 the class calls ``batch_encode_plus``, which
5 removed: the fix provides it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import glm4_tokfix
from glm4_tokfix import model_folder
from helpers import check_padded_row, other_line_python
from patch_helpers import BLOCK_PACKAGE

torch = pytest.importorskip("torch", reason="GLM-4V-9B's class returns its images as torch tensors")
from transformers import AutoTokenizer  # noqa: E402

from standins import make_model_folder  # noqa: E402

TINY = Path(glm4_tokfix.TINY_GLM4_DIR)
IMAGE_TOKENS = ["<|begin_of_image|>", "<|endoftext|>", "<|end_of_image|>"]
ON_4X = __import__("transformers").__version__.startswith("4.")
QUESTIONS = ["what is in the picture?", "describe it\n\n in two words 你好"]


def image(seed: int):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(3, 10, 12, generator=generator)


def image_chat(k: int = 0):
    return [{"role": "user", "image": image(k), "content": QUESTIONS[k % len(QUESTIONS)]}]


CHAT_KWARGS = dict(add_generation_prompt=True, tokenize=True, return_tensors="pt", return_dict=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("glm4v") / "glm-4v-9b", "glm4v", TINY)


def load(folder, **kwargs):
    return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True, **kwargs)


def as_plain(encoding):
    return {key: value.tolist() for key, value in encoding.items()}


def expected_chat(tok, chat):
    """What the class's image chat gives, built from the class's own pieces (no batch_encode_plus): the ids of
    its ``build_single_message`` with the image tokens, and its transform of the image."""
    host = next(k for k in type(tok).__mro__ if "build_single_message" in vars(k))  # the checkpoint's class
    transforms = sys.modules[host.__module__].transforms
    size = tok.image_size
    transform = transforms.Compose([
        transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.ToTensor(),
        transforms.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    ])  # fmt: skip
    message = chat[0]
    ids = (
        host.get_prefix_tokens(tok)
        + host.build_single_message(
            tok, "user", "", message["content"], message_prefix=tok.convert_tokens_to_ids(IMAGE_TOKENS)
        )
        + [tok.convert_tokens_to_ids("<|assistant|>")]
    )
    n = len(ids)
    return {"input_ids": [ids], "attention_mask": [[1] * n], "position_ids": [list(range(n))],
            "images": transform(message["image"]).unsqueeze(0).tolist()}  # fmt: skip


@pytest.fixture(scope="module")
def unpatched(folder):
    return load(folder)


def test_unpatched_class_as_published(unpatched):
    """The stand-in shows what users see without the fix: 4.x works, 5 cannot build any chat."""
    chat = image_chat()
    if ON_4X:
        out = as_plain(unpatched.apply_chat_template(chat, **CHAT_KWARGS))
        assert out == expected_chat(unpatched, chat)
        assert [unpatched.convert_tokens_to_ids(t) for t in IMAGE_TOKENS] == out["input_ids"][0][4:7]
    else:
        with pytest.raises(AttributeError, match="batch_encode_plus"):
            unpatched.apply_chat_template(chat, **CHAT_KWARGS)
    # the seed bug: the rendered prompt gets the prefix twice
    prompt = unpatched.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    prefix = unpatched.convert_tokens_to_ids(["[gMASK]", "<sop>"])
    assert unpatched(prompt)["input_ids"][:4] == prefix * 2


def _patched(folder):
    return glm4_tokfix.patch(load(folder))


def _from_pretrained(folder):
    return glm4_tokfix.from_pretrained(str(folder))


def _enabled(folder):
    with glm4_tokfix.enable():
        return load(folder)


def _patched_folder(folder, tmp):
    copy = tmp / "patched"
    shutil.copytree(folder, copy)
    model_folder.patch_folder(copy)
    return load(copy)


def _saved(folder, tmp):
    _patched(folder).save_pretrained(tmp / "saved")
    return load(tmp / "saved")


ROUTES = {
    "patch": lambda folder, tmp: _patched(folder),
    "from_pretrained": lambda folder, tmp: _from_pretrained(folder),
    "enable_trust": lambda folder, tmp: _enabled(folder),
    "folder_patch": _patched_folder,
    "saved_patched": _saved,
}


@pytest.fixture(scope="module", params=sorted(ROUTES))
def fixed(request, folder, tmp_path_factory):
    tok = ROUTES[request.param](folder, tmp_path_factory.mktemp(request.param))
    assert glm4_tokfix.is_patched(tok), request.param
    return tok


def test_image_chat_kept(fixed, unpatched):
    """Every route: the class's own apply_chat_template, with its images; 4.x: exactly the unpatched output."""
    for k in range(2):
        chat = image_chat(k)
        got = as_plain(fixed.apply_chat_template(chat, **CHAT_KWARGS))
        assert got == expected_chat(fixed, chat)
        if ON_4X:
            assert got == as_plain(unpatched.apply_chat_template(chat, **CHAT_KWARGS))
    # a batch of image chats, padded (left, as the class requires of itself)
    chats = [image_chat(0), image_chat(1)]
    got = fixed.apply_chat_template(chats, padding=True, **CHAT_KWARGS)
    assert got["images"].shape == (2, 3, fixed.image_size, fixed.image_size)
    if ON_4X:
        assert as_plain(got) == as_plain(unpatched.apply_chat_template(chats, padding=True, **CHAT_KWARGS))


def test_class_keeps_its_own_methods(fixed, unpatched):
    """The fix replaces the spec hooks only: apply_chat_template and build_single_message are the class's."""
    for name in ("apply_chat_template", "build_single_message"):
        assert getattr(type(fixed), name).__code__.co_code == getattr(type(unpatched), name).__code__.co_code, name
    assert type(fixed)._pad is not type(unpatched)._pad
    assert fixed.image_size == unpatched.image_size


@pytest.mark.parametrize("side", ["left", "right"])
def test_rendered_prompt_route_is_fixed(fixed, side):
    chats = [
        image_chat(0),
        [{"role": "user", "content": "hi"}],
        image_chat(1) + [{"role": "assistant", "content": "ok"}],
    ]
    prompts = [fixed.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chats]
    assert all(p.startswith("[gMASK]<sop>") for p in prompts)
    batch = fixed(prompts, padding=True, padding_side=side)
    prefix = fixed.convert_tokens_to_ids(["[gMASK]", "<sop>"])
    for k, prompt in enumerate(prompts):
        single = fixed(prompt)["input_ids"]
        assert single[:2] == prefix and single[2:4] != prefix
        ids, mask, positions = (batch[key][k] for key in ("input_ids", "attention_mask", "position_ids"))
        check_padded_row(ids, mask, positions, side, fixed.pad_token_id)
        assert [t for t, m in zip(ids, mask) if m] == single


def test_batch_encode_plus_compat_means_call(fixed):
    """transformers 5 has no batch_encode_plus; the fix's gives what __call__ gives (4.x: transformers' own)."""
    rows = [[fixed.convert_tokens_to_ids("<|user|>"), 10, 11], [12]]
    got = fixed.batch_encode_plus(rows, is_split_into_words=True, add_special_tokens=False, padding=True)
    if not ON_4X:  # 4.x's __call__ refuses rows of ids; its batch_encode_plus takes them
        assert dict(got) == dict(fixed(rows, is_split_into_words=True, add_special_tokens=False, padding=True))
    assert got["input_ids"] == [rows[0], [fixed.pad_token_id] * 2 + rows[1]]
    texts = ["[gMASK]<sop>a", "b"]
    assert dict(fixed.batch_encode_plus(texts, padding=True)) == dict(fixed(texts, padding=True))


LOAD_WITHOUT_PACKAGE = BLOCK_PACKAGE + textwrap.dedent(
    """
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
    image = torch.tensor(json.loads(sys.argv[2]))
    chat = [{"role": "user", "image": image, "content": sys.argv[3]}]
    out = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_tensors="pt",
                                  return_dict=True)
    prompts = [tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False), "<|user|>\\nhi"]
    print(json.dumps({
        "mro": [c.__name__ for c in type(tok).__mro__],
        "chat": {k: v.tolist() for k, v in out.items()},
        "right": dict(tok(prompts, padding=True, padding_side="right")),
        "left": dict(tok(prompts, padding=True)),
        "glm4_tokfix_loaded": any(m.startswith("glm4_tokfix") for m in sys.modules),
    }))
    """
)


@pytest.mark.parametrize("how", ["folder_patch", "saved_patched"])
def test_patched_folder_loads_without_the_package(folder, tmp_path, how):
    if how == "folder_patch":
        target = tmp_path / "glm-4v-9b"
        shutil.copytree(folder, target)
        model_folder.patch_folder(target)
        config = json.loads((target / "tokenizer_config.json").read_text())
        assert config["auto_map"]["AutoTokenizer"] == [f"{model_folder.HOST_MODULE_NAME}.ChatGLM4Tokenizer", None]
        assert (target / "tokenization_chatglm.py").read_bytes() == (folder / "tokenization_chatglm.py").read_bytes()
    else:
        target = tmp_path / "saved"
        _patched(folder).save_pretrained(target)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    chat = image_chat(1)
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_PACKAGE, str(target), json.dumps(chat[0]["image"].tolist()),
         chat[0]["content"]], capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert not got["glm4_tokfix_loaded"] and "GLM4FixMixin" in got["mro"]
    reference = _patched(folder)
    expected = expected_chat(reference, chat)
    assert got["chat"]["input_ids"] == expected["input_ids"]
    assert torch.allclose(torch.tensor(got["chat"]["images"]), torch.tensor(expected["images"]), atol=1e-6)
    prompts = [reference.apply_chat_template(chat, add_generation_prompt=True, tokenize=False), "<|user|>\nhi"]
    for side in ("left", "right"):
        assert got[side] == dict(reference(prompts, padding=True, padding_side=side)), side
    assert got["right"]["input_ids"][0][:4] == reference.convert_tokens_to_ids(["[gMASK]", "<sop>", "<|user|>"]) + [10]


def test_enable_without_trust_refuses_glm4v(folder):
    """No lesser class in its place: glm4_tokfix's ChatGLM4Tokenizer would drop the image chat."""
    with glm4_tokfix.enable(), pytest.raises(ValueError, match=r"trust_remote_code=True") as info:
        AutoTokenizer.from_pretrained(str(folder))
    assert "image_size" in str(info.value)
    from glm4_tokfix import patching

    assert patching.remote_glm4_folder(str(folder)) is None


@pytest.mark.parametrize("variant", ["own_chat_template", "extra_init_argument", "patched_glm4v"])
def test_enable_without_trust_refuses_other_classes(tmp_path, variant):
    """Without image_size in the config, the class itself says it is not glm-4-9b-chat's."""
    target = make_model_folder(tmp_path / variant, "glm4v", TINY, config={"image_size": None})
    source = (target / "tokenization_chatglm.py").read_text()
    if variant == "extra_init_argument":  # only the __init__ differs from glm-4-9b-chat's class
        start = source.index("    def apply_chat_template(")
        end = source.index("    def build_inputs_with_special_tokens(")
        (target / "tokenization_chatglm.py").write_text(source[:start] + source[end:])
        expected = "takes image_size"
    elif variant == "own_chat_template":
        expected = "defines apply_chat_template"
    else:
        model_folder.patch_folder(target)
        expected = "another checkpoint's class with the fix laid over it"
    with glm4_tokfix.enable(), pytest.raises(ValueError, match="trust_remote_code=True") as info:
        AutoTokenizer.from_pretrained(str(target))
    assert expected in str(info.value)


@pytest.mark.parametrize("revision", ["current", "mid2024"])
def test_enable_without_trust_still_serves_glm4_9b_chat(tmp_path, revision):
    target = make_model_folder(tmp_path / revision, revision, TINY)
    with glm4_tokfix.enable():
        tok = AutoTokenizer.from_pretrained(str(target))
    assert type(tok) is glm4_tokfix.ChatGLM4Tokenizer


def test_class_taken_from_a_sibling_is_judged_by_that_file(tmp_path):
    """``tokenization_chatglm.py`` that re-exports a class (``from .other import ChatGLM4Tokenizer``): the file it
    comes from decides -- the bundle's class is glm-4-9b-chat's, GLM-4V-9B's is not."""
    ours = make_model_folder(tmp_path / "ours", "fixed", TINY)
    assert "import ChatGLM4Tokenizer" in (ours / "tokenization_chatglm.py").read_text()
    info = model_folder.inspect_folder(ours)
    assert model_folder.remote_class_problem(info) is None and info.host_ref is None
    with glm4_tokfix.enable():
        assert type(AutoTokenizer.from_pretrained(str(ours))) is glm4_tokfix.ChatGLM4Tokenizer

    theirs = make_model_folder(tmp_path / "theirs", "glm4v", TINY, config={"image_size": None})
    (theirs / "tokenization_chatglm.py").rename(theirs / "glm4v_class.py")
    (theirs / "tokenization_chatglm.py").write_text("from .glm4v_class import ChatGLM4Tokenizer  # noqa: F401\n")
    problem = model_folder.remote_class_problem(model_folder.inspect_folder(theirs))
    assert problem is not None and "defines apply_chat_template" in problem and "glm4v_class.py" in problem


def test_vllm_plugin_refuses_glm4v(folder):
    from glm4_tokfix import patching, vllm_plugin

    was = patching.is_enabled()
    vllm_plugin.register()
    try:
        with pytest.raises(ValueError, match="trust_remote_code=True"):
            AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
        tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True)
        assert glm4_tokfix.is_patched(tok)
        assert as_plain(tok.apply_chat_template(image_chat(), **CHAT_KWARGS)) == expected_chat(tok, image_chat())
    finally:
        if not was:
            patching.disable()


def test_folder_patch_round_trip(folder, tmp_path):
    target = tmp_path / "glm-4v-9b"
    shutil.copytree(folder, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    summary = model_folder.patch_folder(target)
    assert model_folder.HOST_MODULE_FILE in summary
    assert "already patched" in model_folder.patch_folder(target)
    model_folder.unpatch_folder(target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before


OTHER_LINE = textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
    chat = [{"role": "user", "image": torch.tensor(json.loads(sys.argv[2])), "content": sys.argv[3]}]
    out = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_tensors="pt",
                                  return_dict=True)
    print(json.dumps({k: v.tolist() for k, v in out.items()}))
    """
)


def _venv4_python():
    return other_line_python()  # on the 5 line: a python with transformers 4.x, when there is one


@pytest.mark.skipif(ON_4X, reason="compares transformers 5 with 4.x: runs on the 5 line")
def test_transformers5_ids_equal_transformers4_unpatched(folder, tmp_path):
    """The image chat on transformers 5 (fixed) gives what the unpatched class gives on 4.x, run by a 4.x venv."""
    python = _venv4_python()
    if python is None:
        pytest.skip("no python with transformers 4.x (set GLM4_TOKFIX_OTHER_PYTHON to one)")
    chat = image_chat(0)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [str(python), "-c", OTHER_LINE, str(folder), json.dumps(chat[0]["image"].tolist()), chat[0]["content"]],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    if result.returncode != 0 and "No module named" in result.stderr:
        pytest.skip(f"{python} cannot run the unpatched class: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr[-3000:]
    on4 = json.loads(result.stdout.strip().splitlines()[-1])
    got = as_plain(_patched(folder).apply_chat_template(chat, **CHAT_KWARGS))
    assert got["input_ids"] == on4["input_ids"] and got["attention_mask"] == on4["attention_mask"]
    assert got["position_ids"] == on4["position_ids"]
    assert torch.allclose(torch.tensor(got["images"]), torch.tensor(on4["images"]), atol=1e-6)


def test_pickled_fixed_tokenizer_keeps_the_image_chat(fixed):
    import pickle

    copy = pickle.loads(pickle.dumps(fixed))
    assert type(copy) is type(fixed)
    chat = image_chat(1)
    assert as_plain(copy.apply_chat_template(chat, **CHAT_KWARGS)) == expected_chat(fixed, chat)
