"""Make a GLM-4 model folder load the fixed tokenizer, undo that, or export the module for upstream.

``glm4-tokfix patch MODEL_DIR``
    Writes the fix's bundle (``glm4_tokfix/remote_code``: ``tokenization_glm4_tokfix.py``
    and the small modules it imports relatively) into the folder (upstream's
    ``tokenization_chatglm.py`` stays) and points ``auto_map.AutoTokenizer`` in
    ``tokenizer_config.json`` at its ``ChatGLM4Tokenizer``. The original ``tokenizer_config.json`` is kept
    as ``tokenizer_config.json.glm4-tokfix-orig`` (the very same file: a hard
    link when the file system allows, else an exact copy). Afterwards plain
    ``AutoTokenizer.from_pretrained(MODEL_DIR, trust_remote_code=True)`` -- and
    so vLLM, SGLang, LLaMA-Factory, TGI or any script -- loads the fixed
    tokenizer, without glm4-tokfix installed. Running it again refreshes the
    module (e.g. after upgrading glm4-tokfix) and changes nothing else.

``glm4-tokfix unpatch MODEL_DIR``
    Puts the original ``tokenizer_config.json`` back and removes the bundle:
    the folder is byte for byte what it was. If ``tokenizer_config.json`` was
    edited after patching, those edits are kept and only ``auto_map`` is
    restored (said on stdout).

``glm4-tokfix export OUT_DIR``
    Writes the bundle's files into ``OUT_DIR`` (for the model repository: point
    ``auto_map.AutoTokenizer`` at ``tokenization_glm4_tokfix.ChatGLM4Tokenizer``). An
    existing different file there is replaced only with ``--force``.

``glm4-tokfix export --minimal MODEL_DIR OUT_DIR``
    Writes ``OUT_DIR/tokenization_chatglm.py``, MODEL_DIR's own upstream file
    with only the seed bug fixed, and ``OUT_DIR/tokenization_chatglm.py.diff``
    (``glm4_tokfix.minimal_patch``).

Every change is atomic: files are written under temporary names in the same
folder and moved into place with ``os.replace``; if any step fails, the steps
already taken are undone, so the folder is left exactly as it was. A folder
that is missing, read-only or not a GLM-4 tokenizer folder is a one-line error
on stderr and exit code 1, with nothing changed.

This module imports nothing heavy: ``glm4-tokfix --help`` stays fast.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

from glm4_tokfix.folder_io import PathLike, Transaction, check_writable, existing_folder
from glm4_tokfix.remote_code import BUNDLE_FILES, FAST_MODULE, SLOW_MODULE, bundle_bytes
from glm4_tokfix.remote_code.glm4_tokens import REQUIRED_TOKENS

__all__ = [
    "BACKUP_FILE",
    "CLASS_REF",
    "CONFIG_FILE",
    "EXPORT_FILE",
    "MODULE_FILE",
    "FolderInfo",
    "existing_folder",
    "export_module",
    "fixed_module_bytes",
    "inspect_folder",
    "patch_folder",
    "point_saved_folder_at_fix",
    "unpatch_folder",
]

CONFIG_FILE = "tokenizer_config.json"
VOCAB_FILE = "tokenizer.model"
MODULE_NAME = SLOW_MODULE
MODULE_FILE = MODULE_NAME + ".py"
CLASS_NAME = "ChatGLM4Tokenizer"
CLASS_REF = f"{MODULE_NAME}.{CLASS_NAME}"
#: what ``auto_map.AutoTokenizer`` becomes: our slow class, no fast class
AUTO_MAP_ENTRY = [CLASS_REF, None]
BACKUP_FILE = CONFIG_FILE + ".glm4-tokfix-orig"
#: every patched folder, slow or fast, holds the whole bundle (the modules import each other as ``from .X``)
FAST_JSON_FILE = "tokenizer.json"
FAST_CLASS_NAME = "ChatGLM4TokenizerFast"
FAST_CLASS_REF = f"{FAST_MODULE}.{FAST_CLASS_NAME}"
FAST_SLOW_CLASS_REF = CLASS_REF
#: upstream's remote-code file (``export --minimal`` patches it); glm4-tokfix never writes a file of this name
#: except that minimal patch
EXPORT_FILE = "tokenization_chatglm.py"
UPSTREAM_CLASS_REF = "tokenization_chatglm.ChatGLM4Tokenizer"
#: a folder whose own class is not glm-4-9b-chat's (GLM-4V-9B, CogAgent) gets this entry module besides the
#: bundle: the folder's own class with the fix laid over it (``host_module_bytes``)
HOST_MODULE_NAME = "tokenization_glm4_tokfix_host"
HOST_MODULE_FILE = HOST_MODULE_NAME + ".py"
#: what fast folders patched before the bundle held and pointed at (recognised by ``unpatch`` and ``patch``)
_LEGACY_FAST_FILES = ("tokenization_chatglm.py", "tokenization_chatglm_fast.py")
_LEGACY_FAST_CLASS_REF = "tokenization_chatglm_fast." + FAST_CLASS_NAME
# every version of our modules carries one of these (the host entry: its glm4_fixed_class line); a file without
# any is not ours to overwrite
_MODULE_MARKERS = (
    b"class GLM4FixMixin", b"class GLM4FastFixMixin", b"# Copyright 2026 the glm4-tokfix authors.",
    b"= glm4_fixed_class(",
)  # fmt: skip


def fixed_module_bytes() -> bytes:
    """The bytes of the bundle's slow module ``tokenization_glm4_tokfix.py`` (not imported)."""
    return bundle_bytes()[MODULE_FILE]


