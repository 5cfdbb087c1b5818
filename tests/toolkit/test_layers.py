"""The package's layer contracts, read from the source (AST only, nothing imported).

* the bundle (``glm4_tokfix/remote_code``) imports only its own siblings, relatively (``from .x import y``):
  never ``glm4_tokfix``, never ``..``, never a module that is not in ``BUNDLE_FILES``;
* no library module imports ``glm4_tokfix.cli``;
* no import cycle among glm4_tokfix's modules, counting imports inside functions and
  ``importlib.import_module("glm4_tokfix...")`` string literals.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "src" / "glm4_tokfix"
BUNDLE_DIR = PACKAGE_DIR / "remote_code"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> Dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, level: int, module: Optional[str]) -> str:
    """The absolute name ``from <level dots><module>`` names inside ``importer``."""
    if not level:
        return module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(path: Path) -> Iterator[tuple]:
    """``(kind, target, node)`` for each import in the file, at any depth: kind is "absolute", "relative" or
    "dynamic" (an ``importlib.import_module`` call whose first argument is a string literal)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield "absolute", alias.name, node
        elif isinstance(node, ast.ImportFrom):
            yield ("relative" if node.level else "absolute"), node, node
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name == "import_module" and isinstance(node.args[0].value, str):
                yield "dynamic", node, node


def edges_of(name: str, path: Path, known: Set[str]) -> Set[str]:
    """The glm4_tokfix modules ``name`` (at ``path``) imports, at the top or inside functions."""
    is_package = path.name == "__init__.py"
    out: Set[str] = set()

    def add(target: str) -> None:
        while target and target not in known:  # ``from pkg import submodule`` or ``import pkg.sub.attr``
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)

    for kind, target, _node in imports_of(path):
        if kind == "dynamic":
            text = target.args[0].value
            package = None
            if len(target.args) > 1 and isinstance(target.args[1], ast.Name) and target.args[1].id == "__name__":
                package = name
            if text.startswith(".") and package is not None:
                level = len(text) - len(text.lstrip("."))
                add(_resolve(package, True, level, text.lstrip(".") or None))
            elif text.startswith("glm4_tokfix"):
                add(text)
            continue
        if isinstance(target, ast.ImportFrom):
            base = _resolve(name, is_package, target.level, target.module)
            if not base.startswith("glm4_tokfix"):
                continue
            for alias in target.names:
                full = f"{base}.{alias.name}"
                add(full if full in known else base)
        elif target.startswith("glm4_tokfix"):
            add(target)
    return out


