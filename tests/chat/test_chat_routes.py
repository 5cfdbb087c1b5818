"""apply_chat_template(tokenize=True) and assistant masks at list speed: outputs identical to the old routes.

* ``apply_chat_template(..., tokenize=True)`` now renders and encodes the texts in one list call; transformers'
  own ``apply_chat_template`` (``PreTrainedTokenizerBase.apply_chat_template``, the old route: on 5.x it sends
  ``sanitize_control_tokens=False`` to the tokenizer, i.e. the per-token generic path) must give the same
  output -- ids, every field, types, tensors -- single and batched, with padding, truncation, ``return_tensors``,
  ``return_dict`` (both lines' defaults) and ``tokenizer_kwargs``; on the slow and the patched fast tokenizer.
* ``return_assistant_tokens_mask=True`` now takes the masks from the ids and per-token character counts on the
  slow tokenizer; they must equal the masks built from the offsets (``assistant_token_mask``), also under
  truncation on both sides and padding on both sides.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

import glm4_tokfix
from glm4_tokfix.remote_code.glm4_offsets import assistant_token_mask
from helpers import as_lists
from strategies import texts

_content = texts(min_fragments=0, max_fragments=6)
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "observation"]), "content": _content}
)
_chat = st.lists(_message, min_size=1, max_size=4)


@st.composite
def route_options(draw):
    options = {}
    if draw(st.booleans()):
        options["padding"] = draw(st.sampled_from([True, "longest", "max_length", False]))
    if draw(st.booleans()):
        options["truncation"] = True
    if options.get("truncation") or options.get("padding") == "max_length":
        options["max_length"] = draw(st.integers(8, 60))
    if draw(st.booleans()):
        options["return_dict"] = draw(st.booleans())
    if draw(st.booleans()):
        options["add_generation_prompt"] = True
    elif draw(st.booleans()):
        options["continue_final_message"] = True
    extra = {}
    if draw(st.booleans()):
        extra["return_attention_mask"] = draw(st.booleans())
    if draw(st.booleans()):
        extra["padding_side"] = draw(st.sampled_from(["left", "right"]))
    if draw(st.booleans()):
        extra["return_special_tokens_mask"] = True
    if draw(st.booleans()):
        extra["pad_to_multiple_of"] = 8
    if extra:
        options["tokenizer_kwargs"] = extra
    return options


def plain(value):
    """Nested lists all the way down (ragged object arrays hold arrays)."""
    value = as_lists(value)
    return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def same(a, b):
    assert type(a) is type(b)
    if isinstance(a, (list, int)):
        assert a == b
        return
    if hasattr(a, "dtype"):  # return_dict=False with tensors: the ids tensor itself
        assert a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape) and plain(a) == plain(b)
        return
    assert sorted(a.keys()) == sorted(b.keys())
    for key in a:
        x, y = a[key], b[key]
        assert type(x) is type(y), key
        if hasattr(x, "dtype"):
            assert x.dtype == y.dtype and tuple(x.shape) == tuple(y.shape), key
        assert plain(x) == plain(y), key


def both_routes(tok, conversation, **options):
    old = new = None
    try:
        old = PreTrainedTokenizerBase.apply_chat_template(tok, conversation, tokenize=True, **options)
    except (ValueError, TypeError) as error:
        with pytest.raises(type(error)):
            tok.apply_chat_template(conversation, tokenize=True, **options)
        return None, None
    new = tok.apply_chat_template(conversation, tokenize=True, **options)
    return old, new


@given(chats=st.lists(_chat, min_size=1, max_size=4), batched=st.booleans(), options=route_options(),
       tensors=st.sampled_from([None, None, "np", "pt"]))  # fmt: skip
def test_new_route_equals_transformers_route(tok, chats, batched, options, tensors):
    if tensors is not None:
        options["return_tensors"] = tensors
    conversation = chats if batched else chats[0]
    old, new = both_routes(tok, conversation, **options)
    if old is not None:
        same(old, new)


@pytest.fixture(scope="session")
def patched_fast(fast_folder):
    from transformers import AutoTokenizer

    cache = {}

    def load(style):
        if style not in cache:
            cache[style] = glm4_tokfix.patch(AutoTokenizer.from_pretrained(str(fast_folder("tiny", style))))
        return cache[style]

    return load


@pytest.mark.parametrize("style", ["chat-hf", "0414"])
@given(chats=st.lists(_chat, min_size=1, max_size=3), options=route_options(), tensors=st.sampled_from([None, "pt"]))
def test_new_route_equals_transformers_route_on_the_fast_tokenizer(patched_fast, style, chats, options, tensors):
    tok = patched_fast(style)
    if tensors is not None:
        options["return_tensors"] = tensors
    old, new = both_routes(tok, chats, **options)
    if old is not None:
        same(old, new)


def test_the_tokenizer_is_called_once_for_a_batch(tok, monkeypatch):
    """The route is one list call (not one per row), without transformers 5's sanitize_control_tokens=False."""
    calls = []
    original = type(tok).__call__

    def spy(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(tok), "__call__", spy)
    chats = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "yo"}]]
    tok.apply_chat_template(chats, tokenize=True, padding=True)
    assert len(calls) == 1 and "sanitize_control_tokens" not in calls[0]


