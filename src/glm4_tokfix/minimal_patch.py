"""The minimal upstream patch: fix exactly the seed bug in a model folder's own ``tokenization_chatglm.py``.

``glm4-tokfix export --minimal MODEL_DIR OUT_DIR`` reads ``MODEL_DIR/tokenization_chatglm.py`` (upstream
glm-4-9b-chat's file, current or mid-2024 revision) and writes ``OUT_DIR/tokenization_chatglm.py`` (the patched
copy) and ``OUT_DIR/tokenization_chatglm.py.diff`` (a unified diff against the original, ``patch -p1`` /
``git apply`` style). Two methods of ``ChatGLM4Tokenizer`` change, only in their statements (the ``def`` line
and the docstring stay, except that a ``_pad`` without a ``padding_side`` parameter gets one), and one is added:

* ``build_inputs_with_special_tokens`` puts ``[gMASK]<sop>`` in front only when the ids do not already start
  with it (a rendered chat template carries it), and a pair ends with ``<|endoftext|>`` (upstream asks for a
  token ``<eos>`` that GLM-4 does not have, so pairs raise);
* ``prepare_for_model`` (new, 4 lines) builds ids that already start with the prefix without special tokens, so
  truncation keeps no room for a prefix that is not added again;
* ``_pad`` honours ``padding_side`` (call-time, else the tokenizer's): pads, attention mask 0 and position id 0
  go on that side; the mid-2024 revision's ``_pad`` did not accept the parameter at all.

Nothing else in the file moves: every other line keeps its bytes and its line ending. The replacement method
bodies below are glm4-tokfix's own, written in the style of the upstream file; the project never ships upstream's
file -- the patch is made at run time from the user's copy. The methods are located by parsing (``ast`` line
ranges); a file whose structure is not the one expected (another class, other parameters, decorators, the
methods missing or defined twice, glm4-tokfix's full module, an already patched file) is a ``ValueError`` naming
what was found.

What the minimal patch does not fix (the full module, ``glm4-tokfix export``, does): ``decode`` around special tokens
(current revision), unknown ids, ``return_attention_mask=False``, ``special_tokens_mask`` / ``token_type_ids``
padding, left truncation that keeps the prefix: ``glm4-tokfix check --unpatched`` on the patched folder lists
them.

Standard library only (``export_minimal`` writes through ``glm4_tokfix.folder_io``'s atomic transaction).
"""

from __future__ import annotations

import ast
import difflib
import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

from glm4_tokfix.folder_io import PathLike, Transaction, check_writable, existing_folder

__all__ = [
    "DIFF_SUFFIX",
    "MINIMAL_FIXES",
    "UPSTREAM_FILE",
    "MinimalPatch",
    "export_minimal",
    "is_minimally_patched",
    "minimal_patch",
    "split_lines",
]

UPSTREAM_FILE = "tokenization_chatglm.py"
DIFF_SUFFIX = ".diff"
CLASS_NAME = "ChatGLM4Tokenizer"
#: the battery properties the minimal patch makes hold (asserted by tests/test_export_minimal.py)
MINIMAL_FIXES = (
    "batch_matches_single_left",
    "batch_matches_single_right",
    "pad_idempotent",
    "chat_template_consistent",
    "pair_encoding",
)

_PAD_PARAMETERS = ("self", "encoded_inputs", "max_length", "padding_strategy", "pad_to_multiple_of",
                   "return_attention_mask")  # fmt: skip
_BUILD_PARAMETERS = ("self", "token_ids_0", "token_ids_1")

# The replacement statements, indented one level (four spaces) below the ``def`` and re-indented to the file's own.
# ``{needs}`` is the name the file's own ``_pad`` gives its "needs padding" flag. No blank lines: the file's own
# blank lines and comments stay around the statements that are kept (see ``_merge``).
_BUILD_BODY = """\
    prefix_tokens = self.get_prefix_tokens()
    if list(token_ids_0[:len(prefix_tokens)]) != prefix_tokens:
        token_ids_0 = prefix_tokens + token_ids_0
    if token_ids_1 is not None:
        token_ids_0 = token_ids_0 + token_ids_1 + [self.convert_tokens_to_ids("<|endoftext|>")]
    return token_ids_0
"""