def import_graph() -> Dict[str, Set[str]]:
    modules = package_modules()
    known = set(modules)
    return {name: edges_of(name, path, known) for name, path in modules.items()}


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None when it has none."""
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if not state.get(nxt):
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if not state.get(node):
            found = visit(node)
            if found:
                return found
    return None


# ------------------------------------------------------------------------------------------------ the bundle
def bundle_files() -> List[str]:
    from glm4_tokfix.remote_code import BUNDLE_FILES

    return list(BUNDLE_FILES)


def test_bundle_files_are_the_bundle_folder():
    on_disk = sorted(p.name for p in BUNDLE_DIR.glob("*.py") if p.name != "__init__.py")
    assert sorted(bundle_files()) == on_disk
    assert "tokenization_chatglm.py" not in on_disk  # upstream's file name in remote-code folders


@pytest.mark.parametrize("name", sorted(p.name for p in BUNDLE_DIR.glob("*.py")))
def test_bundle_imports_only_its_siblings(name):
    siblings = {f[:-3] for f in bundle_files()}
    problems = []
    for kind, target, node in imports_of(BUNDLE_DIR / name):
        where = f"{name}:{node.lineno}"
        if kind == "dynamic":
            if target.args[0].value.startswith((".", "glm4_tokfix")):
                problems.append(f"{where} import_module({target.args[0].value!r})")
        elif kind == "relative":
            if target.level != 1:
                problems.append(f"{where} uses a '..' import")
            elif target.module not in siblings:
                problems.append(f"{where} imports .{target.module}, which is not a bundle module")
        elif isinstance(target, ast.ImportFrom):
            if target.module.split(".")[0] == "glm4_tokfix":
                problems.append(f"{where} imports {target.module}")
        elif target.split(".")[0] == "glm4_tokfix":
            problems.append(f"{where} imports {target}")
    assert problems == []


# ---------------------------------------------------------------------------------------------- the package
def test_no_library_module_imports_the_cli():
    graph = import_graph()
    importers = sorted(name for name, targets in graph.items() if "glm4_tokfix.cli" in targets)
    assert importers == []


def test_no_import_cycles():
    graph = import_graph()
    # the graph sees relative imports (a known edge), so an empty graph cannot pass
    assert "glm4_tokfix.remote_code.glm4_fast_spec" in graph["glm4_tokfix.remote_code.glm4_fast_route"]
    assert find_cycle(graph) is None


def test_the_checker_sees_what_it_must(tmp_path):
    """The checks can fail: a synthetic cycle is reported, and so are a function-level import, a dynamic
    import by string and an upward relative import."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    module = tmp_path / "m.py"
    module.write_text(
        "import importlib\n"
        "def f():\n"
        "    from glm4_tokfix import cli\n"
        "    importlib.import_module('glm4_tokfix.chat_templates')\n"
        "    from ..patching import patch\n",
        encoding="utf-8",
    )
    known = {"glm4_tokfix.cli", "glm4_tokfix.chat_templates", "glm4_tokfix.patching", "glm4_tokfix.remote_code.m"}
    edges = edges_of("glm4_tokfix.remote_code.m", module, known)
    assert edges == {"glm4_tokfix.cli", "glm4_tokfix.chat_templates", "glm4_tokfix.patching"}
    kinds = sorted(kind for kind, _, _ in imports_of(module))
    assert kinds == ["absolute", "absolute", "dynamic", "relative"]


@pytest.mark.parametrize("entry", ["tokenization_glm4_tokfix", "tokenization_glm4_tokfix_fast"])
def test_entry_modules_import_every_bundle_module_they_need_themselves(entry):
    """transformers 4.x copies a local folder's remote-code module and only the files it imports itself."""

    def siblings(name: str) -> Set[str]:
        return {t.module for kind, t, _ in imports_of(BUNDLE_DIR / f"{name}.py") if kind == "relative"}

    needed, todo = set(), list(siblings(entry))
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(siblings(name))
    assert needed - siblings(entry) == set()


def test_host_entry_module_imports_every_bundle_module_it_needs_itself(tmp_path):
    """The entry module written over another checkpoint's class (GLM-4V-9B: ``tokenization_glm4_tokfix_host.py``,
    generated by ``model_folder.host_module_bytes``) obeys the same rule: transformers 4.x copies only what it
    imports itself. Dropping one of its generated imports is caught."""
    from glm4_tokfix import model_folder

    def relative(path: Path) -> Set[str]:
        return {t.module for kind, t, _ in imports_of(path) if kind == "relative"}

    def missing(entry: Path) -> Set[str]:
        direct = relative(entry) - {"tokenization_chatglm"}  # the host class's own module, not the bundle's
        needed, todo = set(), list(direct)
        while todo:
            name = todo.pop()
            if name not in needed:
                needed.add(name)
                todo.extend(relative(BUNDLE_DIR / f"{name}.py"))
        return needed - direct

    source = model_folder.host_module_bytes("tokenization_chatglm.ChatGLM4Tokenizer").decode("utf-8")
    entry = tmp_path / model_folder.HOST_MODULE_FILE
    entry.write_text(source, encoding="utf-8")
    assert relative(entry) >= {"tokenization_chatglm", model_folder.MODULE_NAME}
    assert missing(entry) == set()
    entry.write_text(source.replace("from .glm4_vocab import", "# from .glm4_vocab import"), encoding="utf-8")
    assert missing(entry) == {"glm4_vocab"}
