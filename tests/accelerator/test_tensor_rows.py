"""Return_tensors="pt"/"np" on the fast path builds arrays directly, identical to converting the lists."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st
from transformers import BatchEncoding

from glm4_tokfix.remote_code import glm4_offsets, glm4_rows
from helpers import as_lists, deep, outcome, same
from strategies import batches, encode_options

HAVE_TORCH = importlib.util.find_spec("torch") is not None
KINDS = ["np", "pt"] if HAVE_TORCH else ["np"]


@st.composite
def call_options(draw):
    """Every option of a plain-text call except return_tensors (padding=False included: ragged rows)."""
    options = draw(encode_options(tensors=False, outputs=True))
    for key in ("return_length", "split_special_tokens", "return_offsets_mapping"):
        if draw(st.booleans()):
            options[key] = draw(st.booleans())
    return options


@given(texts=batches(), options=call_options(), kind=st.sampled_from(KINDS), side=st.sampled_from(["left", "right"]))
def test_tensor_path_equals_the_list_path_converted(tok, texts, options, kind, side):
    """tok(texts, return_tensors=kind) == transformers' own conversion of tok(texts): dtype, shape, values, keys."""
    tok.truncation_side = side
    try:
        lists = outcome(lambda: tok(texts, **options))
        got = outcome(lambda: tok(texts, return_tensors=kind, **options))
    finally:
        tok.truncation_side = "right"
    if lists[0] != "ok":
        assert got == lists
        return
    expected = outcome(lambda: BatchEncoding(dict(lists[1]), tensor_type=kind))  # ragged "pt": its ValueError
    assert got[0] == expected[0], (got, expected)
    if got[0] == "ok":
        same(got[1], expected[1])
    else:
        assert got[1] == expected[1]


def test_rectangular_batches_take_the_array_path(tok, monkeypatch):
    """Guard against the direct path silently switching off (the equality test would still pass)."""
    calls = []
    original = glm4_rows.GLM4BatchEncoder._glm4_row_arrays

    def spy(self, kind, *args, **kwargs):
        calls.append(kind)
        return original(self, kind, *args, **kwargs)

    monkeypatch.setattr(glm4_rows.GLM4BatchEncoder, "_glm4_row_arrays", spy)
    for kind in KINDS:
        out = tok(["a", "[gMASK]<sop>hello world", ""], padding=True, return_tensors=kind)
        assert deep(out["input_ids"]) == deep(tok(["a", "[gMASK]<sop>hello world", ""], padding=True)["input_ids"])
    assert calls == KINDS
    tok(["a", "hello world"], return_tensors="np")  # not padded: ragged rows go through transformers' conversion
    tok("single", return_tensors="np")  # one text: transformers' conversion
    assert calls == KINDS


@pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")
def test_torch_tensors_are_int64_on_cpu_like_transformers(tok):
    import torch

    out = tok(["hello", "a b c d e f"], padding=True, padding_side="right", return_tensors="pt",
              return_special_tokens_mask=True, return_token_type_ids=True)  # fmt: skip
    for key, value in out.items():
        assert isinstance(value, torch.Tensor) and value.dtype == torch.int64 and value.device.type == "cpu", key
        assert not value.requires_grad and value.is_contiguous(), key
    n = len(tok("hello")["input_ids"])
    width = out["input_ids"].shape[1]
    assert as_lists(out["attention_mask"][0]) == [1] * n + [0] * (width - n)
    assert as_lists(out["position_ids"][0]) == list(range(n)) + [0] * (width - n)
    assert as_lists(out["special_tokens_mask"][0]) == [1, 1] + [0] * (n - 2) + [1] * (width - n)


def test_numpy_and_torch_are_imported_only_when_asked(tmp_path):
    """The module stays light: a list call and an "np" call never import torch (unless transformers itself did)."""
    script = textwrap.dedent(
        """
        import sys
        import glm4_tokfix
        from glm4_tokfix.remote_code import tokenization_glm4_tokfix as m
        before = "torch" in sys.modules
        tok = m.ChatGLM4Tokenizer.from_pretrained(glm4_tokfix.TINY_GLM4_DIR)
        tok(["a", "bb"], padding=True)
        tok.pad([{"input_ids": [1]}, {"input_ids": [1, 2]}])
        tok(["a", "bb"], padding=True, return_tensors="np")
        tok.pad([{"input_ids": [1]}, {"input_ids": [1, 2]}], return_tensors="np")
        print(before, "torch" in sys.modules)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=True)
    before, after = result.stdout.split()
    assert after == before, result.stdout  # torch loaded by us would show up as False -> True


@pytest.mark.parametrize("left", [True, False])
def test_per_row_fields_slot_into_both_row_builders(tok, left):
    """The place left for per-token fields (offsets, issue 11): values under the prefix and on pads are the fill."""
    import numpy as np

    head = tok.get_prefix_tokens()
    bodies = [[10, 11, 12], [13]]
    lengths = [len(b) + len(head) for b in bodies]
    width = max(lengths)

    def flags():  # the row builders take over the field's rows (extended in place): each gets its own
        field = {"offset_mapping": ([[(0, 1), (1, 2), (2, 4)], [(0, 3)]], (0, 0))}
        return dict(with_types=True, with_special=True, with_mask=True, with_positions=True, body_fields=field)

    lists = tok._glm4_row_lists([b[:] for b in bodies], head, lengths, [width - n for n in lengths], left, **flags())
    arrays = tok._glm4_row_arrays("np", [b[:] for b in bodies], head, lengths, width, left, **flags())
    pads = [(0, 0)] * (width - lengths[1])
    short = [(0, 0)] * len(head) + [(0, 3)]
    long = [(0, 0)] * len(head) + [(0, 1), (1, 2), (2, 4)]
    assert lists["offset_mapping"] == [long, pads + short if left else short + pads]
    assert list(lists) == list(arrays)
    for key in lists:
        assert isinstance(arrays[key], np.ndarray)
        assert arrays[key].tolist() == deep(lists[key]), key
    assert arrays["offset_mapping"].shape == (2, width, 2)


def test_offsets_as_arrays_are_built_without_tuples(tok, monkeypatch):
    """return_tensors with offsets builds the (rows, width, 2) array directly: converting lists of tuples took
    5.8x the call without offsets (issue 17). Same values, dtype and shape as that conversion."""
    texts = ["a", "[gMASK]<sop>hello world", "", "你好 world<|user|>\nhi"]
    for side in ("left", "right"):
        options = dict(padding=True, padding_side=side, return_offsets_mapping=True)
        expected = BatchEncoding(dict(tok(texts, **options)), tensor_type="np")
        with monkeypatch.context() as patch:
            patch.setattr(glm4_offsets, "_offset_pairs", pytest.fail)  # no tuple may be made
            got = tok(texts, return_tensors="np", **options)
        same(got, expected)
        assert got["offset_mapping"].shape == (len(texts), got["input_ids"].shape[1], 2)