_PAD_BODY = """\
    padding_side = padding_side if padding_side is not None else self.padding_side
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side should be 'left' or 'right', got {{padding_side!r}}")
    required_input = encoded_inputs[self.model_input_names[0]]
    seq_length = len(required_input)
    if padding_strategy == PaddingStrategy.LONGEST:
        max_length = len(required_input)
    if max_length is not None and pad_to_multiple_of is not None and (max_length % pad_to_multiple_of != 0):
        max_length = ((max_length // pad_to_multiple_of) + 1) * pad_to_multiple_of
    {needs} = padding_strategy != PaddingStrategy.DO_NOT_PAD and len(required_input) != max_length
    if "attention_mask" not in encoded_inputs:
        encoded_inputs["attention_mask"] = [1] * seq_length
    if "position_ids" not in encoded_inputs:
        encoded_inputs["position_ids"] = list(range(seq_length))
    if {needs} and padding_side == "right":
        difference = max_length - len(required_input)
        encoded_inputs["attention_mask"] = encoded_inputs["attention_mask"] + [0] * difference
        encoded_inputs["position_ids"] = encoded_inputs["position_ids"] + [0] * difference
        encoded_inputs[self.model_input_names[0]] = required_input + [self.pad_token_id] * difference
    elif {needs}:
        difference = max_length - len(required_input)
        encoded_inputs["attention_mask"] = [0] * difference + encoded_inputs["attention_mask"]
        encoded_inputs["position_ids"] = [0] * difference + encoded_inputs["position_ids"]
        encoded_inputs[self.model_input_names[0]] = [self.pad_token_id] * difference + required_input
    return encoded_inputs
"""
_NEEDS_DEFAULT = "needs_to_be_padded"

# A method the file does not have, added after build_inputs_with_special_tokens: ids that already start with
# [gMASK]<sop> are built without special tokens, so truncation keeps no room for a prefix that is not added again
# (else a text cut to max_length comes out two tokens short, or cut inside its prefix and prefixed a second time).
_PREPARE_METHOD = """\
def prepare_for_model(self, ids, pair_ids=None, add_special_tokens=True, **kwargs):
    if add_special_tokens and pair_ids is None and list(ids[:2]) == self.get_prefix_tokens():
        add_special_tokens = False
    return super().prepare_for_model(ids, pair_ids=pair_ids, add_special_tokens=add_special_tokens, **kwargs)
"""

_REVISIONS = {
    "current": "current revision (_pad takes padding_side but ignores it)",
    "mid2024": "mid-2024 revision (_pad has no padding_side parameter)",
}


@dataclass(frozen=True)
class MinimalPatch:
    """The result of :func:`minimal_patch`."""

    original: str
    patched: str
    diff: str
    #: "current" or "mid2024"
    revision: str
    added: int
    removed: int

    @property
    def changed_lines(self) -> int:
        """Lines added plus lines removed by the diff."""
        return self.added + self.removed

    def describe(self) -> str:
        return f"{_REVISIONS[self.revision]}; {self.changed_lines} lines changed (+{self.added} -{self.removed})"


def _fail(name: str, problem: str) -> ValueError:
    return ValueError(f"{name} is not upstream glm-4-9b-chat's tokenization_chatglm.py as expected: {problem}")


def _parameters(node: ast.FunctionDef) -> List[str]:
    return [a.arg for a in node.args.posonlyargs + node.args.args]


def _signature(node: ast.FunctionDef) -> str:
    names = _parameters(node)
    if node.args.vararg:
        names.append("*" + node.args.vararg.arg)
    names += [a.arg for a in node.args.kwonlyargs]
    if node.args.kwarg:
        names.append("**" + node.args.kwarg.arg)
    return f"{node.name}({', '.join(names)})"


def _find_class(tree: ast.Module, name: str) -> ast.ClassDef:
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    found = [n for n in classes if n.name == CLASS_NAME]
    if len(found) != 1:
        names = ", ".join(n.name for n in classes) or "none"
        if not found:
            raise _fail(name, f"it defines no class {CLASS_NAME} (classes found: {names})")
        raise _fail(name, f"it defines class {CLASS_NAME} {len(found)} times")
    return found[0]


