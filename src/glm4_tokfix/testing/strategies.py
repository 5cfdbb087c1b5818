"""Hypothesis strategies for GLM-4 tokenizer properties.

Texts mix ASCII, CJK, emoji, whitespace runs, newlines and special-token
literals (``<|user|>``, ``[gMASK]``, ...); chats are lists of message dicts;
``encode_options`` draws keyword arguments for ``tokenizer(...)`` that always
form a valid call.

Lone surrogates are never drawn: tiktoken (like any UTF-8 tokenizer) cannot
encode them, so no GLM-4 tokenizer round-trips them.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Dict, List, Sequence, Tuple

from hypothesis import strategies as st

from glm4_tokfix.remote_code.glm4_tokens import PREFIX_TEXT

SPECIAL_LITERALS = (
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>",
    "<|end_of_video|>",
)  # fmt: skip
PREFIX = PREFIX_TEXT
ROLES = ("system", "user", "assistant", "observation")

_no_surrogates = st.characters(exclude_categories=("Cs",))  # type: ignore[arg-type]  # hypothesis's stubs want a Literal; "Cs" is one
_ascii = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=12)
_cjk = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=1, max_size=6)
_emoji = st.sampled_from(["😀", "🎉", "👍🏽", "❤️", "🤖", "🇨🇳", "👨‍👩‍👧", "✨"])
_whitespace = st.lists(st.sampled_from([" ", "\t", "\n", "\r\n", "\u3000", "\xa0"]), min_size=1, max_size=6).map(
    "".join
)
_anything = st.text(_no_surrogates, min_size=1, max_size=8)
_words = st.sampled_from(["hello", " world", "GLM", "'s", "you're", " 123", "4567", "tokenizer", "你好", "，", "。"])

fragments = st.one_of(_ascii, _cjk, _emoji, _whitespace, _anything, _words, st.sampled_from(SPECIAL_LITERALS))


@st.composite
def texts(draw: st.DrawFn, min_fragments: int = 0, max_fragments: int = 12) -> str:
    """One text built from fragments of every kind a GLM-4 prompt holds."""
    return "".join(draw(st.lists(fragments, min_size=min_fragments, max_size=max_fragments)))


@st.composite
def prompt_texts(draw: st.DrawFn) -> str:
    """A text that may already carry ``[gMASK]<sop>`` (once, or rarely twice) in front."""
    body = draw(texts())
    copies = draw(st.sampled_from([0, 0, 1, 1, 2]))
    return PREFIX * copies + body


messages = st.fixed_dictionaries(
    {"role": st.sampled_from(ROLES), "content": texts(min_fragments=1)},
)


def chats(max_messages: int = 4) -> st.SearchStrategy[List[Dict[str, str]]]:
    """A conversation: 1..max_messages messages of random roles and contents."""
    return st.lists(messages, min_size=1, max_size=max_messages)


def batches(min_size: int = 1, max_size: int = 6) -> st.SearchStrategy[List[str]]:
    """A batch of prompt texts of very different lengths."""
    return st.lists(prompt_texts(), min_size=min_size, max_size=max_size)


@st.composite
def encode_options(
    draw: st.DrawFn,
    tensors: bool = True,
    outputs: bool = False,
    tensor_types: Sequence[str] = ("np", "pt"),
) -> Dict[str, Any]:
    """Keyword arguments for ``tokenizer(texts, **options)`` that always form a valid call.

    ``padding='max_length'`` always comes with ``truncation=True`` so rows have
    one width; ``return_tensors`` is drawn only when rows are padded, from
    ``tensor_types`` (pass ``available_tensor_types()`` where torch may be
    missing). With ``outputs=True`` it also draws ``return_attention_mask``,
    ``return_special_tokens_mask`` and ``return_token_type_ids`` (the last
    only with special tokens, as transformers 4.x requires)::

        >>> encode_options(outputs=True).example()  # doctest: +SKIP
        {'padding': 'longest', 'padding_side': 'right', 'add_special_tokens': True,
         'return_tensors': 'np', 'return_special_tokens_mask': True}
    """
    options: Dict[str, Any] = {}
    padding = draw(st.sampled_from([True, "longest", "max_length", False]))
    options["padding"] = padding
    options["padding_side"] = draw(st.sampled_from(["left", "right"]))
    options["add_special_tokens"] = draw(st.booleans())
    if padding is not False and draw(st.booleans()):
        options["pad_to_multiple_of"] = draw(st.integers(1, 8))
    truncation = padding == "max_length" or draw(st.booleans())
    if truncation:
        options["truncation"] = True
        max_length = draw(st.integers(2, 48))
        multiple = options.get("pad_to_multiple_of")
        if multiple:  # transformers requires max_length to be a multiple when both are set
            max_length = -(-max_length // multiple) * multiple
        options["max_length"] = max_length
    if tensors and padding is not False and tensor_types:
        options["return_tensors"] = draw(st.sampled_from([None, None, *tensor_types]))
    if outputs:
        for key in ("return_attention_mask", "return_special_tokens_mask", "return_token_type_ids"):
            choices = [None, None, True, False]
            if key == "return_token_type_ids" and not options["add_special_tokens"]:
                choices = [None, None, False]  # transformers 4.x rejects token type ids without special tokens
            value = draw(st.sampled_from(choices))
            if value is not None:
                options[key] = value
    return options


def available_tensor_types() -> Tuple[str, ...]:
    """The ``return_tensors`` values this environment can produce (``"np"``, and ``"pt"`` with torch)."""
    found = []
    for name, module in (("np", "numpy"), ("pt", "torch")):
        if importlib.util.find_spec(module) is not None:
            found.append(name)
    return tuple(found)


padding_sides = st.sampled_from(["left", "right"])


def chat_batches(max_chats: int = 3, max_messages: int = 4) -> st.SearchStrategy[List[List[Dict[str, str]]]]:
    """A batch of 1..max_chats conversations (what ``apply_chat_template`` takes batched)."""
    return st.lists(chats(max_messages), min_size=1, max_size=max_chats)


def text_pairs() -> st.SearchStrategy[Tuple[str, str]]:
    """``(text, text_pair)`` for pair encoding; the first may carry the prefix, as a rendered prompt does."""
    return st.tuples(prompt_texts(), texts())