def host_module_bytes(host_ref: str) -> bytes:
    """The entry module of a folder whose own class (``host_ref``, ``"module.Class"``) is not glm-4-9b-chat's:
    that class with the fix laid over it (``glm4_fixed_class``: the spec hooks are the fix's, every other method
    the class defines -- GLM-4V-9B's ``apply_chat_template`` -- stays its own).

    It imports every bundle module the fix needs itself (``bundle_needs``): transformers 4.x copies only the
    files a local remote-code module imports directly.
    """
    module, _, name = host_ref.rpartition(".")
    needs = "".join(
        f"from .{need} import __name__ as _{need}  # noqa: F401\n" for need in sorted(bundle_needs(MODULE_NAME))
    )
    return (
        f'''# Written by glm4-tokfix patch (undo with: glm4-tokfix unpatch MODEL_DIR).
"""This folder's own tokenizer class, {host_ref}, with the glm4-tokfix fix laid over it.

The fix (``{MODULE_FILE}``) replaces the special-token, padding, truncation and decode hooks; every other
method the class defines (its own ``apply_chat_template``, say) stays the class's own.
"""

from .{module} import {name} as _Host
from .{MODULE_NAME} import glm4_fixed_class

# transformers 4.x copies only the files this module imports itself: every bundle module the fix needs
{needs}
{name} = glm4_fixed_class(_Host, namespace={{"__module__": __name__, "__qualname__": "{name}"}})
'''
    ).encode()


_RELATIVE_IMPORT = re.compile(rb"^\s*from\s+\.(\w+)\s+import", re.M)


def bundle_needs(module: str) -> Set[str]:
    """The bundle modules ``module`` (a bundle module's name) imports, directly or through each other."""
    files = bundle_bytes()
    needed: Set[str] = set()
    todo = [m.decode() for m in _RELATIVE_IMPORT.findall(files[module + ".py"])]
    while todo:
        name = todo.pop()
        if name not in needed and name + ".py" in files:
            needed.add(name)
            todo.extend(m.decode() for m in _RELATIVE_IMPORT.findall(files[name + ".py"]))
    return needed


_HOST_IMPORT = re.compile(rb"^from \.(\S+) import (\w+) as _Host$", re.M)


def _host_ref_of_entry(path: Path) -> Optional[str]:
    """The host class a ``HOST_MODULE_FILE`` written by ``host_module_bytes`` lays the fix over, or None."""
    match = _HOST_IMPORT.search(_read_or_none(path) or b"")
    return f"{match.group(1).decode()}.{match.group(2).decode()}" if match else None


