"""Small helpers the tests share: turn encodings into plain lists and check padded rows."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence


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