# ------------------------------------------------------------------ masks from ids == masks from offsets
@given(
    chats=st.lists(_chat, min_size=1, max_size=4),
    max_length=st.one_of(st.none(), st.integers(1, 50)),
    side=st.sampled_from(["left", "right"]),
    padding=st.sampled_from([False, True]),
    padding_side=st.sampled_from(["left", "right"]),
    template=st.sampled_from(["shipped", "generic"]),
)
def test_masks_from_ids_equal_masks_from_offsets(tok, chats, max_length, side, padding, padding_side, template):
    kwargs = dict(tokenize=True, return_dict=True, return_assistant_tokens_mask=True, padding=padding,
                  truncation=max_length is not None, max_length=max_length)  # fmt: skip
    kwargs["tokenizer_kwargs"] = {"padding_side": padding_side}
    if template == "generic":
        kwargs["chat_template"] = (
            "[gMASK]<sop>{% for m in messages %}<|{{ m.role }}|>\n{{ m.content.strip() }}{% endfor %}"
        )
    tok.truncation_side = side
    try:
        fast = tok.apply_chat_template(chats, **kwargs)
        kwargs["tokenizer_kwargs"] = dict(kwargs["tokenizer_kwargs"], return_offsets_mapping=True)  # the offsets route
        slow = tok.apply_chat_template(chats, **kwargs)
    finally:
        tok.truncation_side = "right"
    assert fast["input_ids"] == slow["input_ids"]
    assert fast["assistant_masks"] == slow["assistant_masks"]
    for row_offsets, row_mask in zip(slow["offset_mapping"], slow["assistant_masks"]):
        assert len(row_offsets) == len(row_mask)


