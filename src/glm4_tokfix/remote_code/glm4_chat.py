# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""``GLM4ChatMixin``: ``apply_chat_template`` with assistant masks and sanitizing."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any, Container, Dict, List, Optional, Tuple

import regex
from transformers.utils import PaddingStrategy

from .glm4_encoders import _Literals
from .glm4_offsets import _mask_of_ranges, _row_ranges_at_literals, _RowCharacters, assistant_token_mask
from .glm4_spans import glm4_reply_spans
from .glm4_state import _Host, _NameSet, _return_dict_default, _transformers_sanitizes
from .glm4_templates import marked_template, template_name

__all__ = ["GLM4ChatMixin"]


# transformers 5.24's private-use markers around control-token literals found in user input (the same
# characters, so a chat marked by either side encodes alike).
_CONTROL_START, _CONTROL_END = "\U000f0000", "\U000f0001"
_MARKERS = regex.compile(f"[{_CONTROL_START}{_CONTROL_END}]")


_GENERATION_TAG = regex.compile(r"\{%-?\s*generation\s*-?%\}")


# {% generation %} / {% endgeneration %} with their whitespace control, for _span_marked_template
_GENERATION_TAGS = regex.compile(r"\{%(-?)\s*(generation|endgeneration)\s*(-?)%\}")


# the template variables that carry one call's span markers (see _span_marked_template)
_SPAN_OPEN_VAR, _SPAN_CLOSE_VAR = "glm4_tokfix_span_open", "glm4_tokfix_span_close"


@functools.lru_cache(maxsize=32)
def _span_marked_template(marked: str) -> str:
    """``marked`` with each ``{% generation %}`` / ``{% endgeneration %}`` turned into an if-block that
    prints a marker variable, whitespace control kept: one plain render then gives the rendering with a
    marker where each generation block starts and ends, instead of transformers' generation tracker
    (which renders block by block, about twice as slow). Used for the shipped marked copies only, whose
    blocks print straight into the rendering (tests/test_chat_templates.py compares the two routes)."""

    def block(match: regex.Match[str]) -> str:
        var = _SPAN_OPEN_VAR if match.group(2) == "generation" else _SPAN_CLOSE_VAR
        return "{%" + match.group(1) + " if true %}{{ " + var + " }}{% endif " + match.group(3) + "%}"

    return _GENERATION_TAGS.sub(block, marked)


def _split_span_markers(text: str, marker: str, digits: str) -> Optional[Tuple[str, List[Tuple[int, int]]]]:
    """The rendering without ``marker`` + "<"/">" and the (start, end) of each marked block in it; None
    when the markers do not alternate open, close, or ``digits`` (the end of ``marker``, which no text holds
    by chance) appear without the rest of the marker (the template changed it): then the generation tracker
    decides. The text is searched once, for the digits."""
    parts = text.split(digits)
    head = marker[: len(marker) - len(digits)]
    pieces, spans, at, start = [], [], 0, None
    before = parts[0]
    for part in parts[1:]:
        if not before.endswith(head):
            return None
        before = before[: len(before) - len(head)]
        pieces.append(before)
        at += len(before)
        kind = part[:1]
        if kind == "<" and start is None:
            start = at
        elif kind == ">" and start is not None:
            spans.append((start, at))
            start = None
        else:
            return None
        before = part[1:]
    pieces.append(before)
    return ("".join(pieces), spans) if start is None else None


def _mark_control_tokens(obj: Any, literals: _Literals) -> Any:
    """Wrap each control-token literal in user strings (recursively; dict keys excepted) in the markers.

    Markers already in a string are dropped first, so a user cannot forge a marked token. The literals are found
    as a longest-first regex alternation of them finds them (leftmost, then longest), in time linear in the text.
    """
    if isinstance(obj, str):
        obj = obj.replace(_CONTROL_START, "").replace(_CONTROL_END, "")
        parts, position = [], 0
        for start, end, _ in literals.find(obj):
            parts += [obj[position:start], _CONTROL_START, obj[start:end], _CONTROL_END]
            position = end
        return "".join(parts) + obj[position:] if parts else obj
    if isinstance(obj, dict):
        return {key: _mark_control_tokens(value, literals) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_mark_control_tokens(value, literals) for value in obj]
    return obj


