"""``glm4-tokfix check``: run the property battery on a GLM-4 tokenizer and print what it violates.

    glm4-tokfix check                          # the embedded tiny GLM-4 tokenizer, fixed
    glm4-tokfix check path/to/glm-4-9b-chat    # that folder, loaded with the fix
    glm4-tokfix check path/to/glm-4-9b-chat --unpatched   # the folder's own remote code, to diagnose it
    glm4-tokfix check MODEL_DIR --examples 300 --seed 7 --json

Every property (``glm4_tokfix.testing.properties``) runs for N examples drawn
by hypothesis (progress on stderr); the table lists, per property, the
examples run, the violations and the first counterexample, shrunk. Exit
status: 0 nothing violated, 1 something violated, 2 usage error (a missing
folder, ``--unpatched`` without a folder, N <= 0, an unknown property, a
folder that does not load). ``--json`` prints the same report as JSON on
stdout. Nothing is written to disk (hypothesis runs with ``database=None``).

This module is imported at CLI start-up: hypothesis and transformers are
imported only when the subcommand runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, List, Optional, Sequence, TextIO

EXIT_OK, EXIT_VIOLATIONS, EXIT_USAGE = 0, 1, 2
DEFAULT_EXAMPLES = 100  # keep in step with glm4_tokfix.testing.runner.DEFAULT_EXAMPLES

_TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json")


def _usage_error(message: str) -> int:
    print(f"glm4-tokfix check: error: {message}", file=sys.stderr)
    return EXIT_USAGE


class _StderrProgress:
    """A one-line progress bar on a terminal; one line per property otherwise (logs, CI)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.total = self.count = self.index = self.n_props = 0
        self.last_draw = 0.0

    def start(self, total: int) -> None:
        self.total, self.count = total, 0

    def _draw(self, label: str, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.tty or (not force and now - self.last_draw < 0.1):
            return
        self.last_draw = now
        width = 28
        filled = int(width * self.count / self.total) if self.total else width
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.count}/{self.total} {label}\x1b[K")
        self.stream.flush()

    def example(self, prop: Any) -> None:
        self.count += 1
        self._draw(prop.name)

    def shrinking(self, prop: Any) -> None:
        self._draw(f"{prop.name}: shrinking the counterexample", force=True)

    def done(self, prop: Any, result: Any) -> None:
        self.index += 1
        if self.tty:
            self._draw(prop.name, force=True)
        else:
            self.stream.write(
                f"[{self.index}/{self.n_props}] {prop.name}: {result.examples} examples, "
                f"{result.violations} violations ({result.seconds:.1f} s)\n"
            )
            self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _cell(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _arguments(arguments: dict) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in arguments.items())


def format_table(report: Any, header: Sequence[str]) -> str:
    """The human-readable report: header lines, the table, the violations in full, the timing line."""
    lines: List[str] = list(header) + [""]
    name_w = max([len("property")] + [len(r.name) for r in report.results])
    cells = [("property", "examples", "violations", "first counterexample")]
    for r in report.results:
        example = _cell(_arguments(r.counterexample.arguments), 70) if r.counterexample else "-"
        if r.skipped:
            example = _cell(f"skipped: {r.skipped}", 70)
        cells.append((r.name, str(r.examples), str(r.violations), example))
    for name, examples, violations, example in cells:
        lines.append(f"{name:<{name_w}}  {examples:>8}  {violations:>10}  {example}")
    violated = [r for r in report.results if r.violations]
    if violated:
        lines += ["", "Violations (first counterexample of each, shrunk):"]
        for r in violated:
            c = r.counterexample
            lines += ["", f"* {r.name}: {r.summary} -- {r.violations} of {r.examples} examples"]
            lines.append(f"  {c.call}" + ("" if c.shrunk else "   (not shrunk)"))
            lines += ["  " + line for line in c.message.splitlines()]
    lines += ["", summary_line(report)]
    return "\n".join(lines)


def _count(n: int, noun: str, plural: str = "") -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def summary_line(report: Any) -> str:
    """``12 properties, 1200 examples in 8.3 s: ...`` -- the last line of the report."""
    head = (
        f"{_count(len(report.results), 'property', 'properties')}, "
        f"{_count(report.total_examples, 'example')} in {report.seconds:.1f} s"
    )
    skipped = [r.name for r in report.results if r.skipped]
    if skipped:
        head += f" ({_count(len(skipped), 'property', 'properties')} skipped: {', '.join(skipped)})"
    if report.ok:
        return f"{head}: no violations (seed {report.seed})"
    violated = sum(1 for r in report.results if r.violations)
    return (
        f"{head}: {_count(violated, 'property', 'properties')} violated, "
        f"{_count(report.total_violations, 'violation')} (seed {report.seed}; "
        f"rerun with --seed {report.seed} to reproduce)"
    )


def _encoder_backend(tokenizer: Any) -> str:
    """Which BPE engine the tokenizer's fast path runs on ("tiktoken", "fastokens"), a note for a tokenizer
    without encoder backends, or "error: ..." when the choice ($GLM4_TOKFIX_ENCODER / glm4_encoder) is bad."""
    name_of = getattr(tokenizer, "glm4_encoder_name", None)
    if name_of is None:
        return "none (this tokenizer encodes through its own engine)"
    try:
        name = name_of()
        tokenizer.encode("glm4-tokfix check", add_special_tokens=False)  # builds the backend: its errors show here
    except (ImportError, ValueError) as exc:
        return f"error: {exc}"
    source = (
        "glm4_encoder"
        if getattr(tokenizer, "glm4_encoder", None)
        else ("$GLM4_TOKFIX_ENCODER" if os.environ.get("GLM4_TOKFIX_ENCODER") else "default")
    )
    return f"{name} ({source})"


def _own_chat_template(tokenizer: Any) -> Optional[str]:
    from glm4_tokfix.testing.assertions import own_chat_template

    return own_chat_template(tokenizer)


def _minimal_patch_note(model_dir: Optional[str], unpatched: bool, report: Any) -> Optional[tuple]:
    """For ``--unpatched`` on a folder whose remote code carries ``export --minimal``'s patch: (violated, note)."""
    if not (model_dir and unpatched):
        return None
    from glm4_tokfix.testing.loading import is_minimally_patched_file, remote_code_module

    if not is_minimally_patched_file(remote_code_module(model_dir)):
        return None
    violated = [r.name for r in report.results if r.violations]
    if not violated:
        return violated, "minimal patch: no property of this run is violated"
    return violated, (
        "minimal patch: the folder's tokenization_chatglm.py carries glm4-tokfix's minimal patch (prefix once, "
        "padding side, pairs); what it still violates above (" + ", ".join(violated) + ") is what the full "
        "module adds (glm4-tokfix export OUT_DIR, or glm4-tokfix patch MODEL_DIR)"
    )


def run(args: argparse.Namespace) -> int:
    """The ``check`` subcommand; returns the exit status."""
    model_dir: Optional[str] = args.model_dir
    if args.unpatched and model_dir is None:
        return _usage_error("--unpatched needs MODEL_DIR: it loads that folder's own remote code without the fix")
    if model_dir is not None:
        if not os.path.exists(model_dir):
            return _usage_error(f"no such folder: {model_dir}")
        if not os.path.isdir(model_dir):
            return _usage_error(f"not a folder: {model_dir} (MODEL_DIR is a model folder holding tokenizer.model)")
        if not any(os.path.isfile(os.path.join(model_dir, f)) for f in _TOKENIZER_FILES):
            return _usage_error(
                f"not a GLM-4 tokenizer folder: {model_dir} has no tokenizer.model, tokenizer.json or "
                "tokenizer_config.json"
            )
    if args.examples <= 0:
        return _usage_error(f"--examples must be a positive integer, got {args.examples}")

    try:
        from glm4_tokfix.testing import properties as props
    except ModuleNotFoundError as exc:
        if exc.name != "hypothesis" and not (exc.name or "").startswith("hypothesis."):
            raise
        return _usage_error("needs hypothesis, which is not installed: pip install 'glm4-tokfix[check]'")

    try:
        selected = props.select(args.properties)
    except ValueError as exc:
        return _usage_error(str(exc))

    import secrets
    import warnings

    import transformers
    from transformers.utils import logging as hf_logging

    import glm4_tokfix
    from glm4_tokfix.testing.loading import load_tokenizer
    from glm4_tokfix.testing.runner import run_properties

    verbosity = hf_logging.get_verbosity()
    if sys.stderr.isatty():
        sys.stderr.write(f"loading {model_dir or 'the embedded tiny GLM-4 tokenizer'} ...\r")
        sys.stderr.flush()
    started = time.perf_counter()
    try:
        hf_logging.set_verbosity(hf_logging.ERROR)  # no "class you load is not the same type" chatter
        tokenizer, how = load_tokenizer(model_dir, unpatched=args.unpatched)
    except Exception as exc:
        where = model_dir or glm4_tokfix.TINY_GLM4_DIR
        hf_logging.set_verbosity(verbosity)
        return _usage_error(f"cannot load a GLM-4 tokenizer from {where}: {type(exc).__name__}: {exc}")
    load_seconds = time.perf_counter() - started
    from glm4_tokfix.testing.loading import prefix_policy

    try:
        policy = prefix_policy(tokenizer)
    except Exception as exc:
        policy = f"unknown ({type(exc).__name__}: {exc})"

    encoder = _encoder_backend(tokenizer)
    if encoder.startswith("error"):
        return _usage_error(f"the encoder backend of {model_dir or glm4_tokfix.TINY_GLM4_DIR}: {encoder}")

    for stream in (sys.stdout, sys.stderr):  # texts hold CJK and emoji: never die on a narrow console encoding
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    seed = args.seed if args.seed is not None else secrets.randbelow(2**32)
    progress = _StderrProgress(sys.stderr)
    progress.n_props = len(selected)
    try:
        hf_logging.set_verbosity(hf_logging.CRITICAL)  # e.g. 4.x logs an error for each truncation it skips
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = run_properties(tokenizer, selected, examples=args.examples, seed=seed, progress=progress)  # type: ignore[arg-type]  # duck-types testing.runner.Progress
    except KeyboardInterrupt:
        print("\nglm4-tokfix check: interrupted", file=sys.stderr)
        return 130
    finally:
        hf_logging.set_verbosity(verbosity)

    target = os.path.abspath(model_dir) if model_dir else "embedded tiny GLM-4 tokenizer"
    minimal = _minimal_patch_note(model_dir, args.unpatched, report)
    if args.json:
        payload = {
            "tokenizer": os.path.abspath(model_dir) if model_dir else None,
            "loaded": how,
            "unpatched": bool(args.unpatched),
            "class": type(tokenizer).__name__,
            "prefix_policy": policy,
            "own_chat_template": _own_chat_template(tokenizer),
            "encoder": encoder,
            "transformers": transformers.__version__,
            "glm4_tokfix": glm4_tokfix.__version__,
            "load_seconds": round(load_seconds, 3),
            **report.as_dict(),
        }
        if minimal is not None:
            payload["minimal_patch"] = {"still_violated": minimal[0], "note": minimal[1]}
        json.dump(payload, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        print(summary_line(report), file=sys.stderr)
    else:
        header = [
            f"glm4-tokfix check: {target}",
            f"loaded: {how} ({type(tokenizer).__name__}, {load_seconds:.1f} s)",
            f"prefix policy: {policy}",
            f"encoder backend: {encoder}",
            f"transformers {transformers.__version__}, glm4-tokfix {glm4_tokfix.__version__}, "
            f"{args.examples} examples per property, seed {seed}",
        ]
        own = _own_chat_template(tokenizer)
        if own is not None:
            header.append(
                f"chat template: the class's own apply_chat_template ({own}), kept as the checkpoint ships it; "
                "chat_template_consistent checks the rendered-prompt route (tokenize=False, then the tokenizer)"
            )
        table = format_table(report, header)
        if minimal is not None:
            table += "\n" + minimal[1]
        print(table)
    return EXIT_OK if report.ok else EXIT_VIOLATIONS
