"""Every route that swaps the fix in makes both upstream revisions pass the core properties.

The stand-ins of upstream's current and mid-2024 ``tokenization_chatglm.py``
(tests/standins) are loaded as remote code from temporary model folders, on the
tiny and the real vocabulary. Unpatched, they fail each property; after any
route -- ``patch()``, ``from_pretrained()``, ``enable()``, ``glm4-tokfix
patch`` on the folder, or the ``glm4-tokfix export`` file dropped into the
folder -- they pass:

* row ``i`` of a padded batch, without its pads, is the single encoding of text ``i``;
* a rendered chat template keeps exactly one ``[gMASK]<sop>``;
* ``padding_side`` is exact on both sides (pads together, mask 0, position 0);
* ``decode`` round-trips, special-token literals included; unknown ids are a ValueError;
* pairs are ``[gMASK]<sop> A B <|endoftext|>``.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

import glm4_tokfix
from helpers import check_padded_row, real_tokens, rows
from patch_helpers import drop_export, load, run_cli, standin_folder
from strategies import PREFIX, batches, chats, texts

ROUTES = ("patch", "from_pretrained", "enable", "cli_patch", "export")
REVISIONS = ("current", "mid2024")


def load_through(route: str, revision: str, vocab_dir, base):
    """A stand-in of ``revision`` on ``vocab_dir``, loaded the way ``route`` makes users load it."""
    folder = standin_folder(base, revision, vocab_dir)
    if route == "patch":
        return glm4_tokfix.patch(load(folder))
    if route == "from_pretrained":
        return glm4_tokfix.from_pretrained(str(folder))
    if route == "enable":
        with glm4_tokfix.enable():
            return load(folder)
    if route == "cli_patch":
        result = run_cli("patch", folder)
        assert result.returncode == 0, result.stderr
        return load(folder)
    if route == "export":
        out = base / f"export_{uuid.uuid4().hex[:8]}"
        result = run_cli("export", out)
        assert result.returncode == 0, result.stderr
        drop_export(out, folder)
        return load(folder)
    raise AssertionError(route)


@pytest.fixture(scope="module", params=REVISIONS)
def revision(request) -> str:
    return request.param


@pytest.fixture(scope="module", params=ROUTES)
def route(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def unpatched(revision, vocab_dir, tmp_path_factory):
    return load(standin_folder(tmp_path_factory.mktemp("unpatched"), revision, vocab_dir))


@pytest.fixture(scope="module")
def fixed(route, revision, vocab_dir, tmp_path_factory):
    return load_through(route, revision, vocab_dir, tmp_path_factory.mktemp(f"{route}_{revision}"))


RENDERED = "[gMASK]<sop><|user|>\nhi there<|assistant|>"


def plain_ids(tok, text):
    """The text's tokens without special tokens added (upstream's tokenize path works on every revision)."""
    return tok.convert_tokens_to_ids(tok.tokenize(text))


# ------------------------------------------------------------- unpatched: the bugs are real
def test_unpatched_doubles_the_prefix(unpatched, revision):
    prefix = unpatched.convert_tokens_to_ids(["[gMASK]", "<sop>"])
    built = unpatched.build_inputs_with_special_tokens(plain_ids(unpatched, RENDERED))
    assert built[:4] == prefix * 2
    if revision == "current":
        encoding = unpatched(RENDERED)
        assert encoding.input_ids[:4] == prefix * 2
        assert encoding.attention_mask[:4] == [1, 1, 1, 1]
    else:  # mid-2024: transformers passes padding_side to its _pad even for a single text
        with pytest.raises(TypeError, match="padding_side"):
            unpatched(RENDERED)


def test_unpatched_padding_side(unpatched, revision):
    texts = [RENDERED, "<|user|>\nx"]
    if revision == "current":
        right = unpatched(texts, padding=True, padding_side="right")
        assert right.attention_mask[1][0] == 0, "the current revision was expected to ignore padding_side='right'"
    else:
        with pytest.raises(TypeError, match="padding_side"):
            unpatched(texts, padding=True, padding_side="right")


def test_unpatched_pairs_fail(unpatched, revision):
    error = KeyError if revision == "current" else AssertionError
    with pytest.raises(error):
        unpatched.build_inputs_with_special_tokens(plain_ids(unpatched, "a"), plain_ids(unpatched, "b"))


def test_unpatched_decode_is_wrong(unpatched, revision):
    if revision == "current":
        text = "<|user|>\nhi<|assistant|>"
        assert unpatched.decode(plain_ids(unpatched, text)) != text
        assert unpatched.decode([len(unpatched) + 5]) == ""  # an unknown id silently vanishes
    else:
        with pytest.raises(KeyError):  # an unknown id is a bare KeyError
            unpatched.decode([len(unpatched) + 5])


# ------------------------------------------------------------- every route: the properties hold
def test_route_gives_a_fixed_tokenizer(fixed, route):
    assert glm4_tokfix.is_patched(fixed)
    if route in ("cli_patch", "export"):  # loaded by plain AutoTokenizer from the folder
        assert type(fixed).__module__.startswith("transformers_modules")
        assert type(fixed).__name__ == "ChatGLM4Tokenizer"
    else:
        assert type(fixed).__module__ == "glm4_tokfix.patching"


@given(batch=batches(), side=st.sampled_from(["left", "right"]), multiple=st.sampled_from([None, 1, 4]))
def test_batch_rows_equal_single_encodings(fixed, batch, side, multiple):
    encoding = fixed(batch, padding=True, padding_side=side, pad_to_multiple_of=multiple)
    ids, masks, positions = (
        rows(encoding, "input_ids"),
        rows(encoding, "attention_mask"),
        rows(encoding, "position_ids"),
    )
    singles = [fixed(text).input_ids for text in batch]
    width = max(len(s) for s in singles)
    if multiple:
        width = -(-width // multiple) * multiple
    for i, single in enumerate(singles):
        assert real_tokens(ids[i], masks[i]) == single
        assert len(ids[i]) == width
        check_padded_row(ids[i], masks[i], positions[i], side, fixed.pad_token_id)


@given(conversations=st.lists(chats(), min_size=1, max_size=4))
def test_rendered_chats_have_one_prefix(fixed, conversations):
    rendered = [fixed.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in conversations]
    encoding = fixed(rendered, padding=True)
    prefix = fixed.get_prefix_tokens()
    for i, text in enumerate(rendered):
        assert text.startswith(PREFIX)
        real = real_tokens(rows(encoding, "input_ids")[i], rows(encoding, "attention_mask")[i])
        assert real == fixed(text, add_special_tokens=False).input_ids  # the template's prefix, once
        assert real[:2] == prefix and real[2:4] != prefix


@given(text=texts())
def test_decode_round_trips(fixed, text):
    assert fixed.decode(fixed(text, add_special_tokens=False).input_ids) == text
    with_prefix = text if text.startswith(PREFIX) else PREFIX + text
    assert fixed.decode(fixed(text).input_ids) == with_prefix


def test_unknown_id_is_a_value_error(fixed):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        fixed.decode([len(fixed) + 5])


@given(first=texts(), second=texts())
def test_pairs(fixed, first, second):
    prefix = fixed.get_prefix_tokens()
    a = fixed(first, add_special_tokens=False).input_ids
    b = fixed(second, add_special_tokens=False).input_ids
    if a[:2] == prefix:  # a text that already starts with the prefix keeps one copy
        a = a[2:]
    assert fixed(first, second).input_ids == prefix + a + b + [fixed.convert_tokens_to_ids("<|endoftext|>")]


def test_matches_our_tokenizer(fixed, tok):
    """Whatever the route, the result encodes like glm4_tokfix.ChatGLM4Tokenizer on the same vocabulary."""
    sample = [RENDERED, "<|user|>\n你好，世界 🎉 and some English<|assistant|>", "x"]
    for side in ("left", "right"):
        assert dict(fixed(sample, padding=True, padding_side=side)) == dict(
            tok(sample, padding=True, padding_side=side)
        )
    assert fixed(sample[0], sample[1]).input_ids == tok(sample[0], sample[1]).input_ids
