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
            message["content"] = (
                draw(st.sampled_from(["<think>why</think>\n", "<think>\nhm\n</think>"])) + message["content"]
            )
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
    from locations import HAVE_REAL, REAL_DIR, REAL_SKIP_REASON

    if not HAVE_REAL:
        pytest.skip(REAL_SKIP_REASON)
    config = json.loads((REAL_DIR / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert chat_templates.template_name(config["chat_template"]) == "glm-4-9b-chat"


# ------------------------------------------------------------ the one-render span route of the tokenizers
def span_marked(tok, template, chats, **kwargs):
    from glm4_tokfix.remote_code.glm4_chat import GLM4ChatMixin

    return GLM4ChatMixin._glm4_render_span_marked(
        template, chats, kwargs.pop("tools", None), None, kwargs.pop("add_generation_prompt", False),
        {**tok.special_tokens_map, **kwargs},
    )  # fmt: skip


def tracker(tok, template, chats, **kwargs):
    from transformers.utils.chat_template_utils import render_jinja_template

    return render_jinja_template(
        conversations=chats, chat_template=template, return_assistant_tokens_mask=True,
        **{**tok.special_tokens_map, **kwargs},
    )  # fmt: skip


@pytest.mark.parametrize("name", chat_templates.TEMPLATE_NAMES)
@given(
    chats=st.lists(rich_chats, min_size=1, max_size=3), add_generation_prompt=st.booleans(), with_tools=st.booleans()
)
def test_one_render_gives_the_generation_trackers_text_and_spans(
    tiny_tok, name, chats, add_generation_prompt, with_tools
):
    """The tokenizers render a marked template once, with markers where its blocks start and end: the
    same text and the same spans as transformers' generation tracker."""
    marked = chat_templates.marked_template(chat_templates.original_template(name))
    kwargs = {"add_generation_prompt": add_generation_prompt, "tools": [TOOL] if with_tools else None}
    rendered, spans_ = span_marked(tiny_tok, marked, chats, **kwargs)
    assert (rendered, spans_) == tracker(tiny_tok, marked, chats, **kwargs)


# templates whose generation blocks use every kind of whitespace control, inside a loop and a condition
_CONTROLLED = (
    "{% for m in messages %}<|{{ m.role }}|>{% if m.role == 'assistant' %}  {%- generation -%}  \n"
    "{{ m.content }}  {%- endgeneration %}\n{% else %}\n{{ m.content }}{% endif %}{% endfor %}",
    "{% for m in messages %}{{ m.role }}:{% if m.role == 'assistant' %}{% generation %}\n{{ m.content }}\n"
    "{% endgeneration -%}\n  |{% else %}{{ m.content }}|{% endif %}{% endfor %}",
)


@pytest.mark.parametrize("template", _CONTROLLED)
@given(chats=st.lists(rich_chats, min_size=1, max_size=3))
def test_one_render_keeps_whitespace_control(tiny_tok, template, chats):
    assert span_marked(tiny_tok, template, chats) == tracker(tiny_tok, template, chats)


def test_markers_that_cannot_be_trusted_leave_it_to_the_tracker(tiny_tok, monkeypatch):
    import glm4_tokfix.remote_code.glm4_chat as tc
    from glm4_tokfix.remote_code.glm4_offsets import assistant_token_mask

    chat = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "the answer"}]
    marked = chat_templates.marked_template(tiny_tok.chat_template)
    assert span_marked(tiny_tok, marked, [chat])[1] == tracker(tiny_tok, marked, [chat])[1]
    # a filter that rewrites the block's output changes the markers
    upper = "{% for m in messages %}{% filter upper %}{% generation %}{{ m.content }}{% endgeneration %}{% endfilter %}{% endfor %}"
    assert span_marked(tiny_tok, upper, [chat]) == (None, None)
    # this call's random marker in the text itself (only a forged random source could put it there)
    monkeypatch.setattr(tc.os, "urandom", lambda n: b"\x01" * n)
    marker = "\x00glm4-tokfix-span-" + str(int.from_bytes(b"\x01" * 10, "big"))
    forged = [{"role": "user", "content": marker + ">"}, {"role": "assistant", "content": "the answer"}]
    assert span_marked(tiny_tok, marked, [forged]) == (None, None)
    out = tiny_tok.apply_chat_template(forged, return_dict=True, return_assistant_tokens_mask=True)
    rendered, spans_ = tracker(tiny_tok, marked, [forged])
    offsets = tiny_tok(rendered[0], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert out["assistant_masks"] == assistant_token_mask(offsets, spans_[0]) and sum(out["assistant_masks"]) > 0


def test_only_the_shipped_marked_copies_take_the_one_render_route(tiny_tok, monkeypatch):
    import copy

    from glm4_tokfix import sft
    from glm4_tokfix.remote_code.glm4_chat import GLM4ChatMixin

    calls = []
    real = GLM4ChatMixin._glm4_render_span_marked
    monkeypatch.setattr(GLM4ChatMixin, "_glm4_render_span_marked", staticmethod(lambda *a: calls.append(1) or real(*a)))
    chat = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "the answer"}]
    expected = tiny_tok.apply_chat_template(chat, return_dict=True, return_assistant_tokens_mask=True)
    assert calls == [1]  # the original template: its shipped marked copy
    tok = sft.use_marked_chat_template(copy.deepcopy(tiny_tok))
    assert tok.apply_chat_template(chat, return_dict=True, return_assistant_tokens_mask=True) == expected
    assert calls == [1, 1]  # the shipped marked copy set as the template
    own = tiny_tok.apply_chat_template(
        chat, chat_template=_CONTROLLED[0], return_dict=True, return_assistant_tokens_mask=True
    )
    assert calls == [1, 1] and sum(own["assistant_masks"]) > 0  # a template of the user's own: the tracker
