"""The ``glm4-tokfix`` command: every subcommand's argparse and exit codes (nothing else imports this module).

* ``check``   -- run the property battery on a tokenizer (``glm4_tokfix.check``)
* ``patch`` / ``unpatch`` / ``export`` -- make a model folder load the fixed tokenizer,
  undo it, or write the bundle for upstream (``glm4_tokfix.model_folder``)
* ``convert`` -- a fixed fast-tokenizer (``tokenizer.json``) folder from a glm-4-9b-chat one
  (``glm4_tokfix.convert``)

Exit codes: 0 success, 1 a check found violations or a folder operation failed,
2 usage errors. Errors are one line on stderr, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

# the library modules the subcommands run; each imports nothing heavy, so ``glm4-tokfix --help`` stays fast
from glm4_tokfix.check import DEFAULT_EXAMPLES
from glm4_tokfix.check import run as run_check
from glm4_tokfix.convert import STYLES, convert_folder
from glm4_tokfix.model_folder import (
    BACKUP_FILE,
    BUNDLE_FILES,
    CLASS_REF,
    CONFIG_FILE,
    EXPORT_FILE,
    MODULE_FILE,
    export_module,
    patch_folder,
    unpatch_folder,
)


def build_parser() -> argparse.ArgumentParser:
    from glm4_tokfix import __version__

    parser = argparse.ArgumentParser(
        prog="glm4-tokfix",
        description="Exact batch encoding for GLM-4 tokenizers: check, patch, unpatch, export, convert.",
    )
    parser.add_argument("--version", action="version", version=f"glm4-tokfix {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _register_check(subparsers)
    _register_folder_commands(subparsers)
    _register_convert(subparsers)
    return parser


# ---------------------------------------------------------------------------------------------- check
_EPILOG = """\
examples:
  glm4-tokfix check                                  the embedded tiny tokenizer, with the fix
  glm4-tokfix check ./glm-4-9b-chat                  a model folder, with the fix
  glm4-tokfix check ./glm-4-9b-chat --unpatched      the folder's own remote code, without the fix
  glm4-tokfix check ./glm-4-9b-chat --examples 500 --seed 3 --json > report.json

exit status: 0 no violation, 1 violations found, 2 usage error
"""


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {number}")
    return number


def _register_check(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``check`` subcommand to ``glm4-tokfix``."""
    parser = subparsers.add_parser(
        "check",
        help="run the property battery on a GLM-4 tokenizer",
        description="Run every glm4-tokfix property for N hypothesis examples on a GLM-4 tokenizer "
        "and report the violations, each with its first (shrunk) counterexample.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model_dir",
        nargs="?",
        metavar="MODEL_DIR",
        help="model folder: glm-4-9b-chat style (tokenizer.model + tokenizer_config.json) or transformers-native "
        "(tokenizer.json) (default: the embedded tiny GLM-4 tokenizer)",
    )
    parser.add_argument(
        "--unpatched",
        action="store_true",
        help="load the folder as it is, without the fix, to diagnose it: its own remote code "
        "(tokenization_chatglm.py), or transformers' built-in class for a tokenizer.json folder",
    )
    parser.add_argument(
        "--examples",
        "-n",
        type=_positive_int,
        default=DEFAULT_EXAMPLES,
        metavar="N",
        help=f"examples per property (default {DEFAULT_EXAMPLES})",
    )
    parser.add_argument(
        "--seed", type=int, default=None, metavar="S", help="seed, to reproduce a run (default: random, printed)"
    )
    parser.add_argument("--property", "-p", action="append", dest="properties", metavar="NAME",
                        help="run only this property (repeatable); see the names in the report")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.set_defaults(func=run_check)
    return parser


