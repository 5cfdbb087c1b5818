# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""``glm4_reply_spans``: the assistant replies located (and proved) in any GLM-4 rendering."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Dict, List, Optional, Tuple

import regex

from .glm4_tokens import GLM4_ROLE_TOKENS

__all__ = ["glm4_reply_spans"]


_ROLE_LITERAL = regex.compile("|".join(map(regex.escape, GLM4_ROLE_TOKENS)))


# Private-use stand-ins: for "<" and ">" of role-token literals in the caller's strings (same length, so
# positions carry over), and around the marker that takes an assistant reply's place.
_HIDE_OPEN, _HIDE_CLOSE = "\U000f0010", "\U000f0012"


_REPLY_MARK = "\U000f0013glm4-tokfix reply\U000f0014"


_SPAN_PRIVATE = ("\U000f0010", "\U000f0012", "\U000f0013", "\U000f0014")


def _hide_role_literals(obj: Any) -> Any:
    """``obj`` with each role-token literal in its strings (recursively; dict keys excepted) written with
    private-use characters for its ``<`` and ``>``: the same length, and no longer a role token."""
    if isinstance(obj, str):
        if "<|" not in obj:
            return obj
        return _ROLE_LITERAL.sub(lambda m: _HIDE_OPEN + m.group(0)[1:-1] + _HIDE_CLOSE, obj)
    if isinstance(obj, dict):
        return {key: _hide_role_literals(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_hide_role_literals(value) for value in obj]
    if isinstance(obj, tuple):
        return tuple(_hide_role_literals(value) for value in obj)
    return obj


def _has_role_literal(obj: Any) -> bool:
    if isinstance(obj, str):
        return "<|" in obj and _ROLE_LITERAL.search(obj) is not None
    if isinstance(obj, dict):
        return any(_has_role_literal(value) for value in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_role_literal(value) for value in obj)
    return False


def _empty_content(content: Any) -> bool:
    return content is None or (isinstance(content, (str, list, tuple)) and not content)


def glm4_reply_spans(
    render: Callable[[List[Any], Any, Any, Dict[str, Any]], List[str]],
    chats: List[Any],
    rendered: List[str],
    tools: Any = None,
    documents: Any = None,
    template_kwargs: Optional[Dict[str, Any]] = None,
) -> List[List[Tuple[int, int]]]:
    """The character span of each assistant turn in ``rendered`` (the real rendering of each chat), for
    a GLM-4 chat template without ``{% generation %}`` markers; found and verified, never guessed.

    ``render(chats, tools, documents, template_kwargs)`` renders chats with the template (same options
    as ``rendered``). A turn's span runs from just after the ``<|assistant|>`` the template writes for
    an assistant message to the next role token the template writes (or the end): for GLM-4's
    templates, what the marked copies in ``glm4_tokfix.chat_templates`` mark.

    How: role-token literals in the caller's strings are first written with private-use characters
    (same length), and the rendering must then differ from the real one in exactly those characters,
    so every role token left is the template's own. Then for each assistant message the chat is
    rendered with that message's content replaced by a unique marker: the marker must appear exactly
    once, and the rendering before and after it must be exactly the real rendering's start and end --
    so the part in between is what the template wrote for that content, whatever it does to it
    (``strip()``, ``split('</think>')[-1]``, ...). An empty content that cannot be located this way
    must write nothing (the chat without the message renders alike) and gets no span. Anything else
    is a ``ValueError`` saying which message and why.
    """
    template_kwargs = dict(template_kwargs or {})
    for n, (chat, text) in enumerate(zip(chats, rendered)):
        has_reply = any(isinstance(m, Mapping) and m.get("role") == "assistant" for m in chat)
        for ch in _SPAN_PRIVATE if has_reply else ():
            if ch in text:
                raise _span_error(
                    f"chat {n}: assistant masks for a template without {{% generation %}} markers mark the chat with "
                    f"private-use characters (U+{ord(ch):X}), and this chat already holds one"
                )
    hide = _has_role_literal([chats, tools, documents, template_kwargs])
    if hide:
        chats_h = [_hide_role_literals(chat) for chat in chats]
        tools_h, documents_h = _hide_role_literals(tools), _hide_role_literals(documents)
        kwargs_h = _hide_role_literals(template_kwargs)
    else:
        chats_h, tools_h, documents_h, kwargs_h = chats, tools, documents, template_kwargs

    variants: List[Any] = []  # every chat with one assistant content replaced by the marker
    where: List[List[Tuple[int, int]]] = []  # per chat: (message index, variant index)
    for chat in chats_h:
        found = []
        for i, message in enumerate(chat):
            if isinstance(message, Mapping) and message.get("role") == "assistant":
                variant = list(chat)
                variant[i] = {**message, "content": _REPLY_MARK}
                found.append((i, len(variants)))
                variants.append(variant)
        where.append(found)
    texts_h = render(chats_h, tools_h, documents_h, kwargs_h) if hide else rendered
    texts_v = render(variants, tools_h, documents_h, kwargs_h) if variants else []

    all_spans: List[List[Tuple[int, int]]] = []
    for n, (chat, text) in enumerate(zip(chats_h, texts_h)):
        if hide and text.replace(_HIDE_OPEN, "<").replace(_HIDE_CLOSE, ">") != rendered[n]:
            raise _span_error(
                f"chat {n}: the template renders role-token literals (<|user|>, ...) in the chat's text differently "
                "from other text, so the turns it writes cannot be told from the text"
            )
        spans: List[Tuple[int, int]] = []
        for i, k in where[n]:
            located = _locate_content(text, texts_v[k])
            if located is None:
                if _empty_content(chat[i].get("content")):
                    if render([chat[:i] + chat[i + 1 :]], tools_h, documents_h, kwargs_h)[0] == text:
                        continue  # the template writes nothing for this message: nothing to supervise
                    why = "its content is empty, and the template writes it in a way that cannot be located"
                else:
                    why = (
                        "the template's output around its content depends on the content (it moves part of it, "
                        "e.g. a <think> block, elsewhere; drops whitespace-only content; or writes it more than once "
                        "or not at all)"
                    )
                raise _span_error(f"chat {n}, message {i} (assistant): cannot locate the reply in the rendering: {why}")
            a, b = located
            start = text.rfind("<|assistant|>", 0, a)
            if start < 0 or _ROLE_LITERAL.search(text, start + len("<|assistant|>"), a):
                raise _span_error(
                    f"chat {n}, message {i} (assistant): the template writes its content without an <|assistant|> "
                    "token before it, so the turn cannot be located"
                )
            start += len("<|assistant|>")
            following = _ROLE_LITERAL.search(text, b)
            end = following.start() if following is not None else len(text)
            if spans and start < spans[-1][1]:
                raise _span_error(f"chat {n}, message {i} (assistant): its turn overlaps the previous one")
            spans.append((start, end))
        all_spans.append(spans)
    return all_spans


def _span_error(message: str) -> ValueError:
    return ValueError(
        f"return_assistant_tokens_mask=True: {message}. Pass chat_template= a template with "
        "{% generation %}...{% endgeneration %} around each assistant reply"
    )


def _locate_content(text: str, marked: str) -> Optional[Tuple[int, int]]:
    """(start, end) of what the template wrote for the marked content, or None when it cannot be proved."""
    at = marked.find(_REPLY_MARK)
    if at < 0 or marked.find(_REPLY_MARK, at + 1) >= 0:
        return None
    head, tail = marked[:at], marked[at + len(_REPLY_MARK) :]
    if len(head) + len(tail) > len(text) or not text.startswith(head) or not text.endswith(tail):
        return None
    return len(head), len(text) - len(tail)
