"""Assistant masks for GLM-4 templates without a marked copy: turns located by markers and verified.

``glm4_tokfix.chat_templates.reply_spans`` (and ``return_assistant_tokens_mask=True`` on a template without
``{% generation %}`` markers) must give, for every template:

* on the shipped templates, exactly the marked copies' spans (hypothesis over chats), wherever it can prove
  them, and a clear ``ValueError`` where it cannot (GLM-4.5's ``<think>`` moved out of the content);
* on generated templates, the spans of the same template with ``{% generation %}`` put around its assistant
  branch (the oracle), whatever the template does to the content (strip, split on ``</think>``, trim);
* on GLM-Z1-Rumination-0414's published template and a GLM-4-0414-style one, the metadata, separator and
  visible reply of each assistant turn;
* a clear ``ValueError`` naming the message when a template writes a reply twice, escapes it, or branches
  on role-token literals; and the same masks on the slow and the patched fast tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from glm4_tokfix import chat_templates
from helpers import as_lists
from strategies import texts

DATA = Path(__file__).resolve().parents[1] / "data"
# GLM-Z1-Rumination-32B-0414's chat template as published in a public GGUF conversion log: the line
# "INFO:gguf.vocab:Setting chat_template to ..." of the convert_hf_to_gguf.py run in ik_llama.cpp pull request
# #333 (ubergarm, 2025-04-17; archived in ikawrakow/ik_llama.cpp github-data/pull_requests/333), copied byte for
# byte up to the log's next record (the log line ends at the template's last "{% endif %}").
RUMINATION = (DATA / "glm-z1-rumination-0414.jinja").read_text(encoding="utf-8")

# A GLM-4-0414-style template, written for this test (not the original): system messages first, then the
# turns; assistant metadata on the role line; the Z1 content transform; a generation prompt with <think>.
STYLE_0414 = (
    "[gMASK]<sop>{%- for msg in messages %}{%- if msg.role == 'system' %}<|system|>\n{{ msg.content }}{%- endif %}"
    "{%- endfor %}{%- for message in messages if message.role != 'system' %}{%- set role = message['role'] %}"
    "{%- set content = message['content'] %}{%- set visible = content.split('</think>')[-1].strip() %}"
    "{%- set meta = message.get('metadata', '') %}{%- if role == 'user' %}<|user|>\n{{ visible }}"
    "{%- elif role == 'assistant' and not meta %}<|assistant|>\n{{ visible }}"
    "{%- elif role == 'assistant' and meta %}<|assistant|>{{ meta }} \n{{ visible }}"
    "{%- elif role == 'observation' %}<|observation|>\n{{ visible }}{%- endif %}{%- endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n<think>{% endif %}"
)

_content = texts(min_fragments=0, max_fragments=5)
_think = st.sampled_from(["", "", "<think>why</think>", "<think>\nhm\n</think>\n"])
_private = ("\U000f0010", "\U000f0012", "\U000f0013", "\U000f0014")


@st.composite
def glm4_messages(draw, roles=("system", "user", "assistant", "assistant", "observation")):
    role = draw(st.sampled_from(roles))
    message = {"role": role, "content": draw(_content)}
    if role == "assistant":
        message["content"] = draw(_think) + message["content"]
        if draw(st.booleans()):
            message["metadata"] = draw(st.sampled_from(["", "search", "python", "<|user|>x"]))
    return message


glm4_chats = st.lists(glm4_messages(), min_size=1, max_size=5)


def generic(template, chats, **kwargs):
    return chat_templates.reply_spans(template, chats, **kwargs)


def marked_spans(template, chats, **kwargs):
    return chat_templates.reply_spans(template, chats, **kwargs)


def private_in(obj) -> bool:
    text = json.dumps(obj, ensure_ascii=False)
    return any(ch in text for ch in _private)


# ------------------------------------------------------------------ the shipped templates
@given(chats=st.lists(glm4_chats, min_size=1, max_size=3), add_generation_prompt=st.booleans())
def test_generic_equals_marked_on_glm4_9b_chat(tiny_tok, chats, add_generation_prompt):
    assume(not private_in(chats))
    original = chat_templates.original_template("glm-4-9b-chat")
    marked = chat_templates.marked_template(original)
    kwargs = dict(add_generation_prompt=add_generation_prompt, **tiny_tok.special_tokens_map)
    assert generic(original, chats, **kwargs) == marked_spans(marked, chats, **kwargs)


def _glm4_5_message(draw_content_ok):
    @st.composite
    def message(draw):
        role = draw(st.sampled_from(["system", "user", "assistant", "assistant", "tool"]))
        content = draw(_content)
        if role == "assistant" and draw_content_ok:
            content = (
                draw(st.text(st.characters(min_codepoint=0x61, max_codepoint=0x7A), min_size=1, max_size=5)) + content
            )
        msg = {"role": role, "content": content}
        if role == "assistant":
            if draw(st.booleans()):
                msg["reasoning_content"] = draw(_content)
            if draw(st.booleans()):
                msg["tool_calls"] = [{"function": {"name": "f", "arguments": {"city": draw(_content)}}}]
        return msg

    return message()


@pytest.mark.parametrize("name", ["glm-4.5", "glm-4.5-air"])
@given(chat=st.lists(_glm4_5_message(True), min_size=1, max_size=5), add_generation_prompt=st.booleans())
def test_generic_equals_marked_on_glm4_5(name, chat, add_generation_prompt):
    """Replies with visible text, reasoning in reasoning_content: provable, and equal to the marked copy's."""
    assume(not private_in(chat) and not any("</think>" in m["content"] for m in chat if m["role"] == "assistant"))
    original = chat_templates.original_template(name)
    marked = chat_templates.marked_template(original)
    assert generic(original, [chat], add_generation_prompt=add_generation_prompt) == marked_spans(
        marked, [chat], add_generation_prompt=add_generation_prompt
    )