def _find_method(cls: ast.ClassDef, method: str, name: str) -> ast.FunctionDef:
    found = [n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == method]
    if len(found) != 1:
        methods = ", ".join(n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
        if not found:
            raise _fail(name, f"{CLASS_NAME} has no method {method} (methods found: {methods or 'none'})")
        raise _fail(name, f"{CLASS_NAME} defines {method} {len(found)} times")
    node = found[0]
    if isinstance(node, ast.AsyncFunctionDef) or node.decorator_list:
        raise _fail(
            name, f"{CLASS_NAME}.{method} is {'async' if isinstance(node, ast.AsyncFunctionDef) else 'decorated'}"
        )
    return node


def _module_names(tree: ast.Module) -> set:
    """Names bound at module level by imports, assignments and definitions."""
    names: set = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _body_start(node: ast.FunctionDef) -> int:
    """0-based index of the first line to replace: after the docstring, else the first statement's line."""
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        if len(node.body) == 1:
            raise ValueError(f"{node.name} has only a docstring")
        return first.end_lineno  # type: ignore[return-value]  # a parsed node always has end_lineno; the line after the docstring (1-based end == 0-based next)
    return first.lineno - 1


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _body_lines(template: str, indent: str, newline: str) -> List[str]:
    lines = []
    for line in template.splitlines():
        assert line.startswith("    "), line
        lines.append(indent + line[4:] + newline)
    return lines


def _is_code(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _merge(old: List[str], new: List[str]) -> List[str]:
    """``new`` (code lines only), keeping ``old``'s blank and comment lines around the code lines both share.

    Each blank or comment line of ``old`` belongs to the code line after it: it stays when that line stays;
    where code lines are replaced, the blank lines (not the comments) in front of the first replaced line stay,
    so the method keeps its paragraphs.
    """
    code = [i for i, line in enumerate(old) if _is_code(line)]
    leading: Dict[int, List[str]] = {}
    pending: List[str] = []
    for line in old:
        if _is_code(line):
            leading[len(leading)] = pending
            pending = []
        else:
            pending.append(line)
    old_code = [old[i].rstrip() for i in code]
    matcher = difflib.SequenceMatcher(None, old_code, [line.rstrip() for line in new], autojunk=False)
    out: List[str] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for k, _j in zip(range(i1, i2), range(j1, j2)):
                out += leading[k] + [old[code[k]]]
            continue
        if i1 < i2:  # replaced or deleted old lines: their leading blank lines stay, their comments go
            out += [line for line in leading[i1] if not line.strip()]
        out += new[j1:j2]
    out += pending  # blank lines / comments after the last code line
    assert [line.rstrip() for line in out if _is_code(line)] == [line.rstrip() for line in new]
    return out


def split_lines(text: str) -> List[str]:
    """``text``'s lines with their endings, split where Python's parser splits (\\n, \\r\\n, \\r only)."""
    return re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", text)


def _newline_of(lines: List[str]) -> str:
    for line in lines:
        if line.endswith("\r\n"):
            return "\r\n"
        if line.endswith("\n"):
            return "\n"
    return "\n"


def _add_padding_side(lines: List[str], node: ast.FunctionDef, annotate: bool, newline: str) -> Tuple[int, List[str]]:
    """The header line edit that gives ``_pad`` a ``padding_side=None`` parameter: (line index, new lines)."""
    last = node.args.defaults[-1] if node.args.defaults else None
    arg = node.args.args[-1]
    end = last if last is not None else arg
    index = end.end_lineno - 1  # type: ignore[operator]  # a parsed node always has end_lineno
    line = lines[index]
    text = line.rstrip("\r\n")
    rest = text[end.end_col_offset :]
    annotation = ": Optional[str]" if annotate and arg.annotation is not None else ""
    if rest.strip() == ",":  # one parameter per line, with a trailing comma: a new line of the same shape
        arg_line = lines[arg.lineno - 1]
        return index, [line, f"{_indent_of(arg_line)}padding_side{annotation} = None," + newline]
    new = text[: end.end_col_offset] + f", padding_side{annotation}{' = ' if annotation else '='}None" + rest
    return index, [new + line[len(text) :]]


def _replacement(lines: List[str], node: ast.FunctionDef, template: str, newline: str) -> Tuple[int, int, List[str]]:
    """(start, end, new lines): the method's statements after its docstring, replaced by ``template``'s."""
    start, end = _body_start(node), node.end_lineno  # 0-based, end exclusive
    first = next(n for n in node.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)))
    new = _body_lines(template, _indent_of(lines[first.lineno - 1]), newline)
    return start, end, _merge(lines[start:end], new)  # type: ignore[return-value]  # a parsed node always has end_lineno


def _method_lines(template: str, node: ast.FunctionDef, lines: List[str], newline: str) -> List[str]:
    """``template`` (a ``def`` at column 0, four-space levels) indented like ``node`` and its body."""
    outer = _indent_of(lines[node.lineno - 1])
    first = next(n for n in node.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)))
    step = _indent_of(lines[first.lineno - 1])[len(outer) :] or "    "
    out = []
    for line in template.splitlines():
        depth = (len(line) - len(line.lstrip(" "))) // 4
        out.append(outer + step * depth + line.lstrip(" ") + newline)
    return out