def _split_marked(text: str, contents: Container[str]) -> List[Optional[str]]:
    """``[text, marked literal, text, marked literal, ..., text]`` of a rendered chat, ``None`` in place of the
    literal for a lone marker (a template's string method split a marked literal): what splitting on
    ``START(literal)END|[START END]`` gives, in time linear in the text. No literal holds a marker character
    (``_glm4_encode_marked`` checks), so a marked literal is exactly the text between a START and the next END."""
    pieces: List[Optional[str]] = []
    position = at = 0
    markers = _MARKERS.search
    found = markers(text, at)
    while found is not None:
        start = found.start()
        if text[start] == _CONTROL_START:
            end = text.find(_CONTROL_END, start + 1)
            if end != -1 and text[start + 1 : end] in contents:
                pieces += [text[position:start], text[start + 1 : end]]
                position = end + 1
                found = markers(text, position)
                continue
        pieces += [text[position:start], None]
        position = start + 1
        found = markers(text, position)
    pieces.append(text[position:])
    return pieces


class GLM4ChatMixin(_Host):
    """Chat templates for training: assistant-token masks and control-token sanitizing.

    Tokenizer-agnostic: it needs ``self(..., return_offsets_mapping=True)``, ``encode``, ``prepare_for_model``,
    ``pad`` and the public ``added_tokens_*`` views, so the slow (``GLM4FixMixin``) and the fast
    (``GLM4FastFixMixin``) GLM-4 fixes share it.
    """

    # ------------------------------------------------------- chat template
    def apply_chat_template(self, conversation: Any, *args: Any, **kwargs: Any):
        """transformers' ``apply_chat_template``, plus ``return_assistant_tokens_mask=True`` (both lines, slow
        and fast GLM-4 tokenizers) and ``sanitize_control_tokens=True`` on transformers 4.x.

        ``tokenize=True`` renders the chats and encodes them in one list call (the tokenizer's fast path),
        with transformers' output. ``return_assistant_tokens_mask=True``: ``assistant_masks`` is 1 on the
        tokens of each assistant turn, 0 elsewhere and on pads. The turns are the template's
        ``{% generation %}`` spans; a GLM-4 template without markers is swapped for its marked copy from
        ``glm4_tokfix.chat_templates`` (same rendering) when there is one, and otherwise its turns are
        located and verified by ``glm4_reply_spans`` (``ValueError`` when they cannot be proved).
        ``sanitize_control_tokens=True``: control-token literals in messages, tools, documents and template
        variables are encoded as text, with transformers 5.24's ids.
        """
        if args:  # tools, documents, ... given positionally: name them, as transformers' signature does
            names = (
                "tools",
                "documents",
                "chat_template",
                "add_generation_prompt",
                "continue_final_message",
                "tokenize",
            )
            if len(args) > len(names):
                raise TypeError(
                    f"apply_chat_template takes at most {len(names)} positional options; pass the rest by name"
                )
            for name, value in zip(names, args):
                if name in kwargs:
                    raise TypeError(f"apply_chat_template got {name!r} twice")
                kwargs[name] = value
        mask = kwargs.get("return_assistant_tokens_mask", False)
        sanitize = kwargs.get("sanitize_control_tokens", False)
        own_sanitize = sanitize and not _transformers_sanitizes()
        # Every tokenizing call renders here and encodes the texts in one list call: transformers 5 passes
        # sanitize_control_tokens=False to the tokenizer, which sends each row down the per-token generic path.
        if mask or own_sanitize or (kwargs.get("tokenize", True) and not sanitize):
            return self._glm4_apply_chat_template(conversation, **kwargs)
        if "sanitize_control_tokens" in kwargs and not _transformers_sanitizes():
            kwargs.pop("sanitize_control_tokens")  # False: nothing to do, and 4.x would pass it to the template
        return super().apply_chat_template(conversation, **kwargs)

    @staticmethod
    def _glm4_render_span_marked(
        marked: str,
        conversations: List[Any],
        tools: Any,
        documents: Any,
        add_generation_prompt: bool,
        template_kwargs: Dict[str, Any],
    ) -> Tuple[Optional[List[str]], Optional[List[List[Tuple[int, int]]]]]:
        """Render ``marked`` (a template with generation blocks) once, plainly, with a marker printed where
        each block starts and ends; the renderings without the markers and each one's block spans, the
        same as transformers' generation tracker gives. (None, None) when the markers cannot be trusted
        (not alternating open, close, or changed by the template): then the tracker renders."""
        from transformers.utils.chat_template_utils import render_jinja_template

        digits = str(int.from_bytes(os.urandom(10), "big"))  # this call's: no text can hold it by chance
        marker = "\x00glm4-tokfix-span-" + digits
        try:
            texts, _ = render_jinja_template(  # type: ignore[str-unpack]  # transformers annotates render_jinja_template -> str; it returns a pair
                conversations=conversations, tools=tools, documents=documents,
                chat_template=_span_marked_template(marked), add_generation_prompt=add_generation_prompt,
                **{**template_kwargs, _SPAN_OPEN_VAR: marker + "<", _SPAN_CLOSE_VAR: marker + ">"},
            )  # fmt: skip
        except Exception:
            return None, None
        rendered, spans = [], []
        for text in texts:
            split = _split_span_markers(text, marker, digits)
            if split is None:  # e.g. a marker the template changed (say, upper-cased)
                return None, None
            rendered.append(split[0])
            spans.append(split[1])
        return rendered, spans

    @staticmethod
    def _glm4_shipped_marked(marked: Optional[str], template: str) -> bool:
        """Whether ``marked`` (``_glm4_marked_template(template)``) is one of the shipped marked copies."""
        if marked is None:
            return False
        if marked is not template:  # looked up for a known original
            return True
        return template_name(marked) is not None

    def _glm4_marked_template(self, template: str) -> Optional[str]:
        """``template`` if it has ``{% generation %}`` markers, else the shipped marked copy of it, else None
        (then the replies are located by ``glm4_reply_spans``)."""
        if _GENERATION_TAG.search(template):
            return template
        return marked_template(template)

    def _glm4_apply_chat_template(
        self,
        conversation: Any,
        tools: Any = None,
        documents: Any = None,
        chat_template: Optional[str] = None,
        add_generation_prompt: bool = False,
        continue_final_message: Any = False,
        tokenize: bool = True,
        sanitize_control_tokens: bool = False,
        padding: Any = False,
        truncation: Any = False,
        max_length: Optional[int] = None,
        return_tensors: Any = None,
        return_dict: Optional[bool] = None,
        return_assistant_tokens_mask: bool = False,
        tokenizer_kwargs: Optional[Dict[str, Any]] = None,
        **template_kwargs: Any,
    ):
        """``apply_chat_template``, rendered here and encoded in one list call, with assistant masks and
        control-token sanitizing done here."""
        from transformers import tokenization_utils_base as base
        from transformers.utils.chat_template_utils import render_jinja_template

        if return_dict is None:
            return_dict = _return_dict_default()
        if not tokenize:
            return_dict = False
        if return_assistant_tokens_mask and not (return_dict and tokenize):
            raise ValueError("`return_assistant_tokens_mask=True` requires `return_dict=True` and `tokenize=True`")
        if sanitize_control_tokens and (not tokenize or return_assistant_tokens_mask):
            raise ValueError(
                "`sanitize_control_tokens=True` requires `tokenize=True` and is not compatible with "
                "`return_assistant_tokens_mask=True`."
            )
        tokenizer_kwargs = dict(tokenizer_kwargs or {})
        template = self.get_chat_template(chat_template, tools)
        marked = self._glm4_marked_template(template) if return_assistant_tokens_mask else None
        if isinstance(conversation, (list, tuple)) and not conversation:
            raise ValueError("Cannot apply chat template to an empty conversation. Provide at least one message.")
        batched = isinstance(conversation, (list, tuple)) and (
            isinstance(conversation[0], (list, tuple)) or hasattr(conversation[0], "messages")
        )
        conversations = list(conversation) if batched else [conversation]
        normalize = getattr(base, "_normalize_chat_messages", None)  # transformers 5: message objects, None keys
        if normalize is not None:
            conversations = [normalize(chat) for chat in conversations]
        if continue_final_message:
            if add_generation_prompt:
                raise ValueError(
                    "continue_final_message and add_generation_prompt are not compatible. Use continue_final_message "
                    "when you want the model to continue the final message, and add_generation_prompt when you want "
                    "to add a header that will prompt it to start a new assistant message instead."
                )
            if return_assistant_tokens_mask:
                raise ValueError("continue_final_message is not compatible with return_assistant_tokens_mask.")
        if sanitize_control_tokens:
            literals = _Literals(dict.fromkeys(self._glm4_control_tokens(template), 0))
            conversations = [_mark_control_tokens(getattr(c, "messages", c), literals) for c in conversations]
            tools = _mark_control_tokens(tools, literals)
            documents = _mark_control_tokens(documents, literals)
            template_kwargs = _mark_control_tokens(template_kwargs, literals)
        special = self.special_tokens_map
        rendered: Any  # the texts
        spans: Any  # their assistant spans
        rendered = spans = None
        if (
            self._glm4_shipped_marked(marked, template)
            and not {_SPAN_OPEN_VAR, _SPAN_CLOSE_VAR} & template_kwargs.keys()
        ):
            rendered, spans = self._glm4_render_span_marked(
                marked,  # type: ignore[arg-type]  # not None: _glm4_shipped_marked checked it
                conversations,
                tools,
                documents,
                add_generation_prompt,
                {**special, **template_kwargs},
            )
        if rendered is None:
            rendered, spans = render_jinja_template(  # type: ignore[str-unpack]  # as above: the result is a pair
                conversations=conversations,
                tools=tools,
                documents=documents,
                chat_template=marked if marked is not None else template,
                return_assistant_tokens_mask=marked is not None,
                continue_final_message=continue_final_message,
                add_generation_prompt=add_generation_prompt,
                **{**special, **template_kwargs},
            )
        if return_assistant_tokens_mask and marked is None:

            def render(chats: List[Any], tools: Any, documents: Any, kwargs: Dict[str, Any]) -> List[str]:
                return render_jinja_template(  # type: ignore[return-value]  # as above: [0] is the texts
                    conversations=chats,
                    tools=tools,
                    documents=documents,
                    chat_template=template,
                    add_generation_prompt=add_generation_prompt,
                    **{**special, **kwargs},
                )[0]

            chats = [list(getattr(c, "messages", c)) for c in conversations]
            spans = glm4_reply_spans(render, chats, rendered, tools, documents, template_kwargs)
        if not tokenize:
            return rendered if batched else rendered[0]
        options = dict(padding=padding, truncation=truncation, max_length=max_length)
        if sanitize_control_tokens:
            out = self._glm4_encode_id_rows(
                [self._glm4_encode_marked(text) for text in rendered],
                batched,
                return_tensors,
                options,
                tokenizer_kwargs,
            )
        elif return_assistant_tokens_mask:
            out = self._glm4_encode_with_masks(rendered, spans, batched, return_tensors, options, tokenizer_kwargs)
        else:
            out = self(
                rendered if batched else rendered[0],
                add_special_tokens=False,
                return_tensors=return_tensors,
                **options,
                **tokenizer_kwargs,
            )
        return out if return_dict else out["input_ids"]

    #: tokenizer_kwargs under which assistant masks come from the ids and per-token character counts (no offsets).
    _GLM4_MASK_FAST_KWARGS = _NameSet(
        {"padding_side", "pad_to_multiple_of", "return_attention_mask", "return_token_type_ids",
         "return_special_tokens_mask", "return_length", "verbose", "split_special_tokens"}
    )  # fmt: skip

    def _glm4_encode_with_masks(
        self,
        rendered: List[str],
        spans: List[List[Tuple[int, int]]],
        batched: bool,
        return_tensors: Any,
        options: Dict[str, Any],
        tokenizer_kwargs: Dict[str, Any],
    ):
        """``self(rendered, add_special_tokens=False, ...)`` plus ``assistant_masks`` from the spans.

        On a tokenizer with per-id character tables (``GLM4FixMixin``) the masks come from the ids: spans whose
        edges are next to added-token literals by counting those literals (``_row_ranges_at_literals``), others
        from each token's character range, a running sum of the characters its bytes start (the same tokens
        ``assistant_token_mask`` picks from the offsets). Otherwise, or with options that reshape rows
        (overflow, offsets asked for), from the offsets.
        """
        from transformers.tokenization_utils_base import BatchEncoding

        texts = rendered if batched else rendered[0]
        tables_of = getattr(self, "_glm4_offset_tables", None)
        tables = (
            tables_of() if tables_of is not None and tokenizer_kwargs.keys() <= self._GLM4_MASK_FAST_KWARGS else None
        )
        if tables is not None and self._glm4_stripping_ids():
            tables = None  # added tokens that strip whitespace: the ids no longer cover the text (offsets do)
        padded = options["padding"] not in (False, None, "do_not_pad", PaddingStrategy.DO_NOT_PAD)
        if tables is not None and padded and tokenizer_kwargs.get("return_attention_mask") is False:
            tables = None  # pads could not be told from ids
        masks: Optional[List[List[int]]] = None
        if tables is not None:
            out = self(texts, add_special_tokens=False, return_tensors=None, **options, **tokenizer_kwargs)
            split = tokenizer_kwargs.get("split_special_tokens")
            if split is None:
                split = getattr(self, "split_special_tokens", False)
            literals = None if options["truncation"] or split else self._glm4_mask_literals()
            masks = self._glm4_masks_from_ids(
                out, rendered, spans, batched, tables, bool(options["truncation"]), padded, literals
            )
        if masks is None:
            want_offsets = tokenizer_kwargs.pop("return_offsets_mapping", False)
            out = self(
                texts, add_special_tokens=False, return_tensors=None, return_offsets_mapping=True, **options,
                **tokenizer_kwargs,
            )  # fmt: skip
            offsets = out["offset_mapping"] if batched else [out["offset_mapping"]]
            masks = [assistant_token_mask(row, row_spans) for row, row_spans in zip(offsets, spans)]
            if not want_offsets:
                del out["offset_mapping"]
        out["assistant_masks"] = masks if batched else masks[0]
        if return_tensors is not None:
            out = BatchEncoding(dict(out), tensor_type=return_tensors, prepend_batch_axis=not batched)
        return out

    def _glm4_masks_from_ids(
        self,
        out: Any,
        rendered: List[str],
        spans: List[List[Tuple[int, int]]],
        batched: bool,
        tables: Tuple[List[int], List[int], Any],
        truncated: bool,
        padded: bool,
        literals: Optional[Mapping[str, int]] = None,
    ) -> Optional[List[List[int]]]:
        """Each row's assistant mask from its ids, or None when the rows are not one per text (then offsets).

        ``literals``: the added tokens of ``_glm4_mask_literals`` when the rows are the texts' whole encodings;
        spans whose edges are next to them are found by counting them (``_row_ranges_at_literals``), else
        by the characters of every token (``_RowCharacters``)."""
        rows = out["input_ids"] if batched else [out["input_ids"]]
        if len(rows) != len(rendered):
            return None
        attention = out.get("attention_mask") if padded else None  # unpadded rows are all real tokens
        if attention is not None and not batched:
            attention = [attention]
        left_cut = self.truncation_side == "left"
        # each row's ids without its pads, and where they start in the row (two lists, not a pair per row: each
        # pair would be one more object for the garbage collector to count)
        real_ids, leads = rows, [0] * len(rows)
        if attention is not None:
            real_ids = []
            for k, row in enumerate(rows):
                width, lead = len(row), 0
                n_real = sum(attention[k])
                if n_real < width and not attention[k][0]:
                    lead = width - n_real
                leads[k] = lead
                real_ids.append(row[lead : lead + n_real] if n_real < width else row)
        if literals is not None and not truncated:
            items = tuple(literals.items())
            masks = []
            for row, ids, lead, text, row_spans in zip(rows, real_ids, leads, rendered, spans):
                ranges = _row_ranges_at_literals(ids, text, row_spans, items)  # one row's at a time: let go at once
                if ranges is None:  # an edge next to no literal: every row by its characters
                    break
                masks.append(_mask_of_ranges(len(row), lead, ranges))
            else:
                return masks
        chars = _RowCharacters(tables[0], tables[1], real_ids)
        shifts = []
        for total, text in zip(chars.totals(), rendered):
            if total > len(text) or (not truncated and total != len(text)):
                return None  # not the plain encoding of the text: let the offsets decide
            shifts.append(len(text) - total if left_cut and total < len(text) else 0)  # a left cut keeps the end
        found = chars.token_ranges(spans, shifts)
        return [_mask_of_ranges(len(row), lead, ranges) for row, lead, ranges in zip(rows, leads, found)]

    def _glm4_mask_literals(self) -> Optional[Dict[str, int]]:
        """content -> id of the added tokens that this tokenizer's encodings split out as their ids, ids that BPE
        never makes, when no two occurrences of them can overlap in a text (``_row_ranges_at_literals``);
        None when that is not known to hold."""
        return None

    def _glm4_control_tokens(self, template: str) -> List[str]:
        """The tokens ``sanitize_control_tokens=True`` encodes as text in user input, as transformers 5.24
        picks them: the special added tokens, plus ``chat_control_tokens`` when set, else the added
        tokens the template itself writes (whitespace-only tokens excepted)."""
        chosen = getattr(self, "chat_control_tokens", None)
        tokens = []
        for token in self.added_tokens_decoder.values():
            if token.special:
                tokens.append(token.content)
            elif chosen is not None:
                if token.content in chosen:
                    tokens.append(token.content)
            elif token.content in template and not token.content.isspace():
                tokens.append(token.content)
        return tokens

    def _glm4_encode_marked(self, text: str) -> List[int]:
        """ids of a chat rendered from marked input: marked literals as text, the template's own tokens as tokens.

        A lone marker (a template string method split a marked literal) is dropped but still separates
        the text around it. Each piece after the first is encoded after a newline that is then taken off
        again (when the newline stays a token of its own), as transformers 5.24 does.
        """
        contents = {content for content in self.added_tokens_encoder if content}
        if any(_CONTROL_START in c or _CONTROL_END in c for c in contents):
            raise ValueError("sanitize_control_tokens=True cannot be used: an added token holds a marker character")
        pieces = _split_marked(text, contents)
        newline = self.encode("\n", add_special_tokens=False)
        ids = self.encode(pieces[0], add_special_tokens=False)
        for i, piece in enumerate(pieces[1:], start=1):
            if not piece:
                continue
            as_text = i % 2 == 1  # odd pieces are marked literals
            piece_ids = self.encode("\n" + piece, add_special_tokens=False, split_special_tokens=as_text)
            if piece_ids[: len(newline)] == newline:
                piece_ids = piece_ids[len(newline) :]
            else:
                piece_ids = self.encode(piece, add_special_tokens=False, split_special_tokens=as_text)
            ids += piece_ids
        return ids

    def _glm4_encode_id_rows(
        self, rows: List[List[int]], batched: bool, return_tensors: Any, options: Dict[str, Any], extra: Dict[str, Any]
    ):
        """Truncate and pad ready ids as ``tok(texts, add_special_tokens=False, **options)`` would."""
        from transformers.tokenization_utils_base import BatchEncoding

        extra = dict(extra)
        pad_kwargs = {
            k: extra.pop(k) for k in ("pad_to_multiple_of", "padding_side", "return_attention_mask") if k in extra
        }
        encoded = [
            self.prepare_for_model(
                ids,
                add_special_tokens=False,
                truncation=options["truncation"],
                max_length=options["max_length"],
                padding=False,
                return_attention_mask=False,
                **extra,
            )
            for ids in rows
        ]
        data: Any = {key: [row[key] for row in encoded] for key in encoded[0]} if batched else dict(encoded[0])
        data = self.pad(data, padding=options["padding"], max_length=options["max_length"], **pad_kwargs)
        return BatchEncoding(dict(data), tensor_type=return_tensors, prepend_batch_axis=not batched)
