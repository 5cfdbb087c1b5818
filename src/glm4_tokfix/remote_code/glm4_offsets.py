# Copyright 2026 the glm4-tokfix authors. Licensed under the Apache License, Version 2.0.
"""Character offsets and assistant-mask arithmetic (numpy passes, shared tuple table)."""

from __future__ import annotations

import itertools
import operator
from itertools import chain
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .glm4_state import _Table

_UTF8_CONTINUATION = bytes(range(0x80, 0xC0))


def _offset_tables(pieces: Dict[int, bytes]) -> Tuple[List[int], List[int], frozenset]:
    """The per-id tables of offsets and assistant masks, from each token id's bytes: how many characters the
    token starts (its bytes that are not UTF-8 continuation bytes), 1 if it begins inside a character (its
    first byte is one), and the set of the ids that do. Ids missing from ``pieces`` start nothing."""
    size = max(pieces, default=-1) + 1
    starts_chars, begins_inside = [0] * size, [0] * size
    for i, piece in pieces.items():
        starts_chars[i] = len(piece.translate(None, _UTF8_CONTINUATION))
        begins_inside[i] = int(bool(piece) and (piece[0] & 0xC0) == 0x80)
    return starts_chars, begins_inside, frozenset(i for i, flag in enumerate(begins_inside) if flag)


def offsets_from_tables(ids: Sequence[int], tables: Tuple[List[int], List[int], frozenset]) -> List[Tuple[int, int]]:
    """Character offsets of the tokens ``ids`` of one text, from the per-id tables of ``_offset_tables``: the same
    as ``token_char_offsets`` over the tokens' bytes, with the walk in C (a running sum of the characters each
    token starts, one back for a token that begins inside a character)."""
    starts_chars, begins_inside, inside_ids = tables
    ends = list(itertools.accumulate(map(starts_chars.__getitem__, ids)))
    if inside_ids.isdisjoint(ids):  # the common case: every token starts where the previous one ended
        return list(zip(itertools.chain((0,), ends), ends))
    starts = map(operator.sub, itertools.chain((0,), ends), map(begins_inside.__getitem__, ids))
    return list(zip(starts, ends))


def token_char_offsets(pieces: Iterable[bytes], start: int = 0) -> List[Tuple[int, int]]:
    """``(start, end)`` character offsets of consecutive tokens, from their bytes alone.

    ``pieces`` are the UTF-8 bytes of each token of one text, in order (BPE tokens may end or begin
    inside a multi-byte character). The offsets count characters (code points) of that text from
    ``start``, exactly as a byte-level HF fast tokenizer with ``trim_offsets=False`` gives them: a
    token covers every character one of its bytes belongs to, so the tokens a character was split
    into all get that whole character::

        >>> token_char_offsets([b"a", b"\\xe4\\xbd", b"\\xa0", b" b"])   # "a你 b"
        [(0, 1), (1, 2), (1, 2), (2, 4)]

    A lone surrogate, which tiktoken encodes as U+FFFD, is one character like U+FFFD.
    """
    offsets: List[Tuple[int, int]] = []
    append = offsets.append
    chars = start  # characters started so far
    for piece in pieces:
        if piece.isascii():
            end = chars + len(piece)
            append((chars, end))
            chars = end
            continue
        begins_inside = piece[:1] and (piece[0] & 0xC0) == 0x80  # first byte continues the previous character
        end = chars + len(piece.translate(None, _UTF8_CONTINUATION))
        append((chars - 1 if begins_inside else chars, end))
        chars = end
    return offsets


def assistant_token_mask(offsets: Sequence[Sequence[int]], spans: Sequence[Sequence[int]]) -> List[int]:
    """1 on each token whose characters overlap one of ``spans``, 0 elsewhere.

    ``offsets`` are one row's ``(start, end)`` character offsets (``return_offsets_mapping=True``),
    ``spans`` the ``(start, end)`` character spans of the assistant replies in the same text (what
    transformers' chat-template renderer reports for ``{% generation %}`` blocks). Zero-width tokens
    -- an added prefix, pads -- are 0. A token cut by a span's edge counts as inside, so a reply cut by
    truncation keeps its remaining tokens. Works for any tokenizer that gives offsets.
    """
    spans = sorted((int(a), int(b)) for a, b in spans if b > a)
    mask = [0] * len(offsets)
    k = 0
    for i, (start, end) in enumerate(offsets):
        if end <= start:
            continue
        while k < len(spans) and spans[k][1] <= start:
            k += 1
        if k == len(spans):
            break
        if end > spans[k][0]:
            mask[i] = 1
    return mask