# ------------------------------------------------------------------------ patch, unpatch, export
def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _run(command: str, action: Any) -> int:
    try:
        message = action()
    except (OSError, ValueError) as exc:
        print(f"glm4-tokfix {command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    print(message)
    return 0


def _cmd_patch(args: argparse.Namespace) -> int:
    return _run("patch", lambda: patch_folder(args.model_dir))


def _cmd_unpatch(args: argparse.Namespace) -> int:
    return _run("unpatch", lambda: unpatch_folder(args.model_dir))


def _cmd_export(args: argparse.Namespace) -> int:
    if args.minimal is not None:
        return _run("export", lambda: _export_minimal_summary(args.minimal, args.out_dir, args.force))
    return _run("export", lambda: _export_summary(args.out_dir, args.force))


def _export_summary(out_dir: str, force: bool) -> str:
    paths = export_module(out_dir, force=force)
    return f"wrote {len(paths)} files into {out_dir}: {' '.join(p.name for p in paths)}"


def _export_minimal_summary(model_dir: str, out_dir: str, force: bool) -> str:
    from glm4_tokfix.minimal_patch import export_minimal

    (module, diff), result = export_minimal(model_dir, out_dir, force=force)
    return f"wrote {module} and {diff}: the minimal patch of {Path(model_dir) / EXPORT_FILE}, {result.describe()}"


def _register_folder_commands(subparsers: Any) -> None:
    """Add the ``patch``, ``unpatch`` and ``export`` subcommands to the ``glm4-tokfix`` parser."""
    p = subparsers.add_parser(
        "patch",
        help="make a GLM-4 model folder load the fixed tokenizer with plain AutoTokenizer",
        description="Write the fixed tokenizer module into MODEL_DIR as " + MODULE_FILE + " and point "
        "auto_map.AutoTokenizer in " + CONFIG_FILE + " at it (original kept as " + BACKUP_FILE + "). "
        "vLLM, SGLang, LLaMA-Factory, TGI and plain AutoTokenizer.from_pretrained(MODEL_DIR, "
        "trust_remote_code=True) then load the fixed tokenizer. Safe to run again (refreshes the module).",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a GLM-4 model or tokenizer folder")
    p.set_defaults(func=_cmd_patch)

    u = subparsers.add_parser(
        "unpatch",
        help="undo 'patch': restore the folder byte for byte",
        description="Restore the original " + CONFIG_FILE + " and remove " + MODULE_FILE + ".",
    )
    u.add_argument("model_dir", metavar="MODEL_DIR", help="a folder patched by 'glm4-tokfix patch'")
    u.set_defaults(func=_cmd_unpatch)

    e = subparsers.add_parser(
        "export",
        help="write the fix's bundle of modules (for the upstream model repo)",
        description="Write the bundle's files into OUT_DIR: " + " ".join(BUNDLE_FILES) + ". They need only "
        "transformers, tiktoken and regex; point auto_map.AutoTokenizer at " + CLASS_REF + ".",
    )
    e.add_argument("out_dir", metavar="OUT_DIR", help="folder to write into (created if missing)")
    e.add_argument("--force", action="store_true", help="replace existing different files")
    e.add_argument(
        "--minimal",
        metavar="MODEL_DIR",
        default=None,
        help="instead, patch MODEL_DIR's own upstream " + EXPORT_FILE + " minimally (the prefix, padding side "
        "and pair fixes only) and write it with a unified diff, " + EXPORT_FILE + ".diff, into OUT_DIR",
    )
    e.set_defaults(func=_cmd_export)


# --------------------------------------------------------------------------------------------- convert
def _cmd_convert(args: argparse.Namespace) -> int:
    try:
        target = convert_folder(args.src, args.out, args.style)
    except (OSError, ValueError) as exc:
        print(f"glm4-tokfix convert: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(
        f"wrote {target}: tokenizer.json ({args.style} post-processor) with the glm4-tokfix fix; load it with "
        f"AutoTokenizer.from_pretrained({str(target)!r}, trust_remote_code=True) -- without trust_remote_code "
        "transformers loads its built-in fast class, unfixed"
    )
    return 0


def _register_convert(subparsers: Any) -> None:
    """Add the ``convert`` subcommand to the ``glm4-tokfix`` parser."""
    parser = subparsers.add_parser(
        "convert",
        help="make a fixed fast-tokenizer (tokenizer.json) folder from a glm-4-9b-chat folder",
        description="Build tokenizer.json from SRC's tokenizer.model with transformers' tiktoken converter (ids "
        "equal ChatGLM4Tokenizer's), write it to OUT with tokenizer_config.json, a copy of tokenizer.model and the "
        "fixed modules, and point auto_map at ChatGLM4TokenizerFast.",
    )
    parser.add_argument("src", metavar="SRC", help="glm-4-9b-chat folder (tokenizer.model + tokenizer_config.json)")
    parser.add_argument("out", metavar="OUT", help="folder to create (must not exist, or be empty)")
    parser.add_argument(
        "--style",
        choices=sorted(STYLES),
        default="chat-hf",
        help="post-processor: chat-hf adds [gMASK]<sop> like glm-4-9b-chat (default); 0414 adds nothing",
    )
    parser.set_defaults(func=_cmd_convert)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