def test_masks_from_ids_on_a_cut_character():
    """Tokens that split one character (emoji) around a span's edge: the same tokens as the offsets pick."""
    tok = glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(glm4_tokfix.TINY_GLM4_DIR)
    chat = [{"role": "user", "content": "😀"}, {"role": "assistant", "content": "👨‍👩‍👧x😀"}]
    out = tok.apply_chat_template(chat, return_dict=True, return_assistant_tokens_mask=True)
    rendered = tok.apply_chat_template(chat, tokenize=False)
    from transformers.utils.chat_template_utils import render_jinja_template

    from glm4_tokfix.chat_templates import marked_template

    _, spans = render_jinja_template(conversations=[chat], chat_template=marked_template(tok.chat_template),
                                     return_assistant_tokens_mask=True, **tok.special_tokens_map)  # fmt: skip
    offsets = tok(rendered, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert out["assistant_masks"] == assistant_token_mask(offsets, spans[0])
    assert sum(out["assistant_masks"]) > 0


# ------------------------------------------------------------------ span edges next to added-token literals
def _marked_render(tok, chats):
    pytest.importorskip("jinja2", reason="chat templates render with jinja2, which is not installed")
    from glm4_tokfix.chat_templates import marked_template

    rendered, spans = tok._glm4_render_span_marked(
        marked_template(tok.chat_template), chats, None, None, False, dict(tok.special_tokens_map)
    )
    assert rendered is not None
    return rendered, spans


@given(chats=st.lists(_chat, min_size=1, max_size=4), data=st.data())
def test_literal_edges_equal_character_counts(tok, chats, data):
    """Counting added-token literals (``_row_ranges_at_literals``) finds the tokens of each span that the running
    character counts find -- for the shipped template's spans (a reply starts after <|assistant|> and ends before
    the next turn's token), with literals in the contents too -- and refuses (None) an edge next to no literal."""
    from glm4_tokfix.remote_code.glm4_offsets import _row_ranges_at_literals, _RowCharacters

    literals = tok._glm4_mask_literals()
    assert literals is not None

    def ranges_at_literals(rows, texts, spans, literals):  # every row's, or None when one row's is None
        items = tuple(literals.items())
        found = [
            _row_ranges_at_literals(row, text, row_spans, items) for row, text, row_spans in zip(rows, texts, spans)
        ]
        return None if None in found else found

    rendered, spans = _marked_render(tok, chats)
    rows = tok(rendered, add_special_tokens=False)["input_ids"]
    starts_chars, begins_inside, _ = tok._glm4_offset_tables()
    by_characters = _RowCharacters(starts_chars, begins_inside, rows)
    assert ranges_at_literals(rows, rendered, spans, literals) == by_characters.token_ranges(spans, [0] * len(rows))
    # any spans: where every edge is next to a literal or at an end, the same ranges; else None
    some = [
        sorted(data.draw(st.lists(st.tuples(st.integers(0, len(t)), st.integers(0, len(t))), max_size=3)))
        for t in rendered
    ]
    found = ranges_at_literals(rows, rendered, some, literals)

    def next_to_literal(text, at, after):
        return any(text.endswith(c, 0, at) if after else text.startswith(c, at) for c in literals)

    edges_ok = all(
        (a == 0 or next_to_literal(t, a, True)) and (b == len(t) or next_to_literal(t, b, False))
        for t, row_spans in zip(rendered, some) for a, b in row_spans if b > a
    )  # fmt: skip
    if edges_ok:
        assert found == by_characters.token_ranges(some, [0] * len(rows))
    else:
        assert found is None
    assert ranges_at_literals(rows, rendered, [[(0, len(t) + 1)] for t in rendered], literals) is None


@pytest.fixture
def character_counts(monkeypatch):
    """A list that grows by one each time masks are found by per-token character counts (``_RowCharacters``)."""
    from glm4_tokfix.remote_code import glm4_offsets as rules

    counted = []
    real = rules._RowCharacters.__init__

    def spy(self, *args):
        counted.append(1)
        real(self, *args)

    monkeypatch.setattr(rules._RowCharacters, "__init__", spy)
    return counted


def test_literal_route_is_taken_and_where_it_cannot_hold_it_is_not(tiny_tok, character_counts):
    """The shipped template's masks come from the literals (no per-token character counts); a tokenizer whose
    added tokens could overlap themselves, or that splits special tokens, keeps the character counts -- and the
    masks are the same either way."""
    import copy

    chats = [[{"role": "user", "content": "a <|assistant|> b"}, {"role": "assistant", "content": "x<|user|>y z"}]] * 3
    kwargs = dict(tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    out = tiny_tok.apply_chat_template(chats, **kwargs)
    assert not character_counts and sum(map(sum, out["assistant_masks"])) > 0
    split = tiny_tok.apply_chat_template(chats, tokenizer_kwargs={"split_special_tokens": True}, **kwargs)
    assert character_counts and len(split["assistant_masks"][0]) == len(split["input_ids"][0])
    other = copy.deepcopy(tiny_tok)
    other.add_tokens(["<x<x"])  # "<x<x<x" holds two overlapping occurrences of it
    assert other._glm4_mask_literals() is None
    character_counts.clear()
    assert other.apply_chat_template(chats, **kwargs)["assistant_masks"] == out["assistant_masks"]
    assert character_counts


def test_a_row_the_literals_cannot_place_sends_every_row_to_the_characters(tiny_tok, character_counts):
    """Masks are made row by row while each reply's edges sit next to a literal; a later row whose edge does not
    (here a "~" the template writes before the generation block) sends the whole batch to the per-token
    character counts -- and every row's mask is the one the offsets give, alone or in the batch."""
    template = (
        "[gMASK]<sop>{% for m in messages %}{% if m.role == 'assistant' %}<|assistant|>"
        "{% if m.content.startswith('!') %}~{% endif %}{% generation %}{{ m.content }}{% endgeneration %}"
        "{% else %}<|user|>{{ m.content }}{% endif %}{% endfor %}"
    )
    chats = [
        [{"role": "user", "content": "a b"}, {"role": "assistant", "content": "next to a literal"}],
        [{"role": "user", "content": "c"}, {"role": "assistant", "content": "!after a tilde"}, {"role": "user", "content": "d"}],
    ]  # fmt: skip
    kwargs = dict(chat_template=template, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    first = tiny_tok.apply_chat_template(chats[:1], **kwargs)
    assert not character_counts  # the literals place the first chat's reply
    both = tiny_tok.apply_chat_template(chats, **kwargs)
    assert character_counts
    by_offsets = tiny_tok.apply_chat_template(chats, tokenizer_kwargs={"return_offsets_mapping": True}, **kwargs)
    assert both["assistant_masks"] == by_offsets["assistant_masks"]
    assert both["assistant_masks"][0] == first["assistant_masks"][0]
    assert all(sum(mask) for mask in both["assistant_masks"])
    second = [i for i, m in zip(both["input_ids"][1], both["assistant_masks"][1]) if m]
    assert tiny_tok.decode(second) == "!after a tilde"
