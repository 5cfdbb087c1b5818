"""Small helpers the tests share: turn encodings into plain lists and check padded rows."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Sequence

from glm4_tokfix.remote_code.glm4_tokens import PREFIX_TEXT as PREFIX
from locations import ROOT


def as_lists(value: Any) -> Any:
    """numpy arrays and torch tensors to nested Python lists; lists unchanged."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def rows(encoding: Dict[str, Any], key: str) -> List[List[int]]:
    value = as_lists(encoding[key])
    if value and not isinstance(value[0], list):
        return [value]
    return value


def real_tokens(ids: Sequence[int], mask: Sequence[int]) -> List[int]:
    return [t for t, m in zip(ids, mask) if m]


def check_padded_row(ids, mask, positions, side: str, pad_id: int) -> None:
    """Pads sit together on ``side`` with the pad id, mask 0 and position 0; real tokens count 0..n-1."""
    n_real = sum(mask)
    width = len(ids)
    assert len(mask) == width and len(positions) == width
    expected_mask = [0] * (width - n_real) + [1] * n_real if side == "left" else [1] * n_real + [0] * (width - n_real)
    assert list(mask) == expected_mask, f"pads not together on the {side}: {mask}"
    assert [p for p, m in zip(positions, mask) if m] == list(range(n_real))
    assert all(p == 0 for p, m in zip(positions, mask) if not m)
    assert all(t == pad_id for t, m in zip(ids, mask) if not m)


def outcome(fn, errors=(ValueError, TypeError)):
    """``("ok", fn())``, or ``(exception type, message)`` for one of ``errors``: compares results and errors alike."""
    try:
        return "ok", fn()
    except errors as exc:
        return type(exc), str(exc)


def deep(value):
    """Nested Python lists from arrays, tensors, object arrays of arrays and lists."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    return [deep(v) for v in value] if isinstance(value, (list, tuple)) else value


def same(got, expected, same_container=False):
    """Same keys in the same order, and per key the same type, dtype, shape and values."""
    if same_container:
        assert type(got) is type(expected)
    assert list(got.keys()) == list(expected.keys())
    for key in expected:
        a, b = got[key], expected[key]
        assert type(a) is type(b), key
        if hasattr(b, "dtype"):
            assert a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape), (key, a.dtype, b.dtype, a.shape, b.shape)
        assert deep(a) == deep(b), key


def other_line_python():
    """A python with the other transformers major version (GLM4_TOKFIX_OTHER_PYTHON, or a .venv4/.venv5 next to
    this checkout or in ../main, or a venv .ci/run made for the other line); None when there is none."""
    import transformers

    mine = transformers.__version__.split(".")[0]
    given = os.environ.get("GLM4_TOKFIX_OTHER_PYTHON")
    candidates = [Path(given)] if given else [
        base / venv / "bin" / "python" for base in (ROOT, ROOT.parent / "main") for venv in (".venv4", ".venv5")
    ] + sorted((ROOT / ".ci").glob("venv-transformers*/bin/python"))  # fmt: skip
    for python in candidates:
        if not python.is_file():
            continue
        probe = subprocess.run(
            [str(python), "-c", "import transformers; print(transformers.__version__)"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if probe.returncode == 0 and probe.stdout.strip().split(".")[0] != mine:
            return python
    return None


def takes_fast_route(options, texts, style, split) -> bool:
    """Whether a call with ``options`` on ``texts`` stays on the fast route (else the Rust route answers alone)."""
    literal = options.get("return_special_tokens_mask") and any(t.startswith(PREFIX) for t in texts)
    if literal and style == "chat-hf" and options.get("add_special_tokens") and not split:
        return False
    if options.get("return_token_type_ids") and not options.get("add_special_tokens"):
        return False
    added = 2 if style == "chat-hf" and options.get("add_special_tokens") else 0
    # the Rust route's own handling of a max_length without room for the text
    return not (options.get("truncation") and options["max_length"] <= added)


def audio_tokens(n):
    """glm-4-voice-9b's added tokens: ``<|audio_0|>`` ... ``<|audio_{n-1}|>``."""
    return [f"<|audio_{i}|>" for i in range(n)]


def voice_folder(dest, vocab_dir, n, special):
    """A copy of ``vocab_dir`` whose tokenizer_config.json registers ``n`` ``<|audio_N|>`` tokens after its own added
    tokens, as glm-4-voice-9b's does (in ``added_tokens_decoder``)."""
    import json
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(vocab_dir / "tokenizer.model", dest / "tokenizer.model")
    config = json.loads((vocab_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    decoder = config["added_tokens_decoder"]
    first = max(map(int, decoder)) + 1
    flags = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": special}
    for i, content in enumerate(audio_tokens(n)):
        decoder[str(first + i)] = {"content": content, **flags}
    (dest / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return dest


def longest_first_alternation(literals) -> str:
    """The reference for finding added-token literals: one regex alternation of them, longest first (leftmost,
    then longest, wins), as transformers 5.24 compiles for sanitizing; the pattern's text."""
    import regex

    return "|".join(map(regex.escape, sorted(set(literals), key=len, reverse=True))) or "(?!)"