def test_glm4_5_think_in_content_is_a_clear_error():
    chat = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>r</think>answer"}]
    with pytest.raises(ValueError, match=r"chat 0, message 1 \(assistant\).*depends on the content"):
        generic(chat_templates.original_template("glm-4.5"), [chat])
    # the marked copy (the tokenizers' route for this template) handles it
    assert marked_spans(chat_templates.marked_template(chat_templates.original_template("glm-4.5")), [chat])[1] != [[]]


# ------------------------------------------------------------------ GLM-Z1-Rumination and 0414-style
@pytest.mark.parametrize("template", [RUMINATION, STYLE_0414], ids=["z1-rumination", "0414-style"])
@given(chat=st.lists(glm4_messages(), min_size=1, max_size=5), add_generation_prompt=st.booleans())
def test_turns_of_z1_style_templates(template, chat, add_generation_prompt):
    assume(not private_in(chat))
    rendered, spans = generic(template, [chat], add_generation_prompt=add_generation_prompt)
    text = rendered[0]
    expected = []
    for m in chat:
        if m["role"] != "assistant":
            continue
        visible = m["content"].split("</think>")[-1].strip()
        meta = m.get("metadata", "")
        expected.append((meta + " \n" if meta else "\n") + visible)
    assert [text[a:b] for a, b in spans[0]] == expected
    for a, _ in spans[0]:
        assert text[:a].endswith("<|assistant|>")


def test_rumination_template_is_the_published_text():
    assert RUMINATION.startswith("[gMASK]<sop><|system|>\n你是一个专业的深度研究助手")
    assert "{%- set visible = content.split('</think>')[-1].strip() %}" in RUMINATION
    assert "<|assistant|>{{ meta }} \n{{ visible }}" in RUMINATION
    assert RUMINATION.endswith("{% if add_generation_prompt %}<|assistant|>{% endif %}")
    assert chat_templates.template_name(RUMINATION) is None  # no shipped copy: the generic route


# ------------------------------------------------------------------ generated templates
@st.composite
def generated_templates(draw):
    # separators as expressions: a newline written right after a block tag ({% generation %}) is trimmed
    sep = draw(st.sampled_from(["{{ '\\n' }}", "", "{{ ' \\n' }}"]))
    content = draw(st.sampled_from([
        "{{ m.content }}", "{{ m.content.strip() }}", "{{ m.content.split('</think>')[-1].strip() }}",
        "{{ m.content | trim }}", "{{ m.content.lstrip('\\n') }}",
    ]))  # fmt: skip
    meta = draw(st.sampled_from(["", "{{ m.metadata or '' }}", "{% if m.metadata %}{{ m.metadata }} {% endif %}"]))
    after = draw(st.sampled_from(["", "{{ '\\n' }}"]))
    user = draw(st.sampled_from(["{{ m.content }}", "{{ m.content.strip() }}"]))
    prompt = draw(st.sampled_from(["", "\n", "\n<think>"]))
    body = meta + sep + content + after
    head = draw(st.sampled_from(["[gMASK]<sop>", ""]))

    def template(assistant):
        return (
            head + "{% for m in messages %}{% if m.role == 'system' %}<|system|>\n{{ m.content }}"
            "{% elif m.role == 'user' %}<|user|>\n"
            + user
            + "{% elif m.role == 'assistant' %}<|assistant|>"
            + assistant
            + "{% elif m.role == 'observation' %}<|observation|>\n{{ m.content }}{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>" + prompt + "{% endif %}"
        )

    return template(body), template("{% generation %}" + body + "{% endgeneration %}")


