"""``glm4-tokfix run -- COMMAND [ARGS...]``: run any program with the fix enabled in every Python process it starts.

The way ``opentelemetry-instrument`` and ``ddtrace-run`` instrument a program: the runner puts the folder
``glm4_tokfix/_run_site`` first on ``PYTHONPATH`` and replaces itself with COMMAND (``os.execvpe``: the exit status
is COMMAND's). Every Python process that inherits the environment (COMMAND itself, ``python -m ...``, the
processes of ``multiprocessing`` spawn, ``accelerate launch``, ``torchrun``) imports that folder's
``sitecustomize`` at startup, which

* runs the user's own ``sitecustomize`` (the next one on ``sys.path``), once;
* hooks transformers lazily: ``glm4_tokfix.enable()`` runs when ``transformers.models.auto.tokenization_auto``
  (where ``AutoTokenizer`` lives) is first imported. A process that never imports it imports neither transformers
  nor glm4_tokfix;
* says on stderr, once per process, that the fix is active, or that it could not be turned on (the program goes on
  without it).

``GLM4_TOKFIX_RUN=0`` (or ``false``/``no``/``off``) in the environment leaves the fix out of a process and its
children while the user's ``sitecustomize`` still runs. Interpreters started with ``-E``, ``-I`` or ``-S`` ignore
``PYTHONPATH`` / ``sitecustomize`` and so run without the fix.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping, MutableMapping, Optional, Sequence

__all__ = ["OPT_OUT_ENV", "SITE_DIR", "run", "run_environment"]

#: the folder put first on ``PYTHONPATH``; it holds only ``sitecustomize.py``
SITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_run_site")

#: ``GLM4_TOKFIX_RUN=0`` (``false``, ``no``, ``off``) leaves the fix out of the processes that see it
OPT_OUT_ENV = "GLM4_TOKFIX_RUN"


def run_environment(environ: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """A copy of ``environ`` (default ``os.environ``) with ``SITE_DIR`` first on ``PYTHONPATH``.

    Already on ``PYTHONPATH`` (a nested ``glm4-tokfix run``): left where it is, not added twice.
    """
    env = dict(os.environ if environ is None else environ)
    current = env.get("PYTHONPATH", "")
    parts = current.split(os.pathsep) if current else []
    if not any(p and os.path.realpath(p) == os.path.realpath(SITE_DIR) for p in parts):
        env["PYTHONPATH"] = os.pathsep.join([SITE_DIR, *parts])
    return env


def run(command: Sequence[str], environ: Optional[MutableMapping[str, str]] = None) -> int:
    """Replace this process with ``command`` under ``run_environment``; return only when it cannot start.

    Returns 127 when the command is not found and 126 when it is found but cannot be executed (as a shell does),
    after one line on stderr.
    """
    command = list(command)
    if not command or not command[0]:
        raise ValueError("glm4-tokfix run: no command given (usage: glm4-tokfix run -- COMMAND [ARGS...])")
    env = run_environment(environ)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, env)
    except FileNotFoundError:
        print(f"glm4-tokfix run: {command[0]}: command not found", file=sys.stderr)
        return 127
    except (PermissionError, OSError) as exc:
        print(f"glm4-tokfix run: {command[0]}: cannot execute ({exc.strerror or exc})", file=sys.stderr)
        return 126
    raise AssertionError("unreachable: os.execvpe returned")  # pragma: no cover