def _prepare_is_ours(lines: List[str], node: ast.FunctionDef) -> bool:
    code = [line.strip() for line in lines[node.lineno - 1 : node.end_lineno] if _is_code(line)]
    return code == [line.strip() for line in _PREPARE_METHOD.splitlines()]


def _needs_name(node: ast.FunctionDef) -> str:
    """The name the file's ``_pad`` gives its "needs padding" flag (e.g. ``needs_to_be_padded``), to keep it."""
    names = {
        target.id
        for stmt in node.body
        if isinstance(stmt, ast.Assign)
        for target in stmt.targets
        if isinstance(target, ast.Name) and target.id.startswith("needs")
    }
    return names.pop() if len(names) == 1 else _NEEDS_DEFAULT


def _pad_template(node: ast.FunctionDef) -> str:
    return _PAD_BODY.format(needs=_needs_name(node))


def _carries_minimal_patch(lines: List[str], node: ast.FunctionDef, template: str) -> bool:
    """Whether the method's statements are already ``template``'s (blank lines and comments aside)."""
    body = [line.strip() for line in lines[_body_start(node) : node.end_lineno] if _is_code(line)]
    return body == [line.strip() for line in template.splitlines()]


def _parse(source: str, name: str) -> Tuple[ast.Module, ast.ClassDef, Dict[str, ast.FunctionDef]]:
    try:
        tree = ast.parse(source[1:] if source.startswith("\ufeff") else source)
    except SyntaxError as exc:
        raise _fail(name, f"it does not parse as Python (line {exc.lineno}: {exc.msg})") from None
    if "class GLM4FixMixin" in source or "class GLM4FastFixMixin" in source:
        raise ValueError(
            f"{name} is glm4-tokfix's own full module (glm4-tokfix export), not upstream's file: it needs no patch"
        )
    cls = _find_class(tree, name)
    methods = {m: _find_method(cls, m, name) for m in ("build_inputs_with_special_tokens", "_pad", "get_prefix_tokens")}
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "prepare_for_model":
            methods["prepare_for_model"] = node  # type: ignore[assignment]  # an async prepare_for_model is found (and refused) too
    return tree, cls, methods


def _check_signatures(methods: Dict[str, ast.FunctionDef], name: str) -> str:
    build, pad = methods["build_inputs_with_special_tokens"], methods["_pad"]
    for node, expected, optional in ((build, _BUILD_PARAMETERS, ()), (pad, _PAD_PARAMETERS, ("padding_side",))):
        args = node.args
        params = _parameters(node)
        odd = args.posonlyargs or args.vararg or args.kwonlyargs or args.kwarg
        if (
            odd
            or params[:2] != list(expected[:2])
            or set(params) - set(optional) != set(expected)
            or len(params) != len(set(params))
        ):
            raise _fail(name, f"{CLASS_NAME}.{_signature(node)} has other parameters than expected "
                              f"({', '.join(expected + optional)})")  # fmt: skip
    if len(build.args.defaults) != 1 or not (
        isinstance(build.args.defaults[0], ast.Constant) and build.args.defaults[0].value is None
    ):
        raise _fail(name, f"{CLASS_NAME}.build_inputs_with_special_tokens: token_ids_1 has no default None")
    if len(pad.args.defaults) != len(pad.args.args) - 2:
        raise _fail(name, f"{CLASS_NAME}._pad: every parameter after encoded_inputs should have a default")
    return "current" if "padding_side" in _parameters(pad) else "mid2024"


def is_minimally_patched(source: str) -> bool:
    """True when ``source`` is an upstream file that already carries the minimal patch's two method bodies."""
    try:
        _, _, methods = _parse(source, UPSTREAM_FILE)
    except ValueError:
        return False
    lines = split_lines(source)
    pad, prepare = methods["_pad"], methods.get("prepare_for_model")
    return (
        _carries_minimal_patch(lines, methods["build_inputs_with_special_tokens"], _BUILD_BODY)
        and _carries_minimal_patch(lines, pad, _pad_template(pad))
        and prepare is not None
        and _prepare_is_ours(lines, prepare)
    )


