"""GLM-4 chat templates with ``{% generation %}`` markers, for ``return_assistant_tokens_mask=True``.

transformers builds ``assistant_masks`` from the spans a chat template marks with ``{% generation %}`` ...
``{% endgeneration %}``. No GLM-4 template carries those markers, so masks come back all zeros (or, on a slow
tokenizer under transformers 5, a ``TypeError``). This module ships a marked copy of each known original: the
marked copy renders byte for byte like the original (``tests/test_chat_templates.py`` proves it with
hypothesis over chats with tools, system prompts, several turns and both ``add_generation_prompt`` values),
and its generation spans hold exactly what the template writes for each assistant reply after
``<|assistant|>``.

The templates live in ``glm4_tokfix/remote_code/glm4_templates.py`` (the bundle a patched model folder receives,
so a folder finds them without the package):

``glm-4-9b-chat``
    The template of THUDM/glm-4-9b-chat's ``tokenizer_config.json`` (also glm-4-9b-chat-1m and the embedded
    tiny tokenizer), copied from that file. Marked: ``{{ metadata }}\\n{{ content }}`` of assistant messages.
``glm-4.5``
    GLM-4.5's template (zai-org GLM-4.5 / GLM-4-MoE), byte for byte the ``glm4moe.jinja`` that TRL ships
    (trl 1.16, ``trl/chat_templates/glm4moe.jinja``, "Original GLM-4-MoE chat template"). Marked: the
    thinking block, the content and the tool calls of assistant messages.
``glm-4.5-air``
    Another revision of the same template, as ``llama-server`` prints it for a GLM-4.5-Air GGUF in a public
    ik_llama.cpp issue thread: identical to ``glm-4.5`` but for its user branch, which reads
    ``{% set content = visible_text(m.content) %}{{ content }}``. Marked like ``glm-4.5``.

Any other GLM-4 template (GLM-4-0414, GLM-Z1, GLM-Z1-Rumination, a fine-tune's own) needs no marked copy:
``reply_spans`` locates each assistant turn in the rendering and proves it (see
``glm4_tokfix.remote_code.glm4_spans.glm4_reply_spans``), and the tokenizers use it for
``return_assistant_tokens_mask=True`` when there is no marked copy. On the shipped templates it gives the
marked copies' spans wherever it can prove them (a reply whose ``<think>`` block the template moves out
of the content cannot be proved: ``ValueError``), so the marked copies stay the route for those.

``marked_template(template)`` is the lookup the tokenizers (and ``glm4-tokfix`` folder commands) use.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from glm4_tokfix.remote_code.glm4_templates import (
    TEMPLATE_NAMES,
    has_generation_markers,
    marked_template,
    original_template,
    template_name,
)

__all__ = [
    "TEMPLATE_NAMES",
    "has_generation_markers",
    "marked_template",
    "original_template",
    "reply_spans",
    "template_name",
]


def reply_spans(
    template: str,
    chats: List[List[Dict[str, Any]]],
    tools: Any = None,
    documents: Any = None,
    add_generation_prompt: bool = False,
    **template_kwargs: Any,
) -> Tuple[List[str], List[List[Tuple[int, int]]]]:
    """Each chat rendered with ``template`` and the ``(start, end)`` character span of each assistant turn.

    With ``{% generation %}`` markers in ``template``: the marked spans, as transformers reports them.
    Without: the turns located and verified by ``glm4_reply_spans`` (from just after the template's
    ``<|assistant|>`` to its next role token), or a ``ValueError`` naming the message that cannot be
    proved. ``template_kwargs`` reach the template as variables (pass the tokenizer's special tokens
    yourself if the template reads them).
    """
    from transformers.utils.chat_template_utils import render_jinja_template

    from glm4_tokfix.remote_code.glm4_spans import glm4_reply_spans

    if not isinstance(template, str):
        raise TypeError(f"a chat template is a str, got {type(template).__name__}")
    chats = [list(chat) for chat in chats]
    marked = has_generation_markers(template)
    rendered: List[str]
    spans: Any
    rendered, spans = render_jinja_template(  # type: ignore[str-unpack,assignment]  # transformers annotates -> str; it returns a pair
        conversations=chats, tools=tools, documents=documents, chat_template=template,
        return_assistant_tokens_mask=marked, add_generation_prompt=add_generation_prompt, **template_kwargs,
    )  # fmt: skip
    if marked:
        return rendered, [[(int(a), int(b)) for a, b in row] for row in spans]

    def render(chats_: List[Any], tools_: Any, documents_: Any, kwargs: Dict[str, Any]) -> List[str]:
        return render_jinja_template(  # type: ignore[return-value]  # as above: [0] is the texts
            conversations=chats_, tools=tools_, documents=documents_, chat_template=template,
            add_generation_prompt=add_generation_prompt, **kwargs,
        )[0]  # fmt: skip

    return rendered, glm4_reply_spans(render, chats, rendered, tools, documents, template_kwargs)