def _flat_ids(rows: Sequence[Sequence[int]]) -> Tuple[Any, List[int]]:
    """All rows' token ids as one numpy int64 array, and where each row starts in it (``bounds[k]`` ..
    ``bounds[k + 1]``): what the numpy passes over many rows (offsets, assistant masks) start from."""
    import numpy as np

    bounds = [0, *itertools.accumulate(map(len, rows))]
    return np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=bounds[-1]), bounds


class _RowCharacters:
    """Where the tokens of many rows fall in their texts' characters, for assistant masks.

    ``starts_chars[i]``: the characters token ``i`` starts; ``begins_inside[i]``: 1 if it begins inside a
    character (so it also covers the one before its running count). ``totals()``: each row's characters;
    ``token_ranges(spans, shifts)``: per row, the ``(lo, hi)`` token range of each character span -- the
    tokens that overlap it, the ones ``assistant_token_mask`` picks from the offsets -- with the row's
    characters counted from ``shifts[k]`` (what a left cut removed before them).

    One numpy pass over every row at once (numpy comes with transformers): a running sum of all ids, and
    the span ends found by ``searchsorted`` for all spans together. Without numpy, a running sum and
    bisection per row (the reference: tests compare the two).
    """

    def __init__(self, starts_chars: Sequence[int], begins_inside: Sequence[int], rows: Sequence[Sequence[int]]):
        self.starts_chars, self.begins_inside, self.rows = starts_chars, begins_inside, rows
        try:
            import numpy as np
        except ImportError:
            np = None  # type: ignore[assignment]  # numpy is optional
        self.np = np if rows else None
        if self.np is not None:
            self.flat, bounds = _flat_ids(rows)
            self.totals_all = np.zeros(len(self.flat) + 1, dtype=np.int64)
            np.cumsum(_numpy_table(starts_chars)[self.flat], out=self.totals_all[1:])
            self.bounds = np.asarray(bounds, dtype=np.int64)
            self.bases = self.totals_all[self.bounds]  # the characters before each row
        else:
            self.running = [list(itertools.accumulate(map(starts_chars.__getitem__, ids), initial=0)) for ids in rows]

    def totals(self) -> List[int]:
        if self.np is None:
            return [r[-1] for r in self.running]
        return (self.bases[1:] - self.bases[:-1]).tolist()

    def token_ranges(
        self, spans: Sequence[Sequence[Tuple[int, int]]], shifts: Sequence[int]
    ) -> List[List[Tuple[int, int]]]:
        if self.np is None:
            return [self._ranges_of_row(k, row_spans, shift) for k, (row_spans, shift) in enumerate(zip(spans, shifts))]
        np = self.np
        which, starts, ends = [], [], []
        for k, (row_spans, shift) in enumerate(zip(spans, shifts)):
            for a, b in sorted(row_spans):
                if b > a:
                    which.append(k)
                    starts.append(a - shift)
                    ends.append(b - shift)
        out: List[List[Tuple[int, int]]] = [[] for _ in spans]
        if not which or not len(self.flat):
            return out
        rows_of = np.asarray(which, dtype=np.int64)
        first, stop = self.bounds[rows_of], self.bounds[rows_of + 1] + 1  # each span's row in totals_all
        base = self.bases[rows_of]
        totals, n = self.totals_all, stop - 1 - first
        want_a = np.asarray(starts, dtype=np.int64) + base
        want_b = np.asarray(ends, dtype=np.int64) + base
        # bisect_right / bisect_left in the row's running counts: the same in the sorted whole, clipped to the row
        lo = np.maximum(np.clip(np.searchsorted(totals, want_a, "right"), first, stop) - first - 1, 0)
        hi = np.minimum(np.maximum(np.clip(np.searchsorted(totals, want_b, "left"), first, stop) - first, lo), n)
        # a token at hi that begins inside the span's last character still overlaps it
        at = np.minimum(first + hi, max(len(self.flat) - 1, 0))
        inside = _numpy_table(self.begins_inside)
        more = (hi < n) & (totals[first + hi] - inside[self.flat[at]] < want_b)
        his = hi.tolist()
        for j in np.flatnonzero(more).tolist():
            h, last, row_first = his[j], int(n[j]), int(first[j])
            while h < last and int(totals[row_first + h]) - self.begins_inside[int(self.flat[row_first + h])] < ends[
                j
            ] + int(base[j]):
                h += 1
            his[j] = h
        for k, low, h in zip(which, lo.tolist(), his):
            if h > low:
                out[k].append((low, h))
        return out

    def _ranges_of_row(self, k: int, row_spans: Sequence[Tuple[int, int]], shift: int) -> List[Tuple[int, int]]:
        import bisect

        ids, ends, inside = self.rows[k], self.running[k], self.begins_inside
        n, found = len(ids), []
        for a, b in sorted(row_spans):
            if b <= a:
                continue
            a, b = a - shift, b - shift
            lo = max(bisect.bisect_right(ends, a) - 1, 0)
            hi = min(bisect.bisect_left(ends, b, lo), n)
            while hi < n and ends[hi] - inside[ids[hi]] < b:
                hi += 1
            if hi > lo:
                found.append((lo, hi))
        return found


