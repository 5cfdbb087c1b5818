"""Plain assertion helpers that check one GLM-4 property on any tokenizer object.

Each helper takes the tokenizer under test first (the fixed one, upstream's
remote-code class, or any other GLM-4 tokenizer) and raises ``AssertionError``
when the property does not hold. The message names the row, shows the two id
sequences around their first difference and lists the options used::

    >>> from glm4_tokfix.testing import assert_batch_matches_single
    >>> assert_batch_matches_single(tok, ["hi", "hello there"], padding=True, padding_side="right")
    AssertionError: tokenizer(texts, **options): input_ids of row 0 is not its single encoding
    padded on the right to width 8, first difference at position 0:
      batch row : [»550«, 550, 550, 550, 552, 554, 104, 105] (8 ids)
      expected  : [»552«, 554, 104, 105, 550, 550, 550, 550] (8 ids)
      text      : 'hi'
      options   : padding=True, padding_side='right'

An exception raised *by the tokenizer* (``TypeError`` from a ``_pad`` without
``padding_side``, ``KeyError`` on pairs, an ``assert`` inside remote code) is a
violation too: it becomes an ``AssertionError`` carrying the exception's type
and text, chained to the original. Bad arguments to a helper itself are a
``ValueError``.

The helpers set ``__tracebackhide__`` so pytest shows their message rather
than their frames. Only the standard library is imported here (the pytest plugin imports this
package at every pytest start).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from glm4_tokfix.remote_code.glm4_tokens import PREFIX_TEXT, PREFIX_TOKENS
from glm4_tokfix.testing import _format as fmt

__all__ = [
    "PREFIX_TEXT",
    "assert_batch_matches_single",
    "assert_chat_template_consistent",
    "assert_decode_rejects_unknown_ids",
    "assert_decode_round_trip",
    "assert_encode_consistent",
    "assert_pad_idempotent",
    "assert_pair_encoding",
    "assert_prefix_idempotent",
    "assert_special_tokens_mask",
    "assert_truncation_exact",
]

_PREFIX_TOKENS = PREFIX_TOKENS
_PAIR_SUFFIX = "<|endoftext|>"

# options that only make sense for a batch; the single encodings are made without them
_BATCH_ONLY = ("padding", "pad_to_multiple_of", "return_tensors", "padding_side")
# options that change an encoding's length
_LENGTH_OPTIONS = ("truncation", "max_length", "padding", "pad_to_multiple_of")

Text = Union[str, Tuple[str, str]]


# ------------------------------------------------------------------ plumbing
def _invoke(what: str, opts: Optional[Mapping[str, Any]], fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the tokenizer; an exception it raises becomes an AssertionError naming the call and the options."""
    __tracebackhide__ = True
    try:
        return fn(*args, **kwargs)
    except ImportError:  # a missing optional package (jinja2 for chat templates, numpy, torch): not a violation
        raise
    except Exception as exc:
        detail = str(exc) or "(no message)"
        raise AssertionError(f"{what} raised {type(exc).__name__}: {detail}\n  options : {fmt.options(opts)}") from exc


def _plain(value: Any) -> Any:
    """numpy arrays / torch tensors to nested lists; everything else unchanged."""
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value


def _has(encoding: Any, key: str) -> bool:
    try:
        return key in encoding
    except TypeError:
        return False


def _flat(encoding: Any, key: str, what: str) -> List[int]:
    """One encoding's ``key`` as a flat list of ints (a batch of one row is unwrapped)."""
    __tracebackhide__ = True
    if not _has(encoding, key):
        keys = sorted(encoding) if hasattr(encoding, "keys") else type(encoding).__name__
        raise AssertionError(f"{what} returned no {key!r} (keys: {keys})")
    value = _plain(encoding[key])
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    return list(value)


def _ids(result: Any, what: str) -> List[int]:
    """``input_ids`` of a call result that may be an encoding or a plain id list (apply_chat_template on 4.x)."""
    if hasattr(result, "keys"):
        return _flat(result, "input_ids", what)
    value = _plain(result)
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    return list(value)


def _encode_ids(tokenizer: Any, text: str, what: str, **kwargs: Any) -> List[int]:
    """``tokenizer(text, **kwargs).input_ids`` as a list; an exception from the tokenizer is a violation."""
    __tracebackhide__ = True
    return _ids(_invoke(what, kwargs, tokenizer, text, **kwargs), what)


def _rows(encoding: Any, key: str, n_rows: int, what: str, opts: Optional[Mapping[str, Any]]) -> List[List[int]]:
    __tracebackhide__ = True
    value = _plain(encoding[key])
    if not isinstance(value, list) or len(value) != n_rows or not all(isinstance(r, list) for r in value):
        raise AssertionError(
            f"{what}: {key} is not {n_rows} rows of ids: {fmt.short(value)}\n  options : {fmt.options(opts)}"
        )
    return value


