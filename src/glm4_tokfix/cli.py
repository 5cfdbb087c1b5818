"""The ``glm4-tokfix`` command: one subcommand per job, each defined in its own module.

* ``check``   -- run the property battery on a tokenizer (``glm4_tokfix.check``)
* ``patch`` / ``unpatch`` / ``export`` -- make a model folder load the fixed tokenizer,
  undo it, or write the standalone module for upstream (``glm4_tokfix.model_folder``)
* ``convert`` -- a fixed fast-tokenizer (``tokenizer.json``) folder from a glm-4-9b-chat one
  (``glm4_tokfix.convert``)

Exit codes: 0 success, 1 a check found violations or a folder operation failed,
2 usage errors. Errors are one line on stderr, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

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
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
