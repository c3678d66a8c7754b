"""The shape of the house (issue 12), read from the source with `ast`, nothing imported.

- Size: no class over 500 lines and no function over 60 lines in `hedge/` and `exchanges/`
  (the simulators under `exchanges/sim/` excepted); `runbot.py` under 350 lines.
- Direction: no module under `exchanges/` imports from `hedge` (anywhere in the module).
- No import cycle among the project's modules (`hedge`, `exchanges`, `bench`, `runbot`). Every
  import that runs counts as an edge, at module level or inside a function (deferring an
  import into a function hides a cycle, it does not remove it); only `if TYPE_CHECKING:`
  blocks (never executed) do not. Importing `a.b.c` also counts as importing the packages `a`
  and `a.b`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hedge", "exchanges", "bench")
MAX_CLASS_LINES = 500
MAX_FUNCTION_LINES = 60
MAX_RUNBOT_LINES = 350


def _modules() -> dict[str, Path]:
    """Every project module by dotted name (`hedge.engine`, `exchanges.sim`, `runbot`)."""
    found = {"runbot": ROOT / "runbot.py"}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _oversized(path: Path) -> Iterator[str]:
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.ClassDef):
            limit = MAX_CLASS_LINES
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            limit = MAX_FUNCTION_LINES
        else:
            continue
        assert node.end_lineno is not None
        lines = node.end_lineno - node.lineno + 1
        if lines > limit:
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            where = path.relative_to(ROOT)
            yield f"{where}:{node.lineno} {kind} {node.name} is {lines} lines (limit {limit})"


def _area_files(area: str) -> list[Path]:
    files = sorted((ROOT / area).rglob("*.py"))
    if area == "exchanges":
        files = [p for p in files if "sim" not in p.relative_to(ROOT / area).parts[:1]]
    return files


@pytest.mark.parametrize(
    "area",
    ["hedge", "exchanges"],
)
def test_no_class_or_function_is_oversized(area: str) -> None:
    problems = [problem for path in _area_files(area) for problem in _oversized(path)]
    assert not problems, "\n".join(problems)


def test_runbot_is_only_the_command_line() -> None:
    lines = len((ROOT / "runbot.py").read_text(encoding="utf-8").splitlines())
    assert lines < MAX_RUNBOT_LINES, f"runbot.py is {lines} lines (limit {MAX_RUNBOT_LINES})"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST, *, module_level: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements of a module: all of them (module_level False), or only those that run
    (module_level True): at import time or inside functions, but not the type checker's."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif module_level and isinstance(child, ast.If) and _is_type_checking(child):
            yield from (n for s in child.orelse for n in _import_nodes(s, module_level=True))
        else:
            yield from _import_nodes(child, module_level=module_level)


def _imported(name: str, path: Path, *, module_level: bool) -> set[str]:
    """The project modules `name` imports (with the packages each import runs)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _import_nodes(_parse(path), module_level=module_level):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        targets.add(base)
        targets.update(f"{base}.{alias.name}" for alias in node.names)
    edges: set[str] = set()
    for target in targets:
        parts = target.split(".")
        edges.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {t for t in edges if t in MODULES and t != name}


def test_exchanges_never_import_hedge() -> None:
    offenders = [
        f"{name} imports {target}"
        for name, path in MODULES.items()
        if name.split(".")[0] == "exchanges"
        for target in sorted(_imported(name, path, module_level=False))
        if target.split(".")[0] == "hedge"
    ]
    assert not offenders, "\n".join(offenders)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_no_import_cycle_among_project_modules() -> None:
    graph = {name: _imported(name, path, module_level=True) for name, path in MODULES.items()}
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
