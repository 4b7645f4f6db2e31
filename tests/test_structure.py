"""The house rules that keep ropeconv easy to walk through, checked on the code itself:

- the library (everything outside `ropeconv/cli/`) never imports the CLI;
- no import cycle between modules, counting imports inside functions (a cycle that only works
  because one side imports late is still a cycle) and leaving out `if TYPE_CHECKING:` imports;
- each rule has one definition: the record's file name, YaRN's β defaults.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ropeconv"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The ropeconv modules `name` imports anywhere in its code (resolved to modules, not names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def test_the_library_never_imports_the_cli():
    offenders = {name: sorted(m for m in deps if m == "ropeconv.cli" or m.startswith("ropeconv.cli."))
                 for name, deps in import_graph().items()
                 if not (name == "ropeconv.cli" or name.startswith("ropeconv.cli.") or name == "ropeconv.__main__")}
    assert {k: v for k, v in offenders.items() if v} == {}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _without_package_faces(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's __init__ that only re-exports its own modules is its face, not a dependency of
    them: an edge module → its own package's face is the module reaching its siblings, which the
    edges face → sibling already show."""
    return {name: {d for d in deps if not (name.startswith(d + ".") and d != "ropeconv")}
            for name, deps in graph.items()}


def test_no_import_cycles():
    assert _cycles(_without_package_faces(import_graph())) == []


def test_the_cycle_finder_finds_a_cycle():
    # the check above must be able to fail
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_record_file_name_and_yarn_defaults_have_one_definition():
    record_name = re.compile(r"""=\s*["']ropeconv\.json["']""")
    beta = re.compile(r"""(beta_fast|BETA_FAST)\w*\s*=\s*32(\.0)?\b""")
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.name != "record.py":
            assert not record_name.search(text), f"{path} defines the record's file name again"
        if path.name != "methods.py":
            assert not beta.search(text), f"{path} defines YaRN's beta_fast default again"
