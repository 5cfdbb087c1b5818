"""The ``glm4-tokfix`` command: one subcommand per job, each defined in its own module.

* ``check``   -- run the property battery on a tokenizer (``glm4_tokfix.check``)
* ``patch`` / ``unpatch`` / ``export`` -- make a model folder load the fixed tokenizer,
  undo it, or write the standalone module for upstream (``glm4_tokfix.model_folder``)
* ``convert`` -- a fixed fast-tokenizer (``tokenizer.json``) folder from a glm-4-9b-chat one
  (``glm4_tokfix.convert``)
* ``run``     -- run a program with the fix enabled in every Python process it starts (``glm4_tokfix.run``)

Exit codes: 0 success, 1 a check found violations or a folder operation failed,
2 usage errors. Errors are one line on stderr, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, Optional, Sequence

# subcommand modules; each defines register(subparsers) adding its parsers with set_defaults(func=...)
_SUBCOMMAND_MODULES = ("glm4_tokfix.check", "glm4_tokfix.model_folder", "glm4_tokfix.convert")


def build_parser() -> argparse.ArgumentParser:
    from glm4_tokfix import __version__

    parser = argparse.ArgumentParser(
        prog="glm4-tokfix",
        description="Exact batch encoding for GLM-4 tokenizers: check, patch, unpatch, export, convert.",
    )
    parser.add_argument("--version", action="version", version=f"glm4-tokfix {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    _add_run(subparsers)
    return parser


def _add_run(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a program with the fix enabled in every Python process it starts",
        description="Run COMMAND with glm4-tokfix enabled in every Python process it starts (through a "
        "sitecustomize on PYTHONPATH; transformers is hooked only when a process loads tokenizers). The exit status "
        "is COMMAND's; 127 when it is not found. GLM4_TOKFIX_RUN=0 in the environment leaves the fix out.",
        usage="glm4-tokfix run [-h] [--] COMMAND [ARGS...]",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND [ARGS...]")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from glm4_tokfix.run import run

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("glm4-tokfix run: no command given (usage: glm4-tokfix run -- COMMAND [ARGS...])", file=sys.stderr)
        return 2
    return run(command)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