def minimal_patch(source: str, name: str = UPSTREAM_FILE) -> MinimalPatch:
    """Patch upstream's ``tokenization_chatglm.py`` text ``source``; ``name`` is used in messages only.

    Raises ``ValueError`` naming what was found when ``source`` is not one of the expected revisions. A leading
    UTF-8 BOM is taken off (the diff says so): Python reads past it, transformers' remote-code loader does not.
    """
    original = source
    source = source[1:] if source.startswith("\ufeff") else source
    tree, _, methods = _parse(source, name)
    revision = _check_signatures(methods, name)
    lines = split_lines(source)
    build, pad = methods["build_inputs_with_special_tokens"], methods["_pad"]
    pad_body = _pad_template(pad)
    if is_minimally_patched(source):
        raise ValueError(f"{name} already carries glm4-tokfix's minimal patch; nothing to do")
    if "prepare_for_model" in methods:
        raise _fail(name, f"{CLASS_NAME} defines prepare_for_model of its own (upstream's file does not)")
    known = _module_names(tree)
    if "PaddingStrategy" not in known:
        raise _fail(name, "it does not import PaddingStrategy (which _pad needs)")
    newline = _newline_of(lines)
    edits = [_replacement(lines, build, _BUILD_BODY, newline), _replacement(lines, pad, pad_body, newline)]
    end: int = build.end_lineno  # type: ignore[assignment]  # a parsed node always has end_lineno
    edits.append((end, end, [newline] + _method_lines(_PREPARE_METHOD, build, lines, newline)))
    if revision == "mid2024":
        index, new = _add_padding_side(lines, pad, "Optional" in known, newline)
        edits.append((index, index + 1, new))
    patched = list(lines)
    for start, end, new in sorted(edits, key=lambda e: e[0], reverse=True):
        patched[start:end] = new
    text = "".join(patched)
    try:
        ast.parse(text)
    except SyntaxError as exc:  # pragma: no cover -- would be a bug of ours, not of the user's file
        raise ValueError(f"patching {name} gave invalid Python (line {exc.lineno}: {exc.msg})") from None
    diff_lines = list(
        difflib.unified_diff(split_lines(original), patched, fromfile=f"a/{UPSTREAM_FILE}", tofile=f"b/{UPSTREAM_FILE}")
    )
    added = sum(1 for line in diff_lines if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in diff_lines if line.startswith("-") and not line.startswith("---"))
    diff = "".join(
        line if line.endswith(("\n", "\r")) else line + "\n\\ No newline at end of file\n" for line in diff_lines
    )
    return MinimalPatch(original, text, diff, revision, added, removed)


def read_upstream_file(model_dir: PathLike) -> Tuple[Path, str]:
    """``(path, text)`` of ``model_dir``'s own ``tokenization_chatglm.py``; OSError / ValueError name the problem."""
    folder = existing_folder(model_dir)
    path = folder / UPSTREAM_FILE
    if not path.is_file():
        found = sorted(p.name for p in folder.iterdir() if p.suffix in (".py", ".json", ".model"))
        hint = ""
        if "tokenizer.json" in found:
            hint = (
                "; a tokenizer.json folder (glm-4-9b-chat-hf, GLM-4-0414) has no remote code to patch: "
                "see the tokenizer.json change in docs/upstream.md"
            )
        raise ValueError(
            f"{folder} has no {UPSTREAM_FILE} to patch (found: {', '.join(found) or 'no .py/.json/.model files'}){hint}"
        )
    data = path.read_bytes()
    try:
        return path, data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc})") from None


def export_minimal(model_dir: PathLike, out_dir: PathLike, force: bool = False) -> Tuple[List[Path], MinimalPatch]:
    """Write ``out_dir/tokenization_chatglm.py`` (patched) and ``out_dir/tokenization_chatglm.py.diff``.

    ``out_dir`` is created when missing (it may be ``model_dir`` itself, to patch the file in place: pass
    ``force=True``). An existing file with other bytes is replaced only with ``force=True``
    (``FileExistsError`` otherwise); both files are written atomically, or neither.
    """
    source_path, source = read_upstream_file(model_dir)
    result = minimal_patch(source, name=str(source_path))
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(out))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot create the folder ({exc.strerror})", str(out)) from None
    files = {UPSTREAM_FILE: result.patched.encode("utf-8"), UPSTREAM_FILE + DIFF_SUFFIX: result.diff.encode("utf-8")}
    changed = {}
    for name, data in files.items():
        target = out / name
        if target.is_file() and target.read_bytes() == data:
            continue
        if os.path.lexists(target) and not force:
            raise FileExistsError(
                errno.EEXIST, f"{name} already exists with other contents (pass --force to replace it)", str(target)
            )
        changed[name] = data
    if changed:
        check_writable(out)
        tx = Transaction(out)
        try:
            for name, data in changed.items():
                tx.write(name, data)
            tx.commit()
        finally:
            tx.discard()
    return [out / name for name in files], result