def _prefix_ids(tokenizer: Any) -> List[int]:
    __tracebackhide__ = True
    what = "tokenizer.convert_tokens_to_ids(['[gMASK]', '<sop>'])"
    ids = list(_invoke(what, None, tokenizer.convert_tokens_to_ids, list(_PREFIX_TOKENS)))
    unk = getattr(tokenizer, "unk_token_id", None)
    if len(ids) != 2 or not all(isinstance(i, int) for i in ids) or ids[0] == ids[1] or unk in ids:
        raise AssertionError(f"the tokenizer does not know GLM-4's prefix tokens [gMASK] and <sop> (got ids {ids})")
    return ids


def _adds_prefix(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` puts ``[gMASK]<sop>`` in front of a text that lacks it (its prefix policy).

    glm-4-9b-chat's tokenizers (slow, and fast ones converted like glm-4-9b-chat-hf) do; GLM-4-0414 / GLM-4.5 fast
    tokenizers add nothing (their chat template writes the prefix). Read from what the tokenizer does with ``""``.
    """
    __tracebackhide__ = True
    return _encode_ids(tokenizer, "", "tokenizer('')") == _prefix_ids(tokenizer)


def _is_fast(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "is_fast", False))


def _token_id(tokenizer: Any, token: str) -> int:
    __tracebackhide__ = True
    value = _invoke(f"tokenizer.convert_tokens_to_ids({token!r})", None, tokenizer.convert_tokens_to_ids, token)
    if not isinstance(value, int) or value == getattr(tokenizer, "unk_token_id", None):
        raise AssertionError(f"the tokenizer does not know GLM-4's token {token} (got {value!r})")
    return value


def _strip_prefixes(text: str) -> str:
    while text.startswith(PREFIX_TEXT):
        text = text[len(PREFIX_TEXT) :]
    return text


def _padding_mode(value: Any) -> Optional[str]:
    """None (no padding), 'longest' or 'max_length', from a ``padding=`` argument."""
    if value is True or value == "longest":
        return "longest"
    if value is False or value is None or value == "do_not_pad":
        return None
    if value == "max_length":
        return "max_length"
    raise ValueError(f"padding={value!r} is not a padding mode (True, False, 'longest', 'max_length', 'do_not_pad')")


def _expected_widths(tokenizer: Any, lengths: Sequence[int], opts: Mapping[str, Any]) -> List[int]:
    """The width each row must have after padding with ``opts``."""
    mode = _padding_mode(opts.get("padding", False))
    if mode is None or not lengths:
        return list(lengths)
    multiple = opts.get("pad_to_multiple_of")

    def round_up(width: int) -> int:
        if multiple and width % multiple:
            return (width // multiple + 1) * multiple
        return width

    if mode == "longest":
        return [round_up(max(lengths))] * len(lengths)
    max_length = opts.get("max_length")
    if max_length is None:
        max_length = tokenizer.model_max_length
    target = round_up(max_length)
    return [max(n, target) for n in lengths]


def _describe(text: Text) -> str:
    if isinstance(text, tuple):
        return f"text={fmt.short(text[0])}, text_pair={fmt.short(text[1])}"
    return fmt.short(text)


def _encode(tokenizer: Any, text: Text, what: str, opts: Mapping[str, Any]) -> Any:
    if isinstance(text, tuple):
        return _invoke(what, opts, tokenizer, text[0], text[1], **opts)
    return _invoke(what, opts, tokenizer, text, **opts)


# ------------------------------------------------------------ row checking
def _check_rows(
    tokenizer: Any,
    batch: Any,
    singles: Sequence[Mapping[str, Any]],
    texts: Sequence[Text],
    opts: Mapping[str, Any],
    what: str,
) -> None:
    """Row i of ``batch`` must be ``singles[i]`` padded on the requested side (mask 0, position 0 on pads)."""
    __tracebackhide__ = True
    n_rows = len(singles)
    ids_rows = _rows(batch, "input_ids", n_rows, what, opts)
    side = opts.get("padding_side") or tokenizer.padding_side
    mode = _padding_mode(opts.get("padding", False))
    lengths = [len(s["input_ids"]) for s in singles]
    widths = _expected_widths(tokenizer, lengths, opts)

    asked_mask = opts.get("return_attention_mask")
    want_mask = ("attention_mask" in tokenizer.model_input_names) if asked_mask is None else bool(asked_mask)
    if want_mask != _has(batch, "attention_mask"):
        state = "returned no attention_mask" if want_mask else "returned an attention_mask"
        raise AssertionError(
            f"{what} {state} although return_attention_mask={asked_mask!r}\n  options : {fmt.options(opts)}"
        )
    extra = []
    for key, flag, fill in (
        ("special_tokens_mask", "return_special_tokens_mask", 1),
        ("token_type_ids", "return_token_type_ids", getattr(tokenizer, "pad_token_type_id", 0)),
    ):
        if opts.get(flag):
            if not _has(batch, key):
                raise AssertionError(f"{what} returned no {key} although {flag}=True\n  options : {fmt.options(opts)}")
            extra.append((key, flag, fill))
    checked = {"input_ids": ids_rows}
    for key in ("attention_mask", "position_ids", *(k for k, _, _ in extra)):
        if _has(batch, key):
            checked[key] = _rows(batch, key, n_rows, what, opts)

    for i, single in enumerate(singles):
        n, width = lengths[i], widths[i]
        pads = width - n

        def padded(values: Sequence[int], fill: int) -> List[int]:
            values = list(values)
            return [fill] * pads + values if side == "left" else values + [fill] * pads  # noqa: B023 -- called in this iteration

        expected: Dict[str, List[int]] = {"input_ids": padded(single["input_ids"], tokenizer.pad_token_id)}
        if "attention_mask" in checked:
            expected["attention_mask"] = padded(single.get("attention_mask") or [1] * n, 0)
        if "position_ids" in checked:
            expected["position_ids"] = padded(range(n), 0)
        for key, flag, fill in extra:
            if key not in single:
                raise AssertionError(
                    f"the single encoding of row {i} returned no {key} although {flag}=True\n"
                    f"  text    : {_describe(texts[i])}\n  options : {fmt.options(opts)}"
                )
            expected[key] = padded(single[key], fill)
        how = f"padded on the {side} to width {width}" if mode else "(no padding asked)"
        for key, want in expected.items():
            got = checked[key][i]
            if list(got) != want:
                raise AssertionError(
                    fmt.sequences(
                        f"{what}: {key} of row {i} is not its single encoding {how}",
                        ("batch row", "expected"),
                        got,
                        want,
                        {"text": _describe(texts[i]), "options": fmt.options(opts)},
                    )
                )


def _single_encodings(tokenizer: Any, texts: Sequence[Text], opts: Mapping[str, Any]) -> List[Dict[str, Any]]:
    __tracebackhide__ = True
    single_opts = {k: v for k, v in opts.items() if k not in _BATCH_ONLY}
    singles = []
    for i, text in enumerate(texts):
        enc = _encode(tokenizer, text, f"tokenizer(texts[{i}], **options)", single_opts)
        singles.append({key: _flat(enc, key, f"tokenizer(texts[{i}])") for key in enc})
    return singles


# ------------------------------------------------------------------ helpers
def assert_batch_matches_single(tokenizer: Any, texts: Sequence[Text], **encode_kwargs: Any) -> None:
    """Row i of ``tokenizer(texts, **encode_kwargs)`` is ``tokenizer(texts[i])`` padded on the requested side.

    The single encodings use the same options minus the batch-only ones
    (``padding``, ``padding_side``, ``pad_to_multiple_of``, ``return_tensors``).
    Checked for every row: the unmasked ``input_ids`` equal the single ones,
    the pads sit together on ``padding_side`` (call-time first, then the
    tokenizer's) with the pad id, mask 0 and position 0, the real positions
    count 0..n-1, the width follows ``padding``/``max_length``/``pad_to_multiple_of``,
    and ``return_attention_mask``/``return_special_tokens_mask``/``return_token_type_ids``
    are honoured (special_tokens_mask padded with 1, token_type_ids with 0).
    A text may be a ``(text, text_pair)`` tuple.

        >>> assert_batch_matches_single(tok, ["[gMASK]<sop><|user|>\\nhi", "x"], padding=True, padding_side="left")
    """
    __tracebackhide__ = True
    texts = list(texts)
    opts = dict(encode_kwargs)
    _padding_mode(opts.get("padding", False))  # ValueError on a bad padding argument
    texts = [tuple(t) if isinstance(t, (tuple, list)) else t for t in texts]  # type: ignore[misc]  # a pair given as a list becomes a tuple; pairs as (text, text_pair)
    batch = _invoke("tokenizer(texts, **options)", opts, tokenizer, texts, **opts)
    singles = _single_encodings(tokenizer, texts, opts)
    _check_rows(tokenizer, batch, singles, texts, opts, "tokenizer(texts, **options)")


def assert_prefix_idempotent(tokenizer: Any, text: str, **encode_kwargs: Any) -> None:
    """``[gMASK]<sop>`` appears once, whether it comes from the text or from ``add_special_tokens``.

    With ``base`` = ``text`` without its leading copies of the prefix:

    * ``tokenizer(PREFIX + base) == tokenizer(base)`` (ids and attention mask);
    * ``tokenizer(text)`` is ``tokenizer(text, add_special_tokens=False)`` with the
      prefix put in front only when ``text`` does not start with it (a text
      starting with two copies keeps both: user content is never removed).

    A tokenizer that adds no prefix at all (GLM-4-0414 / GLM-4.5 fast
    tokenizers) must keep that policy: ``tokenizer(text)`` is then
    ``tokenizer(text, add_special_tokens=False)``.

    ``encode_kwargs`` (e.g. ``truncation=True, max_length=16``) go to every call
    of the first check; the second runs without truncation.

        >>> assert_prefix_idempotent(tok, "[gMASK]<sop><|user|>\\nhi")
    """
    __tracebackhide__ = True
    if "add_special_tokens" in encode_kwargs:
        raise ValueError(
            "assert_prefix_idempotent compares encodings with special tokens; do not pass add_special_tokens"
        )
    opts = dict(encode_kwargs)
    base = _strip_prefixes(text)
    prefix = _prefix_ids(tokenizer)
    adds = _adds_prefix(tokenizer)
    without = _invoke("tokenizer(base, **options)", opts, tokenizer, base, **opts)
    with_prefix = _invoke("tokenizer(PREFIX + base, **options)", opts, tokenizer, PREFIX_TEXT + base, **opts)
    context = {"text": fmt.short(text), "base": fmt.short(base), "options": fmt.options(opts)}
    for key in ("input_ids", "attention_mask") if adds else ():  # a tokenizer adding no prefix: 2nd check only
        if not _has(without, key) and not _has(with_prefix, key):
            continue
        a = _flat(with_prefix, key, "tokenizer(PREFIX + base)")
        b = _flat(without, key, "tokenizer(base)")
        if a != b:
            raise AssertionError(
                fmt.sequences(
                    f"{key} of tokenizer('[gMASK]<sop>' + base) differ from tokenizer(base)"
                    + (" (the prefix is added a second time)" if a[: 2 * len(prefix)] == prefix * 2 else ""),
                    ("with prefix", "without"),
                    a,
                    b,
                    context,
                )
            )

    plain_opts = {k: v for k, v in opts.items() if k not in _LENGTH_OPTIONS}
    full = _encode_ids(tokenizer, text, "tokenizer(text, **options)", **plain_opts)
    plain = _encode_ids(
        tokenizer, text, "tokenizer(text, add_special_tokens=False, **options)", add_special_tokens=False, **plain_opts
    )
    expected = plain if text.startswith(PREFIX_TEXT) or not adds else prefix + plain
    if full != expected:
        note = "already starts with" if text.startswith(PREFIX_TEXT) else "does not start with"
        if not adds:
            note += " the prefix, and the tokenizer adds none: it should not add any, so it"
        raise AssertionError(
            fmt.sequences(
                f"tokenizer(text) is not tokenizer(text, add_special_tokens=False) with one [gMASK]<sop> "
                f"(the text {note} the prefix)",
                ("tokenizer(text)", "expected"),
                full,
                expected,
                {"text": fmt.short(text), "options": fmt.options(plain_opts)},
            )
        )


def assert_pad_idempotent(
    tokenizer: Any,
    texts: Sequence[str],
    padding_side: Optional[str] = None,
    pad_to_multiple_of: Optional[int] = None,
    extra: int = 3,
) -> None:
    """``tokenizer.pad`` is exact and idempotent on an unpadded batch of ``texts``.

    * ``pad(encode(texts))`` rows are the single encodings padded on
      ``padding_side`` (as in :func:`assert_batch_matches_single`) and equal
      ``tokenizer(texts, padding=True)``;
    * padding that result again changes nothing;
    * padding it to ``width + extra`` equals padding the unpadded batch to that
      width directly (positions still count only the real tokens).

        >>> assert_pad_idempotent(tok, ["hi", "hello there"], padding_side="right")
    """
    __tracebackhide__ = True
    texts = list(texts)
    if extra < 0:
        raise ValueError(f"extra must be >= 0, got {extra}")
    opts: Dict[str, Any] = {"padding": True}
    if padding_side is not None:
        opts["padding_side"] = padding_side
    if pad_to_multiple_of is not None:
        opts["pad_to_multiple_of"] = pad_to_multiple_of
    unpadded = _invoke("tokenizer(texts)", None, tokenizer, texts)
    plain = {key: [list(_plain(row)) for row in _plain(unpadded[key])] for key in unpadded}
    singles = [{key: rows[i] for key, rows in plain.items()} for i in range(len(texts))]

    def copy() -> Dict[str, List[List[int]]]:
        return {key: [list(row) for row in rows] for key, rows in plain.items()}

    once = _invoke("tokenizer.pad(tokenizer(texts), **options)", opts, tokenizer.pad, copy(), **opts)
    _check_rows(tokenizer, once, singles, texts, opts, "tokenizer.pad(tokenizer(texts), **options)")
    direct = _invoke("tokenizer(texts, **options)", opts, tokenizer, texts, **opts)
    once_plain = {key: _plain(once[key]) for key in once}
    _same_batches(once_plain, direct, "tokenizer.pad(tokenizer(texts))", "tokenizer(texts, padding=True)", texts, opts)

    def copy_once() -> Dict[str, List[List[int]]]:
        return {key: [list(row) for row in rows] for key, rows in once_plain.items()}

    twice = _invoke("tokenizer.pad(padded, **options)", opts, tokenizer.pad, copy_once(), **opts)
    _same_batches(twice, once_plain, "padding the padded batch again", "the padded batch", texts, opts)

    width = max((len(row) for row in once_plain["input_ids"]), default=0)
    wider_opts = dict(opts, padding="max_length", max_length=width + extra)
    wider = _invoke("tokenizer.pad(padded, **options)", wider_opts, tokenizer.pad, copy_once(), **wider_opts)
    straight = _invoke("tokenizer.pad(tokenizer(texts), **options)", wider_opts, tokenizer.pad, copy(), **wider_opts)
    _same_batches(
        wider, straight, "padding the padded batch wider", "padding the unpadded batch to that width", texts, wider_opts
    )


def _same_batches(a: Any, b: Any, label_a: str, label_b: str, texts: Sequence[Text], opts: Mapping[str, Any]) -> None:
    __tracebackhide__ = True
    keys_a = set(a.keys())
    keys_b = set(b.keys())
    if keys_a != keys_b:
        raise AssertionError(
            f"{label_a} returned keys {sorted(keys_a)} but {label_b} returned {sorted(keys_b)}\n"
            f"  options : {fmt.options(opts)}"
        )
    for key in sorted(keys_a):
        rows_a, rows_b = _plain(a[key]), _plain(b[key])
        for i, (row_a, row_b) in enumerate(zip(rows_a, rows_b)):
            if _plain(row_a) != _plain(row_b):
                raise AssertionError(
                    fmt.sequences(
                        f"{key} of row {i}: {label_a} differs from {label_b}",
                        (label_a, label_b),
                        _plain(row_a),
                        _plain(row_b),
                        {"text": _describe(texts[i]), "options": fmt.options(opts)},
                    )
                )
        if len(rows_a) != len(rows_b):
            raise AssertionError(f"{key}: {label_a} has {len(rows_a)} rows, {label_b} has {len(rows_b)}")


def assert_chat_template_consistent(
    tokenizer: Any,
    chats: Union[Sequence[Mapping[str, Any]], Sequence[Sequence[Mapping[str, Any]]]],
    add_generation_prompt: bool = True,
) -> None:
    """The chat template gives the same ids whichever way it is tokenized.

    For each conversation (``chats`` is one conversation or a list of them),
    with ``rendered = apply_chat_template(chat, tokenize=False)``:
    ``apply_chat_template(chat, tokenize=True)`` ==
    ``tokenizer(rendered, add_special_tokens=False)`` == ``tokenizer(rendered)``,
    holding ``[gMASK]<sop>`` once. Then the rendered batch padded in one call,
    and ``apply_chat_template(chats, tokenize=True, padding=True, return_dict=True)``,
    match those single encodings row by row.

    A class with an ``apply_chat_template`` of its own (``own_chat_template``: GLM-4V-9B's, which encodes
    each message's pieces itself and adds images) keeps it as the checkpoint ships it, fixed or not: its
    ``tokenize=True`` ids are not compared; the rendered-prompt route (``tokenize=False`` then the
    tokenizer) is checked as above.

        >>> assert_chat_template_consistent(tok, [{"role": "user", "content": "hi"}])
    """
    __tracebackhide__ = True
    chats = list(chats)  # type: ignore[assignment]  # normalized to a list of conversations, each a list
    if chats and isinstance(chats[0], Mapping):
        chats = [chats]  # type: ignore[assignment]  # as above
    chats = [list(chat) for chat in chats]  # type: ignore[assignment]  # as above
    prefix = _prefix_ids(tokenizer)
    own = own_chat_template(tokenizer)
    gen = {"add_generation_prompt": add_generation_prompt}
    rendered: List[str] = []
    singles = []
    for j, chat in enumerate(chats):
        what = f"apply_chat_template(chats[{j}], tokenize=False)"
        text = _invoke(what, gen, tokenizer.apply_chat_template, chat, tokenize=False, **gen)
        if not isinstance(text, str):
            raise AssertionError(f"{what} returned {type(text).__name__}, not str")
        rendered.append(text)
        context = {"chat": f"chats[{j}] = {fmt.short(chat)}", "rendered": fmt.short(text), "options": fmt.options(gen)}
        plain = _encode_ids(tokenizer, text, "tokenizer(rendered, add_special_tokens=False)", add_special_tokens=False)
        full_enc = _invoke("tokenizer(rendered)", None, tokenizer, text)
        full = _ids(full_enc, "tokenizer(rendered)")
        pairs: Tuple[Tuple[str, str, Any], ...] = (("tokenizer(rendered)", "tokenizer", full),)
        if not own:
            what = f"apply_chat_template(chats[{j}], tokenize=True)"
            templated = _ids(_invoke(what, gen, tokenizer.apply_chat_template, chat, tokenize=True, **gen), what)
            pairs = (("apply_chat_template(chat, tokenize=True)", "template", templated),) + pairs
        for call, label, ids in pairs:
            if ids != plain:
                raise AssertionError(
                    fmt.sequences(
                        f"chat {j}: {call} differs from tokenizer(rendered, add_special_tokens=False)",
                        (label, "no special"),
                        ids,
                        plain,
                        context,
                    )
                )
        n = len(prefix)
        if text.startswith(PREFIX_TEXT) and (plain[:n] != prefix or plain[n : 2 * n] == prefix):
            raise AssertionError(
                fmt.sequences(
                    f"chat {j}: the rendered template does not start with exactly one [gMASK]<sop>",
                    ("ids", "prefix"),
                    plain,
                    prefix,
                    context,
                )
            )
        singles.append({key: _flat(full_enc, key, "tokenizer(rendered)") for key in full_enc})

    opts = {"padding": True}
    batch = _invoke("tokenizer(rendered_chats, padding=True)", opts, tokenizer, rendered, **opts)
    _check_rows(tokenizer, batch, singles, rendered, opts, "tokenizer(rendered_chats, padding=True)")
    if own:
        return
    what = "apply_chat_template(chats, tokenize=True, padding=True, return_dict=True)"
    templated_batch = _invoke(
        what, opts, tokenizer.apply_chat_template, chats, tokenize=True, return_dict=True, **gen, **opts
    )
    if not hasattr(templated_batch, "keys"):
        raise AssertionError(f"{what} returned {type(templated_batch).__name__}, not an encoding")
    _check_rows(tokenizer, templated_batch, singles, rendered, opts, what)


def own_chat_template(tokenizer: Any) -> Optional[str]:
    """The class that defines ``tokenizer``'s ``apply_chat_template`` when that is neither transformers' nor the
    glm4-tokfix fix's (GLM-4V-9B's class has its own, which the fix keeps), else None."""
    for klass in type(tokenizer).__mro__:
        if "apply_chat_template" in vars(klass):
            function = getattr(vars(klass)["apply_chat_template"], "__func__", vars(klass)["apply_chat_template"])
            module = getattr(function, "__module__", None) or klass.__module__ or ""
            owner = getattr(function, "__qualname__", klass.__qualname__).rpartition(".")[0] or klass.__qualname__
            if module.split(".")[0] == "transformers" or owner == "GLM4ChatMixin":
                return None
            return f"{module}.{owner}"
    return None


def _special_pattern(tokenizer: Any) -> Optional[re.Pattern[str]]:
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    names = set(tokenizer.all_special_tokens) | {t.content for t in added.values() if getattr(t, "special", False)}
    literals = sorted({t for t in names if t}, key=len, reverse=True)
    if not literals:
        return None
    return re.compile("|".join(re.escape(t) for t in literals))


def assert_decode_round_trip(tokenizer: Any, text: str) -> None:
    """``decode`` gives back the text exactly, special-token literals included.

    * ``decode(tokenizer(text, add_special_tokens=False).input_ids) == text``
      (no spaces inserted around ``<|user|>``, nothing dropped or repeated);
    * with ``skip_special_tokens=True`` the result is ``text`` with the special
      literals removed.

        >>> assert_decode_round_trip(tok, "a<|user|>b 你好")
    """
    __tracebackhide__ = True
    ids = _encode_ids(tokenizer, text, "tokenizer(text, add_special_tokens=False)", add_special_tokens=False)
    pattern = _special_pattern(tokenizer)
    without_specials = pattern.sub("", text) if pattern else text
    checks = [
        ("decode(ids)", {}, text),
        ("decode(ids, skip_special_tokens=True)", {"skip_special_tokens": True}, without_specials),
    ]
    for label, opts, expected in checks:
        decoded = _invoke(label, opts, tokenizer.decode, ids, **opts)
        if decoded != expected:
            index = fmt.first_difference(decoded, expected)
            index = 0 if index is None else index
            raise AssertionError(
                f"{label} does not give back the text, first difference at character {index}:\n"
                + "\n".join(
                    fmt.context_lines(
                        {
                            "decoded": fmt.text_window(decoded, index),
                            "expected": fmt.text_window(expected, index),
                            "ids": fmt.short(ids),
                            "text": fmt.short(text),
                            "options": fmt.options(opts),
                        }
                    )
                )
            )


def assert_truncation_exact(tokenizer: Any, text: str, max_length: int, truncation_side: Optional[str] = None) -> None:
    """``tokenizer(text, truncation=True, max_length=L)`` has exactly the expected ids.

    That is ``[gMASK]<sop>`` followed by the text's own tokens (one leading
    prefix copy removed) cut to ``L - 2`` on ``truncation_side`` (default: the
    tokenizer's). ``L`` must be at least 2. The tokenizer's ``truncation_side``
    is set for the call and restored afterwards.

        >>> assert_truncation_exact(tok, "[gMASK]<sop><|user|>\\nhello", 4, "left")
    """
    __tracebackhide__ = True
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an int >= 2 (room for [gMASK]<sop>), got {max_length!r}")
    if truncation_side not in (None, "left", "right"):
        raise ValueError(f"truncation_side must be 'left', 'right' or None, got {truncation_side!r}")
    prefix = _prefix_ids(tokenizer) if _adds_prefix(tokenizer) else []  # a tokenizer adding none cuts the text
    base = text[len(PREFIX_TEXT) :] if text.startswith(PREFIX_TEXT) and prefix else text
    body = _encode_ids(tokenizer, base, "tokenizer(base, add_special_tokens=False)", add_special_tokens=False)
    side = truncation_side or tokenizer.truncation_side
    keep = max_length - len(prefix)
    if len(body) > keep:
        body = body[:keep] if side == "right" else body[len(body) - keep :]
    expected = prefix + body
    opts = {"truncation": True, "max_length": max_length, "truncation_side": side}
    previous = tokenizer.truncation_side
    tokenizer.truncation_side = side
    try:
        got = _encode_ids(tokenizer, text, "tokenizer(text, truncation=True, max_length=L)",
                          truncation=True, max_length=max_length)  # fmt: skip
    finally:
        tokenizer.truncation_side = previous
    if got != expected:
        raise AssertionError(
            fmt.sequences(
                f"truncating to max_length={max_length} on the {side} did not keep [gMASK]<sop> plus the "
                f"text's {'first' if side == 'right' else 'last'} {keep} tokens",
                ("truncated", "expected"),
                got,
                expected,
                {"text": fmt.short(text), "options": fmt.options(opts)},
            )
        )


def assert_pair_encoding(tokenizer: Any, text: str, text_pair: str) -> None:
    """``tokenizer(text, text_pair)`` is the GLM-4 pair format, with one ``[gMASK]<sop>``.

    A slow (glm-4-9b-chat) tokenizer gives ``[gMASK]<sop> A B <|endoftext|>``; a fast one keeps the pair format
    of transformers' GLM-4 conversion, ``[gMASK]<sop> A B`` (or ``A B`` when it adds no prefix). ``A`` is the
    first text's tokens without one leading ``[gMASK]<sop>``, ``B`` the second text's tokens as they are.

        >>> assert_pair_encoding(tok, "question", "answer")
    """
    __tracebackhide__ = True
    prefix = _prefix_ids(tokenizer) if _adds_prefix(tokenizer) else []
    suffix = [] if _is_fast(tokenizer) else [_token_id(tokenizer, _PAIR_SUFFIX)]
    base = text[len(PREFIX_TEXT) :] if text.startswith(PREFIX_TEXT) and prefix else text
    a = _encode_ids(tokenizer, base, "tokenizer(text, add_special_tokens=False)", add_special_tokens=False)
    b = _encode_ids(tokenizer, text_pair, "tokenizer(text_pair, add_special_tokens=False)", add_special_tokens=False)
    expected = prefix + a + b + suffix
    got = _ids(_invoke("tokenizer(text, text_pair)", None, tokenizer, text, text_pair), "tokenizer(text, text_pair)")
    if got != expected:
        layout = ("[gMASK]<sop> + " if prefix else "") + "text + text_pair" + (" + <|endoftext|>" if suffix else "")
        raise AssertionError(
            fmt.sequences(
                f"tokenizer(text, text_pair) is not {layout}",
                ("pair", "expected"),
                got,
                expected,
                {"text": fmt.short(text), "text_pair": fmt.short(text_pair)},
            )
        )


def assert_special_tokens_mask(tokenizer: Any, text: str, text_pair: Optional[str] = None) -> None:
    """``return_special_tokens_mask=True`` marks exactly the tokens the tokenizer added.

    The mask is as long as ``input_ids`` and is 1 on the leading
    ``[gMASK]<sop>`` (and the pair's closing ``<|endoftext|>``), 0 elsewhere:
    special-token literals inside the text are content. On a fast tokenizer the
    mask is the Rust tokenizer's: a prefix the text itself starts with is text
    (0) there, and only a prefix the tokenizer added is 1 (fast GLM-4 pairs
    have no closing token).

        >>> assert_special_tokens_mask(tok, "<|user|>\\nhi")
    """
    __tracebackhide__ = True
    fast = _is_fast(tokenizer)
    prefix = _prefix_ids(tokenizer) if _adds_prefix(tokenizer) else []
    if fast and text.startswith(PREFIX_TEXT):
        prefix = []
    args = (text,) if text_pair is None else (text, text_pair)
    opts = {"return_special_tokens_mask": True}
    enc = _invoke("tokenizer(text, return_special_tokens_mask=True)", opts, tokenizer, *args, **opts)
    ids = _flat(enc, "input_ids", "tokenizer(text)")
    mask = _flat(enc, "special_tokens_mask", "tokenizer(text, return_special_tokens_mask=True)")
    n = len(prefix)
    suffix = [1] if text_pair is not None and not fast else []
    expected = [1] * n + [0] * max(0, len(ids) - n - len(suffix)) + suffix
    if mask != expected:
        raise AssertionError(
            fmt.sequences(
                "special_tokens_mask does not mark exactly the added [gMASK]<sop>"
                + (" and <|endoftext|>" if text_pair is not None else ""),
                ("mask", "expected"),
                mask,
                expected,
                {
                    "input_ids": fmt.short(ids),
                    "text": fmt.short(text),
                    "text_pair": fmt.short(text_pair),
                    "options": fmt.options(opts),
                },
            )
        )


def assert_decode_rejects_unknown_ids(tokenizer: Any, beyond: int = 0) -> None:
    """Decoding an id outside the vocabulary raises ValueError instead of returning text.

    Tries ``len(tokenizer) + beyond`` and ``-1 - beyond``.

        >>> assert_decode_rejects_unknown_ids(tok, 5)
    """
    __tracebackhide__ = True
    if isinstance(beyond, bool) or not isinstance(beyond, int) or beyond < 0:
        raise ValueError(f"beyond must be an int >= 0, got {beyond!r}")
    size = len(tokenizer)
    for bad in (size + beyond, -1 - beyond):
        try:
            out = tokenizer.decode([bad])
        except ValueError:
            continue
        except Exception as exc:
            raise AssertionError(
                f"tokenizer.decode([{bad}]) raised {type(exc).__name__}: {exc or '(no message)'}; an id outside "
                f"the vocabulary (len(tokenizer) = {size}) should be a ValueError naming the id"
            ) from exc
        raise AssertionError(
            f"tokenizer.decode([{bad}]) returned {fmt.short(out)} for an id outside the vocabulary "
            f"(len(tokenizer) = {size}); it should raise ValueError"
        )


def assert_encode_consistent(tokenizer: Any, text: str) -> None:
    """``encode``, ``__call__`` and ``tokenize`` + ``convert_tokens_to_ids`` agree on the ids.

    >>> assert_encode_consistent(tok, "hello 你好")
    """
    __tracebackhide__ = True
    for special in (True, False):
        opts = {"add_special_tokens": special}
        called = _ids(_invoke("tokenizer(text)", opts, tokenizer, text, **opts), "tokenizer(text)")
        encoded = list(_invoke("tokenizer.encode(text)", opts, tokenizer.encode, text, **opts))
        if encoded != called:
            raise AssertionError(
                fmt.sequences(
                    "tokenizer.encode(text) differs from tokenizer(text).input_ids",
                    ("encode", "__call__"),
                    encoded,
                    called,
                    {"text": fmt.short(text), "options": fmt.options(opts)},
                )
            )
    tokens = _invoke("tokenizer.tokenize(text)", None, tokenizer.tokenize, text)
    converted = list(_invoke("tokenizer.convert_tokens_to_ids(tokens)", None, tokenizer.convert_tokens_to_ids, tokens))
    if converted != called:
        raise AssertionError(
            fmt.sequences(
                "convert_tokens_to_ids(tokenize(text)) differs from tokenizer(text, add_special_tokens=False)",
                ("via tokenize", "__call__"),
                converted,
                called,
                {"text": fmt.short(text)},
            )
        )
