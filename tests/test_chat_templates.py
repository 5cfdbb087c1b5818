"""The marked GLM-4 chat templates render byte for byte like the originals; their spans are the replies.

Hypothesis draws chats with system prompts, several turns, tools, metadata, reasoning, tool calls and tool
results, and both ``add_generation_prompt`` values; each marked template must render exactly the original's
text, and each ``{% generation %}`` span must be what the template writes for an assistant reply after
``<|assistant|>``.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glm4_tokfix import chat_templates
from strategies import texts

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "天气 <|user|> forecast",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
_content = texts(min_fragments=0, max_fragments=6)
_call = st.fixed_dictionaries(
    {"function": st.fixed_dictionaries({"name": st.sampled_from(["get_weather", "f"]), "arguments": st.dictionaries(
        st.sampled_from(["city", "n"]), st.one_of(_content, st.integers(), st.lists(st.integers(), max_size=2)),
        max_size=2)})}
)  # fmt: skip


@st.composite
def rich_messages(draw):
    role = draw(st.sampled_from(["system", "user", "assistant", "assistant", "observation", "tool"]))
    message = {"role": role, "content": draw(_content)}
    if role == "assistant":
        if draw(st.booleans()):
            message["metadata"] = draw(st.sampled_from(["", "get_weather", "python"]))
        if draw(st.booleans()):
            message["content"] = draw(st.sampled_from(["<think>why</think>\n", "<think>\nhm\n</think>"])) + message["content"]
        if draw(st.booleans()):
            message["reasoning_content"] = draw(_content)
        if draw(st.booleans()):
            message["tool_calls"] = draw(st.lists(_call, min_size=1, max_size=2))
    if role == "tool" and draw(st.booleans()):
        message["content"] = [{"output": draw(_content)}]
    return message


rich_chats = st.lists(rich_messages(), min_size=1, max_size=5)


def render(tok, template, chat, **kwargs):
    return tok.apply_chat_template(chat, chat_template=template, tokenize=False, **kwargs)


def spans(tok, template, chat, **kwargs):
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, indices = render_jinja_template(
        conversations=[chat], chat_template=template, return_assistant_tokens_mask=True,
        **{**tok.special_tokens_map, **kwargs},
    )  # fmt: skip
    return rendered[0], indices[0]


@pytest.mark.parametrize("name", chat_templates.TEMPLATE_NAMES)
@given(
    chat=rich_chats,
    add_generation_prompt=st.booleans(),
    with_tools=st.booleans(),
    thinking=st.sampled_from([None, True, False]),
)
def test_marked_template_renders_like_the_original(tiny_tok, name, chat, add_generation_prompt, with_tools, thinking):
    if name == "glm-4-9b-chat":  # its tools sit on a message; it renders only str contents
        chat = [dict(m, content=m["content"] if isinstance(m["content"], str) else "x") for m in chat]
        chat = [{k: v for k, v in m.items() if k != "tool_calls"} for m in chat]
        if with_tools:
            chat = [dict(chat[0], tools=[TOOL, {"type": "python"}])] + chat[1:]
    kwargs = dict(add_generation_prompt=add_generation_prompt)
    if with_tools and name != "glm-4-9b-chat":
        kwargs["tools"] = [TOOL]
    if thinking is not None:
        kwargs["enable_thinking"] = thinking
    original = chat_templates.original_template(name)
    marked = chat_templates.marked_template(original)
    assert marked != original and chat_templates.has_generation_markers(marked)
    assert render(tiny_tok, marked, chat, **kwargs) == render(tiny_tok, original, chat, **kwargs)


@given(chat=rich_chats, add_generation_prompt=st.booleans())
def test_glm4_9b_chat_spans_are_metadata_newline_content(tiny_tok, chat, add_generation_prompt):
    chat = [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str) else "x",
             **({"metadata": m["metadata"]} if "metadata" in m else {})} for m in chat]  # fmt: skip
    marked = chat_templates.marked_template(chat_templates.original_template("glm-4-9b-chat"))
    text, found = spans(tiny_tok, marked, chat, add_generation_prompt=add_generation_prompt)
    replies = [m for m in chat if m["role"] == "assistant" and m["content"]]
    assert [text[a:b] for a, b in found] == [m.get("metadata", "") + "\n" + m["content"] for m in replies]
    for a, _ in found:
        assert text[:a].endswith("<|assistant|>")


@pytest.mark.parametrize("name", ["glm-4.5", "glm-4.5-air"])
@given(chat=rich_chats)
def test_glm4_5_spans_hold_each_reply(tiny_tok, name, chat):
    marked = chat_templates.marked_template(chat_templates.original_template(name))
    text, found = spans(tiny_tok, marked, chat)
    assert len(found) == sum(m["role"] == "assistant" for m in chat)
    for a, b in found:
        assert text[:a].endswith("<|assistant|>")
        assert text[a:b].startswith("\n<think>")
        following = text[b:]
        assert following == "" or following.startswith(("<|user|>", "<|assistant|>", "<|observation|>", "<|system|>"))


def test_glm4_5_is_trls_glm4moe_template():
    """Where glm-4.5 comes from: TRL ships the original GLM-4-MoE template (when trl is installed)."""
    trl_utils = pytest.importorskip("trl.chat_template_utils")
    assert chat_templates.original_template("glm-4.5") == trl_utils.glm4moe_chat_template


def test_lookup(tiny_tok):
    original = tiny_tok.chat_template
    assert chat_templates.template_name(original) == "glm-4-9b-chat"
    marked = chat_templates.marked_template(original)
    assert chat_templates.marked_template(marked) == marked
    assert chat_templates.template_name(marked) == "glm-4-9b-chat"
    assert chat_templates.marked_template(original + " ") is None
    with pytest.raises(KeyError, match="known"):
        chat_templates.original_template("glm-9")
    with pytest.raises(TypeError):
        chat_templates.marked_template(None)


def test_real_folder_template_is_known():
    from conftest import HAVE_REAL, REAL_DIR, REAL_SKIP_REASON

    if not HAVE_REAL:
        pytest.skip(REAL_SKIP_REASON)
    config = json.loads((REAL_DIR / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert chat_templates.template_name(config["chat_template"]) == "glm-4-9b-chat"
