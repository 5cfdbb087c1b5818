"""The remote-code siblings of glm-4-9b-chat, by name: the same class, other chat templates or none.

codegeex4-all-9b, LongWriter-glm4-9b and glm-4-9b-chat-1m ship glm-4-9b-chat's ``ChatGLM4Tokenizer`` with chat
templates of their own; glm-4-9b (the base model) ships none. The templates below are written here in the shape
of each checkpoint's (what it writes around the messages), short: codegeex4 puts a default system prompt first
when the chat has none and ends the generation prompt with a newline; LongWriter writes each turn as
``<|role|>{metadata}\\n{content}``; the 1m model also renders tools as a system turn. Every one starts with
``[gMASK]<sop>``, so unpatched the rendered prompt gets the prefix twice; patched, the rendered-prompt batch is
exact on both padding sides.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import glm4_tokfix
from helpers import check_padded_row
from standins import make_model_folder

pytest.importorskip("jinja2", reason="the siblings' chat templates are jinja")
from transformers import AutoTokenizer

TINY = Path(glm4_tokfix.TINY_GLM4_DIR)

CODEGEEX4 = (
    "[gMASK]<sop>{% if messages[0]['role'] != 'system' %}<|system|>\nYou are CodeGeeX, a coding assistant."
    "{% endif %}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
LONGWRITER = (
    "[gMASK]<sop>{% for m in messages %}<|{{ m['role'] }}|>{{ m.get('metadata', '') }}\n{{ m['content'] }}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CHAT_1M = (
    "[gMASK]<sop>{% for m in messages %}{% if m['tools'] is defined %}<|system|>\nTools:"
    "{% for t in m['tools'] %}\n## {{ t['function']['name'] }}{% endfor %}{% endif %}"
    "{% if m['content'] %}<|{{ m['role'] }}|>\n{{ m['content'] }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
#: name -> (the upstream revision its class behaves as, its chat template or None)
SIBLINGS = {
    "codegeex4-all-9b": ("current", CODEGEEX4),
    "LongWriter-glm4-9b": ("mid2024", LONGWRITER),
    "glm-4-9b-chat-1m": ("current", CHAT_1M),
    "glm-4-9b": ("current", None),
}
CHATS = [
    [{"role": "user", "content": "write quicksort"}],
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "你好"},
     {"role": "assistant", "content": "hi"}, {"role": "user", "content": "and a much longer second question"}],
    [{"role": "user", "content": "weather?", "tools": [{"type": "function", "function": {"name": "get_weather"}}]}],
]  # fmt: skip


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    made = {}
    for name, (revision, template) in SIBLINGS.items():
        config = {"chat_template": template} if template else {"chat_template": None}
        made[name] = make_model_folder(tmp_path_factory.mktemp("siblings") / name, revision, TINY, config=config)
    return made


@pytest.fixture(scope="module", params=sorted(SIBLINGS))
def sibling(request, folders):
    return request.param, folders[request.param]


def prompts_of(tok, name):
    if SIBLINGS[name][1] is None:  # the base model: hand-written prompts, one carrying the prefix already
        return ["[gMASK]<sop>Q: 1 + 1?\nA:", "a plain text", "[gMASK]<sop>"]
    return [tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False) for chat in CHATS]


ROUTES = ("patch", "enable_without_trust")


def load_fixed(folder, route):
    if route == "patch":
        return glm4_tokfix.patch(AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True))
    with glm4_tokfix.enable():
        return AutoTokenizer.from_pretrained(str(folder))


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("side", ["left", "right"])
def test_patched_rendered_batch_is_exact(sibling, route, side):
    name, folder = sibling
    tok = load_fixed(folder, route)
    assert glm4_tokfix.is_patched(tok)
    prompts = prompts_of(tok, name)
    prefix = tok.convert_tokens_to_ids(["[gMASK]", "<sop>"])
    batch = tok(prompts, padding=True, padding_side=side)
    for k, prompt in enumerate(prompts):
        single = tok(prompt)["input_ids"]
        assert single[:2] == prefix and single[2:4] != prefix, (name, prompt)
        assert single == tok(prompt, add_special_tokens=False)["input_ids"] or not prompt.startswith("[gMASK]<sop>")
        ids, mask, positions = (batch[key][k] for key in ("input_ids", "attention_mask", "position_ids"))
        check_padded_row(ids, mask, positions, side, tok.pad_token_id)
        assert [t for t, m in zip(ids, mask) if m] == single
    if SIBLINGS[name][1] is not None:  # the chat template, tokenized in one call, gives the same rows
        templated = tok.apply_chat_template(CHATS, add_generation_prompt=True, tokenize=True, padding=True,
                                            tokenizer_kwargs={"padding_side": side}, return_dict=True)  # fmt: skip
        assert templated["input_ids"] == batch["input_ids"]
        assert templated["attention_mask"] == batch["attention_mask"]


def test_unpatched_doubles_the_prefix(sibling):
    name, folder = sibling
    tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True)
    assert not glm4_tokfix.is_patched(tok)
    prefix = tok.convert_tokens_to_ids(["[gMASK]", "<sop>"])
    for prompt in prompts_of(tok, name):
        try:
            ids = tok.encode(prompt)
        except TypeError:  # the mid-2024 class's _pad takes no padding_side: every call fails; its ids before that
            assert SIBLINGS[name][0] == "mid2024"
            ids = tok.build_inputs_with_special_tokens(tok.convert_tokens_to_ids(tok.tokenize(prompt)))
        if prompt.startswith("[gMASK]<sop>"):
            assert ids[:4] == prefix * 2, (name, prompt)
        else:  # a plain text gets one prefix, as it should
            assert ids[:2] == prefix and ids[2:4] != prefix
    # and a right-padded batch is not right-padded (the mid-2024 class, LongWriter's, cannot pad at all)
    try:
        batch = tok(prompts_of(tok, name), padding=True, padding_side="right")
    except (TypeError, AssertionError):
        assert SIBLINGS[name][0] == "mid2024"
    else:
        assert batch["attention_mask"][1][0] == 0 or batch["attention_mask"][0][0] == 0


def test_base_model_has_no_chat_template(folders):
    for tok in (AutoTokenizer.from_pretrained(str(folders["glm-4-9b"]), trust_remote_code=True),
                load_fixed(folders["glm-4-9b"], "patch")):  # fmt: skip
        with pytest.raises(ValueError, match=r"chat_template|chat template"):
            tok.apply_chat_template(CHATS[0], tokenize=False)


def test_codegeex4_renders_its_default_system_prompt(folders):
    tok = load_fixed(folders["codegeex4-all-9b"], "patch")
    text = tok.apply_chat_template(CHATS[0], add_generation_prompt=True, tokenize=False)
    assert (
        text == "[gMASK]<sop><|system|>\nYou are CodeGeeX, a coding assistant.<|user|>\nwrite quicksort<|assistant|>\n"
    )