def fast_module_files() -> Dict[str, bytes]:
    """The files a fixed folder holds, slow or fast: the whole bundle, by name."""
    return bundle_bytes()


# ------------------------------------------------------------------ inspection
@dataclass
class FolderInfo:
    """What ``inspect_folder`` found in a GLM-4 tokenizer folder."""

    path: Path
    config: Dict[str, Any]
    config_bytes: bytes
    auto_tokenizer: Any  # the auto_map.AutoTokenizer entry as found
    #: "remote" (glm-4-9b-chat: tokenizer.model + remote code) or "fast" (tokenizer.json, transformers-native)
    kind: str = "remote"
    #: a "remote" folder whose own class is not glm-4-9b-chat's (GLM-4V-9B): that class, ``"module.Class"``,
    #: which patching keeps and lays the fix over (``HOST_MODULE_FILE``)
    host_ref: Optional[str] = None

    @property
    def patched(self) -> bool:
        """True when ``auto_map.AutoTokenizer`` already points at our module."""
        if self.kind == "fast":
            return _fast_ref(self.auto_tokenizer) in (FAST_CLASS_REF, _LEGACY_FAST_CLASS_REF)
        return _slow_ref(self.auto_tokenizer) in (CLASS_REF, self._host_class_ref())

    def _host_class_ref(self) -> Optional[str]:
        return f"{HOST_MODULE_NAME}.{self.host_ref.rpartition('.')[2]}" if self.host_ref else None

    @property
    def legacy(self) -> bool:
        """True for a fast folder patched before the bundle (``tokenization_chatglm_fast.py`` beside ours)."""
        return self.kind == "fast" and _fast_ref(self.auto_tokenizer) == _LEGACY_FAST_CLASS_REF

    def modules(self) -> Dict[str, bytes]:
        """The fixed module files this folder gets, by name: the whole bundle (and, over a host class, the
        host entry module ``HOST_MODULE_FILE``)."""
        if self.kind == "remote" and self.host_ref:
            return {**bundle_bytes(), HOST_MODULE_FILE: host_module_bytes(self.host_ref)}
        return bundle_bytes()

    def auto_map_entry(self) -> List[Optional[str]]:
        """What ``auto_map.AutoTokenizer`` becomes when patched."""
        if self.kind == "fast":
            return fast_auto_map_entry(self.path)
        return [self._host_class_ref(), None] if self.host_ref else list(AUTO_MAP_ENTRY)

    def class_ref(self) -> str:
        return FAST_CLASS_REF if self.kind == "fast" else self._host_class_ref() or CLASS_REF


def _fast_ref(entry: Any) -> Optional[str]:
    if isinstance(entry, (list, tuple)) and len(entry) > 1 and isinstance(entry[1], str):
        return entry[1]
    return None


def slow_class_ref(entry: Any) -> Optional[str]:
    """The slow class named by an ``auto_map.AutoTokenizer`` entry (``"mod.Class"`` or ``[slow, fast]``), or None."""
    return _slow_ref(entry)


def _slow_ref(entry: Any) -> Optional[str]:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, (list, tuple)) and entry and isinstance(entry[0], str):
        return entry[0]
    return None


def _read_config(path: Path) -> tuple:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OSError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        config = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a JSON object (got {type(config).__name__})")
    return config, data


def registered_tokens(folder: PathLike, config: Dict[str, Any]) -> set:
    """The added tokens a tokenizer folder registers: ``config``'s ``added_tokens_decoder`` and, when that lacks
    the GLM-4 ones, ``tokenizer.json``'s ``added_tokens`` (transformers 5's ``save_pretrained`` writes a fast
    tokenizer's added tokens only there)."""
    contents = set()
    added = config.get("added_tokens_decoder")
    if isinstance(added, dict):
        contents = {v.get("content") if isinstance(v, dict) else v for v in added.values()}
    json_path = Path(folder) / FAST_JSON_FILE
    if all(t in contents for t in REQUIRED_TOKENS) or not json_path.is_file():
        return contents
    try:
        with open(json_path, "rb") as handle:
            tokenizer = json.loads(handle.read().decode("utf-8"))
    except OSError as exc:
        raise OSError(f"cannot read {json_path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{json_path} is not valid JSON ({exc})") from None
    entries = tokenizer.get("added_tokens") if isinstance(tokenizer, dict) else None
    if isinstance(entries, list):
        contents |= {e.get("content") for e in entries if isinstance(e, dict)}
    return contents


