"""Message formatting for the assertion helpers: id windows around a difference, options, short reprs.

Only the standard library: this module is imported when the pytest plugin loads.

    >>> first_difference([1, 2, 3], [1, 2, 4])
    2
    >>> window([10, 11, 12, 13, 14], 2, radius=1)
    '[... 11, »12«, 13 ...] (5 ids)'
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence

#: How many ids to show on each side of the first difference.
RADIUS = 6
#: Longest repr of a text or value kept in a message.
REPR_LIMIT = 240


def first_difference(a: Sequence[Any], b: Sequence[Any]) -> Optional[int]:
    """The first index where ``a`` and ``b`` differ (the shorter length if one is a prefix); None if equal."""
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return index
    if len(a) != len(b):
        return min(len(a), len(b))
    return None


def window(values: Sequence[Any], index: int, radius: int = RADIUS, unit: str = "ids") -> str:
    """``values`` around ``index`` with the value at ``index`` marked ``»like this«`` (or ``»«`` past the end)."""
    values = list(values)
    start = max(0, index - radius)
    stop = min(len(values), index + radius + 1)
    parts = [repr(v) if not isinstance(v, int) else str(v) for v in values[start:stop]]
    if index >= len(values):
        parts.append("»«")
    else:
        parts[index - start] = f"»{parts[index - start]}«"
    head = "... " if start > 0 else ""
    tail = " ..." if stop < len(values) else ""
    return f"[{head}{', '.join(parts)}{tail}] ({len(values)} {unit})"


def text_window(text: str, index: int, radius: int = 24) -> str:
    """``text`` around character ``index``, as reprs with the character marked (``»end«`` past the end).

    >>> text_window("hello world", 6, radius=3)
    "...'lo ' »'w'« 'orl'... (11 chars)"
    """
    start = max(0, index - radius)
    before, after = text[start:index], text[index + 1 : index + 1 + radius]
    at = repr(text[index]) if index < len(text) else "end"
    head = "..." if start > 0 else ""
    tail = "..." if index + 1 + radius < len(text) else ""
    return f"{head}{before!r} »{at}« {after!r}{tail} ({len(text)} chars)"


def short(value: Any, limit: int = REPR_LIMIT) -> str:
    """``repr(value)``, cut to ``limit`` characters with a note of the full length."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text)} chars)"


def options(opts: Optional[Mapping[str, Any]]) -> str:
    """Keyword arguments as they would be written in a call: ``padding=True, padding_side='right'``."""
    if not opts:
        return "(none)"
    return ", ".join(f"{key}={short(value, 80)}" for key, value in opts.items())


def sequences(
    title: str,
    labels: Sequence[str],
    a: Sequence[Any],
    b: Sequence[Any],
    context: Optional[Mapping[str, str]] = None,
) -> str:
    """A violation message: ``title``, the two sequences around their first difference, then context lines."""
    index = first_difference(a, b)
    if index is None:  # the caller saw a difference in something other than these values
        index = 0
    rows = {label: window(values, index) for label, values in zip(labels, (a, b))}
    rows.update(context or {})
    return "\n".join([f"{title}, first difference at position {index}:", *context_lines(rows)])


def context_lines(context: Optional[Mapping[str, str]]) -> List[str]:
    """``key : value`` lines, indented, keys padded to one width."""
    if not context:
        return []
    width = max(len(key) for key in context)
    return [f"  {key:<{width}} : {value}" for key, value in context.items()]