def _mask_of_ranges(width: int, lead: int, ranges: Sequence[Tuple[int, int]]) -> List[int]:
    """A row of ``width`` zeros with ones on each ``(lo, hi)`` range of tokens, shifted by ``lead`` pads."""
    mask = [0] * width
    for lo, hi in ranges:
        mask[lead + lo : lead + hi] = [1] * (hi - lo)
    return mask


def _row_ranges_at_literals(
    row: Sequence[int], text: str, row_spans: Sequence[Tuple[int, int]], literals: Tuple[Tuple[str, int], ...]
) -> Optional[List[Tuple[int, int]]]:
    """``_RowCharacters.token_ranges`` of one row without the characters of every token, for spans whose edges
    are next to added-token literals (or at the text's ends), as in GLM-4's templates: a reply starts after
    ``<|assistant|>`` and ends before the next turn's token or at the end. None when an edge is elsewhere.

    ``row`` must be the text's own encoding (nothing added, nothing cut) with ``literals`` (content -> id
    pairs) split out as their ids, ids BPE never makes, and no two occurrences of the literals able to
    overlap in the text (``GLM4ChatMixin._glm4_mask_literals``). Then the k-th occurrence of a literal in
    the text is the k-th occurrence of its id in the row, and no token crosses an edge: the tokens before
    an edge are counted with ``str.count`` and ``list.index``, in C.
    """
    ranges = []
    for a, b in sorted(row_spans):
        if b <= a:
            continue
        if a < 0 or b > len(text):
            return None
        lo = 0 if a == 0 else _token_next_to(row, text, a, literals, True)
        hi = len(row) if b == len(text) else _token_next_to(row, text, b, literals, False)
        if lo is None or hi is None:
            return None
        if hi > lo:
            ranges.append((lo, hi))
    return ranges


def _token_next_to(
    row: Sequence[int], text: str, at: int, literals: Tuple[Tuple[str, int], ...], after: bool
) -> Optional[int]:
    """The index of the first token after (``after``) or at the literal that ends (starts) at character ``at`` of
    ``text``; None when no literal does, or the row does not hold its id that often."""
    for content, index in literals:  # noqa: B007 -- the one found is used after the loop
        if text.endswith(content, 0, at) if after else text.startswith(content, at):
            break
    else:
        return None
    seen = text.count(content, 0, at) + (0 if after else 1)  # its occurrences up to and with this one
    position = -1
    try:
        for _ in range(seen):
            position = row.index(index, position + 1)
    except (ValueError, TypeError, AttributeError):
        return None
    return position + 1 if after else position


# id(list) -> (the list, it as a numpy array): the per-id tables of _RowCharacters and offsets (the list is kept, so
# its id is not reused while the entry lives; a few tables at most, one per vocabulary and added tokens)
_NUMPY_TABLES: _Table = _Table()


def _numpy_table(values: Sequence[int]) -> Any:
    import numpy as np

    entry = _NUMPY_TABLES.get(id(values))
    if entry is None or entry[0] is not values:
        while len(_NUMPY_TABLES) >= 8:
            _NUMPY_TABLES.pop(next(iter(_NUMPY_TABLES)), None)
        entry = (values, np.asarray(values, dtype=np.int64))
        _NUMPY_TABLES[id(values)] = entry
    return entry[1]