def inspect_folder(folder: PathLike) -> FolderInfo:
    """Check that ``folder`` holds a GLM-4 tokenizer and read its config.

    It registers ``[gMASK]``, ``<sop>`` and ``<|endoftext|>`` as added tokens
    (``tokenizer_config.json``'s ``added_tokens_decoder``, or ``tokenizer.json``'s
    ``added_tokens`` in a fast folder saved by transformers 5), and it is one of two kinds:

    * ``"remote"`` (glm-4-9b-chat): ``tokenizer.model``, and
      ``auto_map.AutoTokenizer`` names the remote-code class;
    * ``"fast"`` (glm-4-9b-chat-hf, GLM-4-0414, GLM-4.5): ``tokenizer.json`` and
      no remote code of its own (or ours, once patched).

    Raises ``OSError`` (missing or unreadable) or ``ValueError`` (anything
    else), naming the problem.
    """
    path = existing_folder(folder)
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise ValueError(f"{path} is not a GLM-4 tokenizer folder: it has no {CONFIG_FILE}")
    config, data = _read_config(config_path)
    missing = [t for t in REQUIRED_TOKENS if t not in registered_tokens(path, config)]
    if missing:
        also = f" (nor {FAST_JSON_FILE} in added_tokens)" if (path / FAST_JSON_FILE).is_file() else ""
        raise ValueError(
            f"{path} is not a GLM-4 tokenizer folder: {CONFIG_FILE} does not register {', '.join(missing)} "
            f"in added_tokens_decoder{also}"
        )
    auto_map = config.get("auto_map")
    entry = auto_map.get("AutoTokenizer") if isinstance(auto_map, dict) else None
    has_json = (path / FAST_JSON_FILE).is_file()
    if has_json and _fast_ref(entry) in (
        FAST_CLASS_REF,
        _LEGACY_FAST_CLASS_REF,
    ):  # a tokenizer.json folder patched by us
        return FolderInfo(path=path, config=config, config_bytes=data, auto_tokenizer=entry, kind="fast")
    if (path / VOCAB_FILE).is_file() and _slow_ref(entry) is not None:
        info = FolderInfo(path=path, config=config, config_bytes=data, auto_tokenizer=entry, kind="remote")
        info.host_ref = _host_ref(info)
        return info
    if has_json:
        if entry is not None:
            raise ValueError(
                f"{path} maps AutoTokenizer to remote code of its own ({entry!r}); glm4-tokfix patches "
                f"tokenizer.json folders that load transformers' built-in fast tokenizer"
            )
        return FolderInfo(path=path, config=config, config_bytes=data, auto_tokenizer=entry, kind="fast")
    if not (path / VOCAB_FILE).is_file():
        raise ValueError(f"{path} is not a GLM-4 tokenizer folder: it has no {VOCAB_FILE} or {FAST_JSON_FILE}")
    raise ValueError(
        f"{path} is not a GLM-4 remote-code tokenizer folder: {CONFIG_FILE} has no auto_map.AutoTokenizer class"
    )


# ------------------------------------------------------- the folder's own class
#: The methods glm-4-9b-chat's own ``ChatGLM4Tokenizer`` defines in the revisions glm4-tokfix knows (the current
#: one and mid-2024's; ``prepare_for_model`` is ``export --minimal``'s): a class defining anything else (GLM-4V-9B's
#: ``apply_chat_template``, say) is another checkpoint's class.
CHAT_CLASS_METHODS = frozenset({
    "__init__", "vocab_size", "get_vocab", "convert_tokens_to_string", "_tokenize", "_convert_token_to_id",
    "_convert_id_to_token", "save_vocabulary", "get_prefix_tokens", "get_command", "build_single_message",
    "build_inputs_with_special_tokens", "_pad", "prepare_for_model",
})  # fmt: skip
#: ... and the ``__init__`` parameters it takes (``**kwargs`` aside)
CHAT_CLASS_INIT = frozenset(
    {"self", "vocab_file", "padding_side", "clean_up_tokenization_spaces", "encode_special_tokens"}
)
#: ``tokenizer_config.json`` keys that only other checkpoints' classes read (GLM-4V-9B and CogAgent-9B: image_size)
OTHER_CLASS_CONFIG_KEYS = ("image_size",)


