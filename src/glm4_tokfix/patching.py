"""Swap the fix in where GLM-4 tokenizers are loaded: ``patch``, ``from_pretrained``, ``enable``/``disable``.

Three routes, one fix (``GLM4FixMixin`` from ``glm4_tokfix.remote_code.tokenization_glm4_tokfix``):

``patch(tokenizer)``
    Lays the fix over an already loaded GLM-4 tokenizer, whatever upstream
    revision its remote code is. The tokenizer's class becomes
    ``class Patched(GLM4FixMixin, type(tokenizer))`` (one such class per
    original class), in place, and the same object is returned::

        >>> tok = AutoTokenizer.from_pretrained("THUDM/glm-4-9b-chat", trust_remote_code=True)
        >>> glm4_tokfix.patch(tok) is tok
        True

``from_pretrained(name_or_path, **kwargs)``
    ``AutoTokenizer.from_pretrained(..., trust_remote_code=True)`` followed by
    ``patch``.

``enable()`` / ``disable()``
    After ``enable()``, plain ``transformers.AutoTokenizer.from_pretrained``
    returns fixed tokenizers for GLM-4 and leaves every other tokenizer
    untouched (remote-code GLM-4 folders load the installed fix even without
    ``trust_remote_code``); ``disable()`` puts transformers' own attribute back. ``enable()``
    also works as a context manager that undoes exactly what it did::

        >>> with glm4_tokfix.enable():
        ...     tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True)

A patched tokenizer pickles (multiprocessing, ``copy.deepcopy``): it is rebuilt
from its original class and patched again on the other side. Its
``save_pretrained`` writes a folder that loads the FIXED tokenizer without
glm4-tokfix installed: the standalone module is written as
``tokenization_glm4_tokfix.py`` and ``auto_map`` points at it (upstream's
module is not copied).

Importing this module imports neither transformers nor the fix; both load on
first use.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
import warnings
from typing import Any, Dict, Optional, Tuple, TypeVar

from glm4_tokfix.remote_code.glm4_tokens import PREFIX_TOKENS, REQUIRED_TOKENS

__all__ = ["patch", "is_patched", "from_pretrained", "enable", "disable", "is_enabled", "glm4_problem"]

T = TypeVar("T")


_LOCK = threading.RLock()
_PATCHED_CLASSES: Dict[type, type] = {}


# ------------------------------------------------------------------ detection
def _describe(obj: Any) -> str:
    cls = type(obj)
    module = getattr(cls, "__module__", "") or ""
    name = getattr(cls, "__qualname__", cls.__name__)
    return f"{module}.{name}" if module and module != "builtins" else name


def glm4_problem(tokenizer: Any) -> Optional[str]:
    """Why ``tokenizer`` is not a GLM-4 tokenizer ``patch`` can fix, or ``None`` if it is one.

    Two kinds are GLM-4 tokenizers:

    * a transformers slow tokenizer (``PreTrainedTokenizer``: glm-4-9b-chat's remote code, every upstream
      revision, and ours) with ``mergeable_ranks`` (bytes -> id) and ``decoder`` (id -> bytes) dicts;
    * a transformers fast tokenizer (``PreTrainedTokenizerFast``; on transformers 5 ``TokenizersBackend``) over a
      ``tokenizer.json`` (glm-4-9b-chat-hf, GLM-4-0414, GLM-4.5, ...) whose post-processor either adds nothing
      or starts its template with ``[gMASK] <sop>``;

    each with ``[gMASK]``, ``<sop>`` and ``<|endoftext|>`` registered as added tokens::

        >>> glm4_problem("not a tokenizer")
        'it is not a transformers tokenizer (PreTrainedTokenizer or PreTrainedTokenizerFast)'
    """
    from transformers import PreTrainedTokenizer, PreTrainedTokenizerFast

    if isinstance(tokenizer, PreTrainedTokenizerFast):
        added = tokenizer.get_added_vocab()
    elif isinstance(tokenizer, PreTrainedTokenizer):
        missing = [n for n in ("mergeable_ranks", "decoder") if not isinstance(getattr(tokenizer, n, None), dict)]
        if missing:
            return f"it has no {' / '.join(missing)} dict (GLM-4 tokenizers keep their BPE ranks there)"
        added = getattr(tokenizer, "_added_tokens_encoder", None) or {}
    else:
        return "it is not a transformers tokenizer (PreTrainedTokenizer or PreTrainedTokenizerFast)"
    absent = [token for token in REQUIRED_TOKENS if token not in added]
    if absent:
        return f"{', '.join(absent)} {'is' if len(absent) == 1 else 'are'} not registered as added tokens"
    if isinstance(tokenizer, PreTrainedTokenizerFast):
        from glm4_tokfix.remote_code.glm4_fast_encoder import prefix_rule
        from glm4_tokfix.remote_code.glm4_tokens import PREFIX_TEXT

        backend = tokenizer.backend_tokenizer
        if backend.padding is not None or backend.truncation is not None or backend.encode_special_tokens:
            # a saved tokenizer.json keeps the last call's padding/truncation: recognise GLM-4 without them
            from tokenizers import Tokenizer

            backend = Tokenizer.from_str(backend.to_str())
            backend.no_padding()
            backend.no_truncation()
            backend.encode_special_tokens = False
        prefix = [added[t] for t in PREFIX_TOKENS]
        if backend.encode(PREFIX_TEXT, add_special_tokens=False).ids != prefix:
            return "its tokenizer does not encode the text '[gMASK]<sop>' as those two added tokens"
        try:
            prefix_rule(backend, prefix)
        except TypeError as exc:
            return str(exc)
    return None


def is_patched(tokenizer: Any) -> bool:
    """True when ``tokenizer`` already carries the glm4-tokfix fix.

    That is a tokenizer patched by ``patch``, our own ``ChatGLM4Tokenizer``, or
    the class of a model folder written by ``glm4-tokfix patch``/``export``
    (any class with a ``GLM4FixMixin`` base, from this package or from a copy of
    its standalone module loaded as remote code). Never raises::

        >>> is_patched(glm4_tokfix.ChatGLM4Tokenizer.from_pretrained(glm4_tokfix.TINY_GLM4_DIR))
        True
        >>> is_patched(None)
        False
    """
    return any(klass.__name__ in _FIX_MIXINS for klass in type(tokenizer).__mro__)


#: the names of the fix's mixins: the slow tokenizer's and the fast tokenizer's
_FIX_MIXINS = ("GLM4FixMixin", "GLM4FastFixMixin")


# ------------------------------------------------------------------ patching
class _PatchedTokenizer:
    """What every patched class adds on top of the fix: pickling and a save that loads fixed.

    Kept free of transformers imports; ``patched_class`` puts it first in the bases.
    """

    #: the original (unpatched) class; set on each patched class
    _glm4_tokfix_base: type

    # save_pretrained must not copy the original (buggy) module: ``_save_pretrained`` below
    # writes the standalone fixed module instead and points auto_map at it.
    _auto_class = None

    def __reduce__(self) -> Tuple[Any, ...]:
        base = type(self)._glm4_tokfix_base
        state = self.__getstate__() if hasattr(self, "__getstate__") else self.__dict__
        return (_rebuild_patched, (base.__module__, base.__qualname__), state)

    def _save_pretrained(
        self,
        save_directory: Any,
        file_names: Tuple[str, ...],
        legacy_format: Optional[bool] = None,
        filename_prefix: Optional[str] = None,
    ) -> Tuple[str, ...]:
        files = super()._save_pretrained(  # type: ignore[misc]  # the patched class's tokenizer base has it
            save_directory=save_directory,
            file_names=file_names,
            legacy_format=legacy_format,
            filename_prefix=filename_prefix,
        )
        from transformers import PreTrainedTokenizerFast

        from glm4_tokfix import model_folder

        config_name = (filename_prefix + "-" if filename_prefix else "") + model_folder.CONFIG_FILE
        fast = isinstance(self, PreTrainedTokenizerFast)
        base = type(self)._glm4_tokfix_base
        host_file, host_class = _host_source(base)
        written = model_folder.point_saved_folder_at_fix(
            os.fspath(save_directory), config_name, fast=fast, host_file=host_file, host_class=host_class,
            host_config=_host_init_values(self, base) if host_file else None,
        )  # fmt: skip
        return tuple(files) + tuple(written)


def _host_source(base: type) -> Tuple[Optional[str], Optional[str]]:
    """(module file, class name) of ``base`` when it is remote code that is not glm-4-9b-chat's class (GLM-4V-9B):
    what a saved folder must keep to load the same class with the fix over it. (None, None) otherwise."""
    if not (base.__module__ or "").startswith("transformers_modules"):
        return None, None
    import inspect

    from glm4_tokfix import model_folder

    try:
        source = inspect.getsourcefile(base)
    except TypeError:
        return None, None
    if source is None or model_folder.class_source_problem(source, base.__name__) is None:
        return None, None
    return source, base.__name__


def _host_init_values(tokenizer: Any, base: type) -> Dict[str, Any]:
    """The ``__init__`` arguments of ``base`` beyond glm-4-9b-chat's that ``tokenizer`` keeps as attributes of the
    same name (GLM-4V-9B's ``image_size``): transformers' save leaves them out of the config, a reload needs them."""
    import inspect

    from glm4_tokfix import model_folder

    try:
        parameters = inspect.signature(base.__init__).parameters.values()  # type: ignore[misc]  # the class's own __init__ is what we read
    except (TypeError, ValueError):
        return {}
    values = {}
    for p in parameters:
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in model_folder.CHAT_CLASS_INIT:
            value = getattr(tokenizer, p.name, None)
            if isinstance(value, (str, int, float, bool)):
                values[p.name] = value
    return values


def patched_class(base: type) -> type:
    """The patched class for ``base`` (``class Patched(GLM4FixMixin, base)``), built once per class.

    The fix replaces the spec hooks only (``GLM4_SPEC_HOOKS``); every other method ``base``'s own code
    defines stays ``base``'s (GLM-4V-9B's ``apply_chat_template`` with its images, for one).

    The class keeps ``base``'s ``__name__`` (what transformers writes as
    ``tokenizer_class``); its qualified name says it is patched::

        >>> patched_class(type(upstream_tok)).__qualname__
        'Patched[transformers_modules....tokenization_chatglm.ChatGLM4Tokenizer]'
    """
    if not isinstance(base, type):
        raise TypeError(f"patched_class() needs a class, got {_describe(base)}")
    with _LOCK:
        cls = _PATCHED_CLASSES.get(base)
        if cls is None:
            from transformers import PreTrainedTokenizerFast

            from glm4_tokfix.remote_code.tokenization_glm4_tokfix import glm4_fixed_class

            mixin: type  # the slow or the fast fix
            if issubclass(base, PreTrainedTokenizerFast):
                from glm4_tokfix.remote_code.tokenization_glm4_tokfix_fast import GLM4FastFixMixin as mixin
            else:
                from glm4_tokfix.remote_code.tokenization_glm4_tokfix import GLM4FixMixin as mixin

            namespace = {
                "__module__": __name__,
                "__qualname__": f"Patched[{base.__module__}.{base.__qualname__}]",
                "__doc__": f"{base.__name__} with the glm4-tokfix fix laid over it (see glm4_tokfix.patch).",
                "_glm4_tokfix_base": base,
            }
            cls = glm4_fixed_class(_without_own_prepare(base), mixin, namespace, first=(_PatchedTokenizer,))
            _PATCHED_CLASSES[base] = cls
        return cls


def _without_own_prepare(base: type) -> type:
    """``base``, or when it defines ``prepare_for_model`` itself a subclass whose ``prepare_for_model`` skips it.

    The fix does what an upstream override of ``prepare_for_model`` does (``glm4-tokfix export --minimal``'s
    leaves a text's own ``[gMASK]<sop>`` out of the special tokens), so running both would take the prefix off
    twice.
    """
    if "prepare_for_model" not in base.__dict__:
        return base

    def prepare_for_model(self: Any, *args: Any, **kwargs: Any) -> Any:
        return super(base, self).prepare_for_model(*args, **kwargs)  # type: ignore[arg-type]  # base is a class (mypy wants a class name here)

    return type(base.__name__, (base,), {"__module__": base.__module__, "__qualname__": base.__qualname__,
                                         "prepare_for_model": prepare_for_model})  # fmt: skip


def patch(tokenizer: T) -> T:
    """Fix a loaded GLM-4 tokenizer in place and return it.

    Works on every upstream revision (the current one, whose ``_pad`` ignores
    ``padding_side``, and the mid-2024 one, whose ``_pad`` has no
    ``padding_side`` parameter and asserts left padding). Patching a tokenizer
    that already carries the fix changes nothing. Anything that is not a
    GLM-4 tokenizer is a ``TypeError`` naming what it got::

        >>> tok = AutoTokenizer.from_pretrained(glm4_dir, trust_remote_code=True)
        >>> glm4_tokfix.patch(tok) is tok and glm4_tokfix.is_patched(tok)
        True
        >>> glm4_tokfix.patch(BertTokenizer(vocab_file))
        Traceback (most recent call last):
        TypeError: glm4_tokfix.patch() needs a GLM-4 tokenizer, got transformers...BertTokenizer: ...
    """
    if is_patched(tokenizer):
        return tokenizer
    problem = glm4_problem(tokenizer)
    if problem is not None:
        raise TypeError(f"glm4_tokfix.patch() needs a GLM-4 tokenizer, got {_describe(tokenizer)}: {problem}")
    tokenizer.__class__ = patched_class(type(tokenizer))
    return tokenizer


def _import_class(module: str, qualname: str) -> type:
    """Find a class by module and qualified name, making transformers' remote-code modules importable."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError:
        if not module.startswith("transformers_modules"):
            raise
        # A fresh process (e.g. a spawned worker) has not put HF_MODULES_CACHE on sys.path yet.
        from transformers.dynamic_module_utils import init_hf_modules

        init_hf_modules()
        importlib.invalidate_caches()
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(
                f"cannot unpickle a patched GLM-4 tokenizer: its class's module {module!r} is not in this "
                f"process's transformers modules cache (load the tokenizer once here first): {exc}"
            ) from exc
    obj: Any = mod
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise TypeError(f"{module}.{qualname} is not a class")
    return obj


def _rebuild_patched(module: str, qualname: str) -> Any:
    """Unpickling helper: an empty instance of the patched class of ``module.qualname``."""
    cls = patched_class(_import_class(module, qualname))
    return cls.__new__(cls)  # type: ignore[call-overload]  # an empty instance, for unpickling


def from_pretrained(name_or_path: Any, *args: Any, **kwargs: Any) -> Any:
    """Load a GLM-4 tokenizer with the fix: ``AutoTokenizer.from_pretrained`` then ``patch``.

    ``trust_remote_code`` defaults to ``True`` (GLM-4 ships its tokenizer as
    remote code); every other argument goes to transformers unchanged. A folder
    or hub id that does not hold a GLM-4 tokenizer is a ``TypeError``::

        >>> tok = glm4_tokfix.from_pretrained("/models/glm-4-9b-chat")
    """
    from transformers import AutoTokenizer

    kwargs.setdefault("trust_remote_code", True)
    return patch(AutoTokenizer.from_pretrained(name_or_path, *args, **kwargs))


# ------------------------------------------------------------ enable/disable
_MISSING = object()


class _Hook:
    """Where ``enable`` put its wrapper, and what it replaced."""

    def __init__(self, owner: type, original: Any, wrapper: Any) -> None:
        self.owner = owner
        self.original = original
        self.wrapper = wrapper
        self.active = True


_HOOK: Optional[_Hook] = None


def _make_wrapper(original: classmethod) -> classmethod:
    """A classmethod that calls ``original`` and patches what it returns when that is a GLM-4 tokenizer."""
    func = original.__func__

    @functools.wraps(func)
    def from_pretrained(cls: type, *args: Any, **kwargs: Any) -> Any:
        hook = _HOOK
        if hook is not None and hook.active and kwargs.get("trust_remote_code") is not True:
            found = _remote_glm4_folder(args[0] if args else kwargs.get("pretrained_model_name_or_path"), kwargs)
            if found is not None:
                path, problem = found
                if problem is not None:
                    raise ValueError(
                        f"{path} holds a GLM-4 tokenizer whose class is not glm-4-9b-chat's: {problem}. "
                        "glm4_tokfix.enable() stands the installed ChatGLM4Tokenizer in only for glm-4-9b-chat's "
                        "own class; load this folder with trust_remote_code=True (the fix is then laid over its "
                        "own class, which keeps what that class does)"
                    )
                return _load_installed_fix(args, kwargs)
        tokenizer = func(cls, *args, **kwargs)
        if hook is not None and hook.active and not is_patched(tokenizer) and glm4_problem(tokenizer) is None:
            patch(tokenizer)
        return tokenizer

    return classmethod(from_pretrained)


#: the keyword arguments ``AutoTokenizer.from_pretrained`` takes for itself (4.x and 5.x) and a tokenizer
#: class's ``from_pretrained`` does not
_AUTO_ONLY_KWARGS = ("config", "use_fast", "tokenizer_type", "trust_remote_code", "mistral_format", "code_revision")


def remote_glm4_folder(name_or_path: Any, kwargs: Optional[Dict[str, Any]] = None) -> Optional[str]:
    """The folder's path when ``name_or_path`` is a local glm-4-9b-chat remote-code tokenizer folder, else None.

    That is a folder (``subfolder`` in ``kwargs`` is followed) that ``glm4-tokfix patch`` recognises as the
    ``"remote"`` kind -- ``tokenizer.model``, the GLM-4 added tokens, and ``auto_map.AutoTokenizer`` naming a
    ``ChatGLM4Tokenizer`` class (upstream's ``tokenization_chatglm.ChatGLM4Tokenizer``, or ours once patched).
    Only glm-4-9b-chat's own class counts (``model_folder.remote_class_problem``: its known revisions); a folder
    of GLM-4V-9B, CogAgent or any class with more in it gives None. Hub ids and every other folder give None.
    Never raises.
    """
    found = _remote_glm4_folder(name_or_path, kwargs)
    return found[0] if found is not None and found[1] is None else None


def _remote_glm4_folder(
    name_or_path: Any, kwargs: Optional[Dict[str, Any]] = None
) -> Optional[Tuple[str, Optional[str]]]:
    """``(path, None)`` for a glm-4-9b-chat remote-code folder, ``(path, why not)`` for a GLM-4 remote-code
    folder of another class (``model_folder.remote_class_problem``), None for anything else. Never raises."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        return None
    path = os.fspath(name_or_path)
    subfolder = (kwargs or {}).get("subfolder")
    if isinstance(subfolder, str) and subfolder:
        path = os.path.join(path, subfolder)
    if not os.path.isdir(path):
        return None
    from glm4_tokfix import model_folder

    try:
        info = model_folder.inspect_folder(path)
    except (OSError, ValueError):
        return None
    if info.kind != "remote" or model_folder.slow_class_ref(info.auto_tokenizer) is None:
        return None
    try:
        return path, model_folder.remote_class_problem(info)
    except Exception as exc:
        return path, f"its class could not be read ({type(exc).__name__}: {exc})"


def _load_installed_fix(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    """``glm4_tokfix.ChatGLM4Tokenizer`` (this package's code) on a remote-code folder; nothing of the folder runs."""
    from glm4_tokfix.remote_code.tokenization_glm4_tokfix import ChatGLM4Tokenizer

    kwargs = {k: v for k, v in kwargs.items() if k not in _AUTO_ONLY_KWARGS}
    return ChatGLM4Tokenizer.from_pretrained(*args, **kwargs)


class EnableHandle:
    """Returned by ``enable()``. As a context manager, its exit undoes that ``enable()``.

    Exiting restores the state before the ``enable()`` call: if the fix was
    already enabled then, it stays enabled (so nested ``with`` blocks are fine).
    """

    def __init__(self, was_enabled: bool) -> None:
        self.was_enabled = was_enabled

    def __enter__(self) -> EnableHandle:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if not self.was_enabled:
            disable()

    def __repr__(self) -> str:
        return f"<glm4_tokfix.enable() handle, enabled={is_enabled()}, was_enabled={self.was_enabled}>"


def is_enabled() -> bool:
    """True between ``enable()`` and ``disable()`` (and while nobody has put transformers' method back)."""
    hook = _HOOK
    if hook is None or not hook.active:
        return False
    return hook.owner.__dict__.get("from_pretrained", _MISSING) is not hook.original


def enable() -> EnableHandle:
    """Make ``transformers.AutoTokenizer.from_pretrained`` return fixed GLM-4 tokenizers.

    Every tokenizer it loads is checked with ``glm4_problem``; GLM-4 ones are
    patched, all others come back untouched. A local glm-4-9b-chat remote-code
    folder (``remote_glm4_folder``) loaded without ``trust_remote_code=True``
    gives ``glm4_tokfix.ChatGLM4Tokenizer``, this package's code: nothing from
    the folder runs (transformers 5 would build a generic fast tokenizer from
    ``tokenizer.model`` that never adds ``[gMASK]<sop>``; 4.x refuses the folder).
    Enabling twice changes nothing.
    Usable as a context manager::

        >>> with glm4_tokfix.enable():
        ...     tok = AutoTokenizer.from_pretrained(glm4_dir, trust_remote_code=True)
        >>> glm4_tokfix.is_patched(tok)
        True
    """
    global _HOOK
    with _LOCK:
        hook = _HOOK
        if hook is not None:
            current = hook.owner.__dict__.get("from_pretrained", _MISSING)
            was = hook.active and current is not hook.original
            if current is hook.original:  # someone put transformers' own method back: wrap it again
                setattr(hook.owner, "from_pretrained", hook.wrapper)  # noqa: B010 -- a classmethod onto a class
            hook.active = True
            return EnableHandle(was_enabled=was)
        from transformers import AutoTokenizer

        original = AutoTokenizer.__dict__.get("from_pretrained", _MISSING)
        if not isinstance(original, classmethod):  # pragma: no cover - transformers always defines one
            raise RuntimeError("transformers.AutoTokenizer has no from_pretrained classmethod of its own to wrap")
        wrapper = _make_wrapper(original)
        _HOOK = _Hook(AutoTokenizer, original, wrapper)
        setattr(AutoTokenizer, "from_pretrained", wrapper)  # noqa: B010 -- a classmethod onto a class
        return EnableHandle(was_enabled=False)


def disable() -> None:
    """Undo ``enable()``: ``AutoTokenizer.from_pretrained`` is transformers' own object again.

    Harmless when not enabled. If something else wrapped
    ``AutoTokenizer.from_pretrained`` after ``enable()``, that wrapper is left
    in place (removing it would break its owner) and ours inside it just stops
    patching; a ``RuntimeWarning`` says so.
    """
    global _HOOK
    with _LOCK:
        hook = _HOOK
        if hook is None:
            return
        current = hook.owner.__dict__.get("from_pretrained", _MISSING)
        if current is hook.wrapper:
            setattr(hook.owner, "from_pretrained", hook.original)  # noqa: B010 -- a classmethod onto a class
            _HOOK = None
            return
        hook.active = False
        if current is not hook.original:
            warnings.warn(
                "glm4_tokfix.disable(): AutoTokenizer.from_pretrained was wrapped again after enable(); "
                "leaving that wrapper in place, the glm4-tokfix hook inside it no longer patches",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            _HOOK = None
