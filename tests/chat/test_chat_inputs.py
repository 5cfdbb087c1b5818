"""``tokenize_chats`` takes any sequence of message mappings, as ``apply_chat_template`` does:
numpy object arrays, pandas Series and what pyarrow's ``to_pandas()`` / ``datasets`` in numpy or pandas format /
Ray Data's pandas batches hand over."""

from __future__ import annotations

import pytest

from glm4_tokfix.sft import tokenize_chats

pytest.importorskip("jinja2", reason="tokenize_chats renders chat templates")

CHATS = [
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3+3?"},
     {"role": "assistant", "content": "6"}],
]  # fmt: skip


def numpy_object_rows(chats):
    np = pytest.importorskip("numpy")
    rows = np.empty(len(chats), dtype=object)
    for i, chat in enumerate(chats):
        messages = np.empty(len(chat), dtype=object)
        messages[:] = [dict(m) for m in chat]
        rows[i] = messages
    return rows


def test_numpy_object_arrays(tiny_tok):
    expected = tokenize_chats(tiny_tok, CHATS)
    rows = numpy_object_rows(CHATS)
    assert tokenize_chats(tiny_tok, rows) == expected
    assert tokenize_chats(tiny_tok, list(rows), max_length=12) == tokenize_chats(tiny_tok, CHATS, max_length=12)
    assert tokenize_chats(tiny_tok, [tuple(c) for c in CHATS]) == expected


def test_pandas_and_pyarrow(tiny_tok):
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    expected = tokenize_chats(tiny_tok, CHATS)
    frame = pa.table({"messages": CHATS}).to_pandas()  # each chat: a numpy object array of dicts
    assert tokenize_chats(tiny_tok, frame["messages"]) == expected
    assert tokenize_chats(tiny_tok, pd.Series([pd.Series(c) for c in CHATS])) == expected


@pytest.mark.parametrize("bad", ["not a chat", {"role": "user", "content": "hi"}, {1, 2}, [["nested"]], 3])
def test_what_is_not_a_chat_is_a_type_error(tiny_tok, bad):
    with pytest.raises(TypeError, match="chat 0 must be a list of message dicts"):
        tokenize_chats(tiny_tok, [bad])


def test_two_dimensional_array_is_a_type_error(tiny_tok):
    np = pytest.importorskip("numpy")
    grid = np.empty((1, 1, 1), dtype=object)
    with pytest.raises(TypeError, match="chat 0 must be a list of message dicts"):
        tokenize_chats(tiny_tok, grid)