def _host_ref(info: FolderInfo) -> Optional[str]:
    """The class ``patch_folder`` keeps and lays the fix over: a "remote" folder's own class when it is not
    glm-4-9b-chat's and its module is in the folder (for a folder patched so, the one its entry names)."""
    ref = _slow_ref(info.auto_tokenizer) or ""
    if ref.rpartition(".")[0] == HOST_MODULE_NAME:
        return _host_ref_of_entry(info.path / HOST_MODULE_FILE)
    if ref == CLASS_REF or "--" in ref or "." not in ref:
        return None
    if not (info.path / (ref.rpartition(".")[0].replace(".", os.sep) + ".py")).is_file():
        return None
    return ref if remote_class_problem(info) is not None else None


def remote_class_problem(info: FolderInfo) -> Optional[str]:
    """Why a ``"remote"`` folder's own class is not glm-4-9b-chat's (one of its known revisions), or None.

    Read from the folder's files, running nothing: ``tokenizer_config.json`` keys only other classes take
    (``image_size``), and the class's module (parsed, not imported): a method beyond ``CHAT_CLASS_METHODS``
    (such as its own ``apply_chat_template``) or an ``__init__`` parameter beyond ``CHAT_CLASS_INIT``. Our own
    fixed module counts as glm-4-9b-chat's class; a folder whose module file is absent is judged on its config.
    """
    for key in OTHER_CLASS_CONFIG_KEYS:
        if key in info.config:
            return f"its {CONFIG_FILE} sets {key!r}, which glm-4-9b-chat's class does not take (GLM-4V-9B's does)"
    ref = _slow_ref(info.auto_tokenizer)
    if ref is None or "--" in ref or "." not in ref:
        return None if ref is None else f"its auto_map names code of another repository ({ref})"
    module, _, name = ref.rpartition(".")
    if module == HOST_MODULE_NAME:
        return f"its class is another checkpoint's class with the fix laid over it ({HOST_MODULE_FILE})"
    if name != CLASS_NAME:
        return f"auto_map.AutoTokenizer names the class {name!r}, not glm-4-9b-chat's {CLASS_NAME}"
    path = info.path / (module.replace(".", os.sep) + ".py")
    if not path.is_file():
        return None
    path = _reexported_from(path, name) or path  # ``from .other import ChatGLM4Tokenizer``: judge that file
    if _is_our_module(path):  # our bundle's module: glm-4-9b-chat's class, fixed
        return None
    return class_source_problem(path, name)


def _reexported_from(path: Path, name: str) -> Optional[Path]:
    """The sibling file that ``path`` takes the class ``name`` from (``from .other import name``), when ``path``
    does not define it itself; None otherwise (parsed only)."""
    import ast

    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return None
    if any(isinstance(n, ast.ClassDef) and n.name == name for n in tree.body):
        return None
    for node in tree.body:
        if not (isinstance(node, ast.ImportFrom) and node.level == 1 and node.module and "." not in node.module):
            continue
        if any(alias.name == name and alias.asname in (None, name) for alias in node.names):
            target = path.parent / (node.module + ".py")
            return target if target.is_file() else None
    return None