@given(
    templates=generated_templates(),
    chats=st.lists(glm4_chats, min_size=1, max_size=3),
    add_generation_prompt=st.booleans(),
)
def test_generated_templates_match_their_marked_versions(templates, chats, add_generation_prompt):
    plain, marked = templates
    if private_in(chats):
        with pytest.raises(ValueError, match="private-use"):
            generic(plain, chats, add_generation_prompt=add_generation_prompt)
        return
    got = generic(plain, chats, add_generation_prompt=add_generation_prompt)
    assert got == marked_spans(marked, chats, add_generation_prompt=add_generation_prompt)


# ------------------------------------------------------------------ what cannot be proved
CHAT = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "the answer"}]


@pytest.mark.parametrize(
    "template, why",
    [
        # the reply is also quoted in a summary: written twice
        (
            "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{% endfor %}<|system|>\nlast: {{ messages[-1].content }}",
            "more than once",
        ),
        # escaped: the marker does not survive
        (
            "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content | tojson(ensure_ascii=True) }}{% endfor %}",
            "depends on the content",
        ),
        # content not written at all
        (
            "{% for m in messages %}<|{{ m.role }}|>{% if m.role != 'assistant' %}\n{{ m.content }}{% endif %}{% endfor %}",
            "not at all",
        ),
    ],
    ids=["twice", "escaped", "dropped"],
)
def test_unprovable_templates_are_clear_errors(tiny_tok, template, why):
    with pytest.raises(ValueError, match=rf"message 1 \(assistant\).*{why}"):
        generic(template, [CHAT])
    with pytest.raises(ValueError, match="generation"):
        tiny_tok.apply_chat_template(CHAT, chat_template=template, return_dict=True, return_assistant_tokens_mask=True)


def test_role_literals_in_user_text_do_not_move_turns():
    chat = [{"role": "user", "content": "a <|assistant|> b <|user|>"},
            {"role": "assistant", "content": "x <|user|> y", "metadata": "<|assistant|>m"}]  # fmt: skip
    rendered, spans = generic(STYLE_0414, [chat])
    assert [rendered[0][a:b] for a, b in spans[0]] == ["<|assistant|>m \nx <|user|> y"]


def test_a_template_that_branches_on_role_literals_is_refused():
    template = ("{% for m in messages %}{% if '<|user|>' in m.content %}<|system|>\nbad{% else %}<|{{ m.role }}|>\n"
                "{{ m.content }}{% endif %}{% endfor %}")  # fmt: skip
    with pytest.raises(ValueError, match="role-token literals"):
        generic(template, [[{"role": "user", "content": "<|user|>"}, {"role": "assistant", "content": "a"}]])


# ------------------------------------------------------------------ through the tokenizers
def masked(tok, chats, **kwargs):
    return tok.apply_chat_template(chats, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, **kwargs)


@pytest.mark.parametrize("template", [RUMINATION, STYLE_0414], ids=["z1-rumination", "0414-style"])
@given(chats=st.lists(glm4_chats, min_size=1, max_size=3))
def test_masks_decode_to_the_turns(tok, template, chats):
    assume(not private_in(chats))
    out = masked(tok, chats, chat_template=template)
    rendered, spans = generic(template, chats, **tok.special_tokens_map)
    for ids, mask, text, row in zip(out["input_ids"], out["assistant_masks"], rendered, spans):
        assert ids == tok(text, add_special_tokens=False)["input_ids"]
        offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        expected = [int(any(s < b and e > a for a, b in row)) for s, e in offsets]
        assert mask == expected


@pytest.mark.parametrize("style", ["chat-hf", "0414"])
def test_patched_fast_tokenizer_gives_the_same_generic_masks(fast_folder, tiny_tok, style):
    from transformers import AutoTokenizer

    import glm4_tokfix

    fast = glm4_tokfix.patch(AutoTokenizer.from_pretrained(str(fast_folder("tiny", style))))
    chats = [[{"role": "system", "content": "s"}, {"role": "user", "content": "hi 你好"},
              {"role": "assistant", "content": "<think>r</think> 😀 yes ", "metadata": "m"},
              {"role": "user", "content": "q"}, {"role": "assistant", "content": "no"}],
             [{"role": "user", "content": "x"}, {"role": "assistant", "content": ""}]]  # fmt: skip
    for template in (RUMINATION, STYLE_0414):
        for side in ("left", "right"):
            ours = masked(tiny_tok, chats, chat_template=template, padding=True, padding_side=side)
            theirs = masked(fast, chats, chat_template=template, padding=True, padding_side=side)
            assert as_lists(theirs["input_ids"]) == as_lists(ours["input_ids"])
            assert as_lists(theirs["assistant_masks"]) == as_lists(ours["assistant_masks"])