# Offsets rows share their (start, end) tuples: _pair_table()[start * _PAIR_WIDTHS + width] is (start, start + width)
# for start < _PAIR_STARTS and width < _PAIR_WIDTHS (about 5 MB, built on the first offsets call with numpy, then
# only read). A tuple per token was most of what offsets cost, as allocations and the collections they set off.
# A _Table, so it pickles empty (datasets fingerprints of a remote-code tokenizer stay the same after offsets).
_PAIR_STARTS, _PAIR_WIDTHS = 4096, 16


_PAIR_TABLE: _Table = _Table()


def _pair_table() -> Any:
    """The shared ``(start, end)`` tuples, as a numpy object array (see ``_PAIR_STARTS``)."""
    table = _PAIR_TABLE.get("pairs")
    if table is not None:
        return table
    import numpy as np

    ints = list(range(_PAIR_STARTS + _PAIR_WIDTHS))
    table = np.empty(_PAIR_STARTS * _PAIR_WIDTHS, dtype=object)
    for start in range(_PAIR_STARTS):
        first = start * _PAIR_WIDTHS
        for width in range(_PAIR_WIDTHS):
            table[first + width] = (ints[start], ints[start + width])
    return _PAIR_TABLE.setdefault("pairs", table)  # two threads may both build it: either table is right


def _offset_pairs(starts: Any, ends: Any) -> Any:
    """``(start, end)`` tuples for numpy int arrays ``starts``/``ends``, as an object array: shared tuples from
    ``_pair_table()`` where they fit, fresh ones elsewhere."""
    import numpy as np

    widths = ends - starts
    # as unsigned, a negative start or width is too large: one comparison each
    fits = starts.view(np.uint64) < _PAIR_STARTS
    fits &= widths.view(np.uint64) < _PAIR_WIDTHS
    keys = starts * _PAIR_WIDTHS
    keys += widths
    outside = np.flatnonzero(~fits) if not fits.all() else keys[:0]
    if outside.size:
        keys[outside] = 0
    pairs = _pair_table()[keys]
    if outside.size:
        for i, start, end in zip(outside.tolist(), starts[outside].tolist(), ends[outside].tolist()):
            pairs[i] = (start, end)
    return pairs


def _offset_arrays(
    tables: Optional[Tuple[List[int], List[int], frozenset]], rows: List[List[int]]
) -> Optional[Tuple[Any, Any, Any, List[int]]]:
    """Each token's ``(start, end)`` characters in its row's text, for the ids of whole texts (no added prefix):
    ``(flat, starts, ends, bounds)``, the ids, starts and ends of all rows at once as numpy int64 arrays, and
    where each row starts in them.

    A running sum of the characters each token starts, less each row's own start, gives the ends; the starts
    are the previous ends, one character back for a token that begins inside a character. None without
    the per-id ``tables`` or numpy (numpy comes with transformers)."""
    try:
        import numpy as np
    except ImportError:
        return None
    if tables is None:
        return None
    starts_chars, begins_inside, _ = tables
    flat, bounds = _flat_ids(rows)
    ends = np.cumsum(_numpy_table(starts_chars)[flat])
    firsts = np.asarray(bounds[:-1], dtype=np.int64)
    lengths = np.diff(np.asarray(bounds, dtype=np.int64))
    before = np.zeros(len(rows), dtype=np.int64)  # characters of the rows before each row
    later = firsts > 0
    before[later] = ends[firsts[later] - 1]
    ends -= np.repeat(before, lengths)  # type: ignore[arg-type]  # numpy's stubs take np.diff of int64 for timedelta64
    starts = np.empty_like(ends)
    if ends.size:
        starts[1:] = ends[:-1]
        starts[firsts[lengths > 0]] = 0
        starts -= _numpy_table(begins_inside)[flat]
    return flat, starts, ends, bounds


def _offset_lists(arrays: Tuple[Any, Any, Any, List[int]]) -> List[List[Tuple[int, int]]]:
    """Each row's offsets of ``_offset_arrays`` as a list of ``(start, end)`` tuples, shared ones
    (``_pair_table``) where they fit."""
    _, starts, ends, bounds = arrays
    pairs = _offset_pairs(starts, ends)
    return [pairs[start:stop].tolist() for start, stop in zip(bounds, bounds[1:])]