def class_source_problem(path: PathLike, name: str) -> Optional[str]:
    """Why the class ``name`` defined in the Python file ``path`` is not glm-4-9b-chat's, or None (parsed only)."""
    import ast

    path = Path(path)
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError) as exc:
        return f"{path.name} cannot be read as Python ({exc})"
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name]
    if len(classes) != 1:
        return f"{path.name} does not define one class {name}"
    methods = {n.name for n in classes[0].body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    extra = sorted(methods - CHAT_CLASS_METHODS)
    if extra:
        return f"its class {name} in {path.name} defines {', '.join(extra)}, which glm-4-9b-chat's class does not"
    init = next((n for n in classes[0].body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if init is not None:
        params = {a.arg for a in init.args.posonlyargs + init.args.args + init.args.kwonlyargs}
        extra = sorted(params - CHAT_CLASS_INIT)
        if extra:
            return f"its class {name} in {path.name} takes {', '.join(extra)}, which glm-4-9b-chat's class does not"
    return None


def _render_config(config: Dict[str, Any], like: bytes) -> bytes:
    text = json.dumps(config, indent=2, ensure_ascii=False)
    if like.endswith(b"\n") or not like:
        text += "\n"
    return text.encode("utf-8")


def _rewrite_auto_tokenizer(data: bytes, config: Dict[str, Any], entry: Any) -> bytes:
    """``data`` (the bytes of ``config``) with ``auto_map.AutoTokenizer`` set to ``entry``.

    When only the class name changes, that one string is replaced in the text,
    so the file keeps its formatting and a diff shows one line; otherwise (or
    if the text replacement would not give exactly the wanted JSON) the config
    is written out again with ``indent=2``.
    """
    wanted = _with_auto_map(config, entry)
    old_ref = _slow_ref((config.get("auto_map") or {}).get("AutoTokenizer"))
    new_ref = _slow_ref(entry)
    text = data.decode("utf-8")
    if old_ref is not None and new_ref is not None:
        needle = json.dumps(old_ref, ensure_ascii=False)
        if text.count(needle) == 1:
            candidate = text.replace(needle, json.dumps(new_ref, ensure_ascii=False))
            try:
                if json.loads(candidate) == wanted:
                    return candidate.encode("utf-8")
            except ValueError:
                pass
    return _render_config(wanted, data)


def _with_auto_map(config: Dict[str, Any], entry: Any) -> Dict[str, Any]:
    """A copy of ``config`` whose ``auto_map.AutoTokenizer`` is ``entry`` (keys keep their order)."""
    new = dict(config)
    auto_map = dict(new.get("auto_map") or {})
    auto_map["AutoTokenizer"] = entry
    new["auto_map"] = auto_map
    return new


def _without_tokenizer_entry(config: Dict[str, Any]) -> Dict[str, Any]:
    new = dict(config)
    auto_map = dict(new.get("auto_map") or {})
    auto_map.pop("AutoTokenizer", None)
    new["auto_map"] = auto_map
    return new


def _is_our_module(path: Path) -> bool:
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return any(marker in data for marker in _MODULE_MARKERS)


def _config_mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# ---------------------------------------------------------------- operations
def patch_folder(folder: PathLike) -> str:
    """Make ``folder`` load the fixed tokenizer through plain ``AutoTokenizer``; returns a one-line summary.

    >>> patch_folder("/models/glm-4-9b-chat")
    'patched /models/glm-4-9b-chat: AutoTokenizer loads tokenization_glm4_tokfix.ChatGLM4Tokenizer ...'

    Every folder gets the whole bundle (``glm4_tokfix.remote_code.BUNDLE_FILES``); a ``tokenizer.json`` folder's
    ``auto_map.AutoTokenizer`` points at ``tokenization_glm4_tokfix_fast.ChatGLM4TokenizerFast``.
    """
    info = inspect_folder(folder)
    path = info.path
    modules = info.modules()
    for name in modules:
        if (path / name).exists() and not _is_our_module(path / name):
            raise ValueError(f"{path / name} exists and was not written by glm4-tokfix; move it away first")
    check_writable(path)
    changed = {name: data for name, data in modules.items() if _read_or_none(path / name) != data}
    tx = Transaction(path)
    try:
        if info.legacy:  # patched the old way: same backup, new auto_map, the old files go
            for name, data in changed.items():
                tx.write(name, data)
            for name in _LEGACY_FAST_FILES:
                if (path / name).exists() and _is_our_module(path / name):
                    tx.remove(name)
            new_config = _rewrite_auto_tokenizer(info.config_bytes, info.config, info.auto_map_entry())
            tx.write(CONFIG_FILE, new_config, mode=_config_mode(path / CONFIG_FILE))
            tx.commit()
            return (
                f"{path} was patched by an older glm4-tokfix; replaced its modules with {_names(modules, verb=False)}"
            )
        if info.patched:
            if not changed:
                return f"{path} is already patched and its {_names(modules)} up to date; nothing changed"
            for name, data in changed.items():
                tx.write(name, data)
            tx.commit()
            return f"{path} was already patched; refreshed {_names(changed)} to this glm4-tokfix version"
        new_config = _rewrite_auto_tokenizer(info.config_bytes, info.config, info.auto_map_entry())
        for name, data in changed.items():
            tx.write(name, data)
        tx.copy(BACKUP_FILE, CONFIG_FILE)
        tx.write(CONFIG_FILE, new_config, mode=_config_mode(path / CONFIG_FILE))
        tx.commit()
    finally:
        tx.discard()
    summary = (
        f"patched {path}: AutoTokenizer now loads {info.class_ref()} from {_names(modules, verb=False)} "
        f"(original config kept as {BACKUP_FILE}; undo with: glm4-tokfix unpatch {path})"
    )
    if info.kind == "fast":
        summary += (
            ". Load it with AutoTokenizer.from_pretrained(path, trust_remote_code=True) (vLLM/SGLang: "
            "--trust-remote-code); without trust_remote_code transformers loads its built-in class, unfixed "
            "(unless glm4_tokfix.enable() or, in vLLM, the glm4-tokfix plugin is active)"
        )
    return summary


def _read_or_none(path: Path) -> Optional[bytes]:
    return path.read_bytes() if path.is_file() else None


def _names(files: Dict[str, Any], verb: bool = True) -> str:
    names = " and ".join(sorted(files))
    if not verb:
        return names
    return names + (" is" if len(files) == 1 else " are")


def unpatch_folder(folder: PathLike) -> str:
    """Undo ``patch_folder``: the folder is byte for byte what it was; returns a one-line summary."""
    info = inspect_folder(folder)
    path = info.path
    backup_path = path / BACKUP_FILE
    names = list(info.modules()) + [n for n in _LEGACY_FAST_FILES if info.legacy]
    ours = [name for name in names if (path / name).exists() and _is_our_module(path / name)]
    tx = Transaction(path)
    try:
        if not info.patched:
            leftovers = [p.name for p in (backup_path,) if os.path.lexists(p)] + ours
            if not leftovers:
                return f"{path} is not patched; nothing changed"
            check_writable(path)
            for name in leftovers:
                tx.remove(name)
            tx.commit()
            return f"{path} is not patched; removed leftover {', '.join(leftovers)}"
        if not os.path.lexists(backup_path):
            hint = f"e.g. to {UPSTREAM_CLASS_REF}" if info.kind == "remote" else "or remove auto_map.AutoTokenizer"
            raise ValueError(
                f"cannot unpatch {path}: its original config {BACKUP_FILE} is missing "
                f"(set auto_map.AutoTokenizer in {CONFIG_FILE} back by hand, {hint})"
            )
        backup, _ = _read_config(backup_path)
        check_writable(path)
        untouched = _without_tokenizer_entry(info.config) == _without_tokenizer_entry(backup)
        if untouched:
            tx.copy(CONFIG_FILE, BACKUP_FILE)
        else:
            original_auto_map = backup.get("auto_map")
            if isinstance(original_auto_map, dict) and "AutoTokenizer" in original_auto_map:
                new_config = _rewrite_auto_tokenizer(info.config_bytes, info.config, original_auto_map["AutoTokenizer"])
            else:  # the original had no AutoTokenizer entry (a tokenizer.json folder): take ours out again
                restored = _without_tokenizer_entry(info.config)
                if not restored["auto_map"] and "auto_map" not in backup:
                    del restored["auto_map"]
                new_config = _render_config(restored, info.config_bytes)
            tx.write(CONFIG_FILE, new_config, mode=_config_mode(path / CONFIG_FILE))
        tx.remove(BACKUP_FILE)
        for name in ours:
            tx.remove(name)
        tx.commit()
    finally:
        tx.discard()
    removed = " and ".join(ours) or "nothing else"
    if untouched:
        return f"unpatched {path}: restored the original {CONFIG_FILE} and removed {removed}"
    return (
        f"unpatched {path}: {CONFIG_FILE} was edited after patching, so those edits are kept and only "
        f"auto_map.AutoTokenizer was restored; removed {removed}"
    )


def export_module(out_dir: PathLike, force: bool = False) -> List[Path]:
    """Write the bundle's files (``BUNDLE_FILES``) into ``out_dir`` (and nothing else); return their paths.

    ``out_dir`` is created when missing. Existing files with other bytes are
    replaced only with ``force=True`` (``FileExistsError`` otherwise, naming the first).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(out))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot create the folder ({exc.strerror})", str(out)) from None
    files = bundle_bytes()
    changed = {name: data for name, data in files.items() if _read_or_none(out / name) != data}
    paths = [out / name for name in BUNDLE_FILES]
    if not changed:
        return paths
    clash = [name for name in changed if os.path.lexists(out / name)]
    if clash and not force:
        raise FileExistsError(
            errno.EEXIST,
            f"{clash[0]} already exists with other contents (pass --force to replace it)",
            str(out / clash[0]),
        )
    check_writable(out)
    tx = Transaction(out)
    try:
        for name, data in changed.items():
            tx.write(name, data)
        tx.commit()
    finally:
        tx.discard()
    return paths


def fast_auto_map_entry(folder: PathLike) -> List[Optional[str]]:
    """``auto_map.AutoTokenizer`` for a fixed ``tokenizer.json`` folder: our slow class too when it has a vocabulary."""
    slow = FAST_SLOW_CLASS_REF if (Path(folder) / VOCAB_FILE).is_file() else None
    return [slow, FAST_CLASS_REF]


def point_saved_folder_at_fix(
    folder: PathLike, config_name: str = CONFIG_FILE, fast: bool = False, host_file: Optional[PathLike] = None,
    host_class: Optional[str] = None, host_config: Optional[Dict[str, Any]] = None,
) -> List[str]:  # fmt: skip
    """Make a folder just written by ``save_pretrained`` load the fixed class; return the files added.

    Used by patched tokenizers' ``save_pretrained``: writes the whole bundle (``BUNDLE_FILES``) and
    sets ``auto_map.AutoTokenizer`` (and for a slow one ``tokenizer_class``) in the saved config (no backup: the
    config is new). A fast folder keeps transformers' own ``tokenizer_class``, so plain ``AutoTokenizer`` loads it
    without remote code, as a folder from ``glm4-tokfix patch``.
    ``host_file``/``host_class``: the tokenizer's own class is not glm-4-9b-chat's (GLM-4V-9B); its module is
    copied too and the folder loads it with the fix laid over it (``HOST_MODULE_FILE``), as ``patch_folder`` does;
    ``host_config`` entries (the class's own ``__init__`` arguments, such as ``image_size``) go into the config.
    """
    path = Path(folder)
    config_path = path / config_name
    config, data = _read_config(config_path)
    modules = bundle_bytes()
    if host_file is not None and host_class:
        host_module = Path(host_file).stem
        host_ref = f"{host_module}.{host_class}"
        modules[HOST_MODULE_FILE] = host_module_bytes(host_ref)
        modules[host_module + ".py"] = Path(host_file).read_bytes()
        config = _with_auto_map(config, [f"{HOST_MODULE_NAME}.{host_class}", None])
        config["tokenizer_class"] = host_class
        for key, value in (host_config or {}).items():
            config.setdefault(key, value)
    elif fast:
        config = _with_auto_map(config, fast_auto_map_entry(path))  # tokenizer_class stays transformers' own
    else:
        config = _with_auto_map(config, AUTO_MAP_ENTRY)
        config["tokenizer_class"] = CLASS_NAME
    text = json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    tx = Transaction(path)
    try:
        for name, data in modules.items():
            tx.write(name, data)
        tx.write(config_name, text.encode("utf-8"), mode=_config_mode(config_path))
        tx.commit()
    finally:
        tx.discard()
    return [str(path / name) for name in modules]
