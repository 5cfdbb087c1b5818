"""glm4-tokfix's ``sitecustomize``, put first on ``PYTHONPATH`` by ``glm4-tokfix run`` (see ``glm4_tokfix.run``).

At interpreter startup it imports nothing heavy: it installs a ``sys.meta_path`` finder that waits for
``transformers.models.auto.tokenization_auto`` (where ``AutoTokenizer`` lives) and, right after that module has
executed, calls ``glm4_tokfix.enable()`` and says so on stderr; then the finder removes itself. Then it runs the
user's own ``sitecustomize`` (the next one on ``sys.path``), which becomes ``sys.modules["sitecustomize"]``.

It never stops the program: if glm4_tokfix cannot be imported or ``enable()`` fails, one stderr line says the fix
is not active and the program goes on. ``GLM4_TOKFIX_RUN=0`` (``false``/``no``/``off``) leaves the hook out.
This file is not part of a package and imports only the standard library at startup.
"""

import os
import sys

_TARGET = "transformers.models.auto.tokenization_auto"
_OPT_OUT_ENV = "GLM4_TOKFIX_RUN"
_HERE = os.path.dirname(os.path.realpath(__file__))


def _say(text):
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except Exception:  # a closed or missing stderr must not stop the program
        pass


def _activate():
    """``glm4_tokfix.enable()``, with one stderr line either way; never raises."""
    try:
        import glm4_tokfix

        was = glm4_tokfix.is_enabled()
        glm4_tokfix.enable()
    except Exception as exc:
        _say(
            f"glm4-tokfix run: the fix is NOT active in this process ({type(exc).__name__}: {exc}); "
            "continuing without it"
        )
        return
    if not was:
        _say(
            f"glm4-tokfix {glm4_tokfix.__version__} active (glm4-tokfix run, pid {os.getpid()}): GLM-4 tokenizers "
            f"load with the fix; {_OPT_OUT_ENV}=0 leaves it out"
        )


class _Loader:
    """Delegates to the real loader; after the module has executed, runs ``_activate``."""

    def __init__(self, inner):
        self._inner = inner

    def create_module(self, spec):
        create = getattr(self._inner, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module):
        # the module reports its real loader, not this one
        module.__loader__ = self._inner
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._inner
        self._inner.exec_module(module)
        _activate()

    def __getattr__(self, name):
        return getattr(self._inner, name)


class _Finder:
    """A ``sys.meta_path`` finder that only answers for ``_TARGET``, once, and then leaves ``sys.meta_path``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _TARGET:
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:  # another thread got here first
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _Loader(spec.loader)
        return spec

    def invalidate_caches(self):
        pass


def _opted_out():
    return os.environ.get(_OPT_OUT_ENV, "").strip().lower() in ("0", "false", "no", "off")


def _install_hook():
    if _TARGET in sys.modules:  # only if something imported it before site ran
        _activate()
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def _chain_user_sitecustomize():
    """Run the next ``sitecustomize`` on ``sys.path`` after this folder, as Python would have without us."""
    from importlib.machinery import PathFinder
    from importlib.util import module_from_spec

    def same(entry):
        try:
            return os.path.realpath(entry or os.curdir) == _HERE
        except (OSError, ValueError):
            return False

    positions = [i for i, entry in enumerate(sys.path) if same(entry)]
    rest = sys.path[positions[-1] + 1 :] if positions else list(sys.path)
    rest = [entry for entry in rest if not same(entry)]
    spec = PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = module_from_spec(spec)
    ours = sys.modules.get("sitecustomize")
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        # as Python does for a failing import: no half-run module left; site.py reports the error
        if ours is not None:
            sys.modules["sitecustomize"] = ours
        raise


if not _opted_out():
    _install_hook()
_chain_user_sitecustomize()