class _OffsetRows:
    """The offsets of a fast-path call (``_offset_arrays`` of its texts' whole ids), kept as arrays until the
    rows' form is known: lists of ``(start, end)`` tuples (``body_field``, padded by ``_glm4_row_lists``) or
    one ``(rows, width, 2)`` array (``placement`` then ``padded_array``, for ``return_tensors``: no tuple is
    made; the rows' ids then come from the same arrays, ``token_ids``).

    Each row is its ids' offsets cut like the ids (``kept``: ``(starts, stops)`` of the ids each body keeps):
    ``n_prefix`` tokens under the prefix first, ``(0, 0)`` for an added prefix and the text's own offsets for
    a ``literal[i]`` one, then the body's."""

    def __init__(
        self, literal: List[bool], n_prefix: int, kept: Tuple[List[int], List[int]],
        arrays: Optional[Tuple[Any, Any, Any, List[int]]] = None, lists: Optional[List[List[Tuple[int, int]]]] = None,
    ) -> None:  # fmt: skip
        self.arrays, self.lists = arrays, lists  # one of them: without numpy or tables, the rows' own lists
        self.literal, self.n_prefix, self.kept = literal, n_prefix, kept

    def body_field(self) -> Tuple[Any, ...]:
        """``(bodies' offsets, (0, 0), heads)`` for ``_padded_body_field``: lists of shared tuples."""
        n_prefix = self.n_prefix
        offsets = self.lists if self.lists is not None else _offset_lists(self.arrays)  # type: ignore[arg-type]  # arrays is set when lists is not
        heads = [offs[:n_prefix] if lit else None for offs, lit in zip(offsets, self.literal)]
        for offs, start, stop in zip(offsets, *self.kept):  # cut like the ids, in place (this call's lists)
            if stop < len(offs):
                del offs[stop:]
            if start:
                del offs[:start]
        return offsets, (0, 0), heads

    def placement(self, lengths: List[int], width: int, left: bool) -> Optional[Tuple[Any, Any, Tuple[int, int]]]:
        """``(source, target, shape)`` of every real token of the rows (``lengths[i]`` each, prefix included), in
        order: where its id and offsets are in the whole texts' arrays extended by the added prefix (the j-th
        token under an added prefix is at ``len(flat) + j``), where it goes in a flat ``rows * width`` batch
        padded on the ``left`` or right, and that batch's shape. None without the arrays, or with no tokens at
        all (then transformers' conversion of the lists decides the shape)."""
        if self.arrays is None or not any(lengths):
            return None
        import numpy as np

        flat, _, _, bounds = self.arrays
        n_prefix = self.n_prefix
        firsts = np.asarray(bounds[:-1], dtype=np.int64)
        body_starts = np.asarray(self.kept[0], dtype=np.int64)
        counts = np.asarray(lengths, dtype=np.int64)
        j = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        source = j + np.repeat(firsts + body_starts - n_prefix, counts)
        if n_prefix:
            under = np.flatnonzero(j < n_prefix)
            own = np.repeat(np.asarray(self.literal, dtype=bool), counts)[under]
            source[under] = np.where(own, np.repeat(firsts, counts)[under], flat.size) + j[under]
        rows = np.arange(len(lengths), dtype=np.int64) * width + (width - counts if left else 0)
        return source, j + np.repeat(rows, counts), (len(lengths), width)

    def token_ids(self, head: List[int], placement: Tuple[Any, Any, Tuple[int, int]]) -> Any:
        """The rows' real ids in order (``head`` under an added prefix), int64, from the arrays the offsets came
        from: what ``ids[real]`` of ``_glm4_row_arrays`` takes."""
        import numpy as np

        return np.concatenate([self.arrays[0], np.asarray(head, dtype=np.int64)])[placement[0]]  # type: ignore[index]  # arrays is set when there is a placement

    def padded_array(self, placement: Tuple[Any, Any, Tuple[int, int]]) -> Any:
        """The offsets as one int64 array of shape ``(rows, width, 2)``, ``(0, 0)`` on pads and under an added
        prefix."""
        import numpy as np

        source, target, shape = placement
        _, starts, ends, _ = self.arrays  # type: ignore[misc]  # as above: arrays is set
        out = np.zeros((shape[0] * shape[1], 2), dtype=np.int64)
        padding = np.zeros(self.n_prefix, dtype=np.int64)  # an added prefix's (0, 0)
        for column, values in ((0, starts), (1, ends)):  # one column at a time: 1-d gathers, about twice as fast
            column_view = out[:, column]
            column_view[target] = np.concatenate([values, padding])[source]
        return out.reshape(*shape, 2)
