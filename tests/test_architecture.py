"""The package's import direction: stages use the libraries, libraries never import stages, the
engine or the command line, and no two files import each other, even through a chain."""

from __future__ import annotations

import ast
from pathlib import Path

RUNNER = Path(__file__).resolve().parents[1] / "runner"
# may import runner.stages / runner.engine / runner.cli: the layers on top
UPPER = ("runner.engine", "runner.cli", "runner.__main__")
TOP_IMPORTS = ("runner.stages", "runner.engine", "runner.cli")


def _module_name(path: Path) -> str:
    parts = path.relative_to(RUNNER.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Every runner module and the runner modules it imports, lazily imported ones included."""
    paths = {_module_name(p): p for p in RUNNER.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("runner"):
                for alias in node.names:  # `from runner.x import y` imports the module runner.x.y when there is one
                    sub = f"{node.module}.{alias.name}"
                    targets.add(sub if sub in paths else node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("runner"))
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    stack, seen = [(start, [start])], set()
    while stack:
        node, trail = stack.pop()
        for nxt in graph[node]:
            if nxt == start:
                return trail + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, trail + [nxt]))
    return None


def test_no_import_circle_between_files():
    graph = _import_graph()
    # a package's __init__ re-exporting its own modules is not a circle worth reporting
    for name in graph:
        graph[name] = {t for t in graph[name] if not (t.startswith(name + ".") or name.startswith(t + "."))}
    cycles = [c for name in sorted(graph) if (c := _cycle_from(name, graph))]
    assert cycles == [], "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_libraries_never_import_stages_engine_or_cli():
    graph = _import_graph()
    offenders = {
        (name, target)
        for name, targets in graph.items()
        if not name.startswith(UPPER) and not name.startswith("runner.stages")
        for target in targets
        if target.startswith(TOP_IMPORTS)
    }
    assert offenders == set()


def test_stages_import_no_other_stage_and_not_the_engine():
    graph = _import_graph()
    offenders = {
        (name, target)
        for name, targets in graph.items()
        if name.startswith("runner.stages.")
        for target in targets
        if target.startswith(("runner.engine", "runner.cli")) or (target.startswith("runner.stages.") and target != name)
    }
    assert offenders == set()


def test_top_level_shows_the_architecture():
    entries = sorted(p.name for p in RUNNER.iterdir() if p.name != "__pycache__")
    packages = [e for e in entries if (RUNNER / e).is_dir()]
    assert len(entries) <= 12, entries
    for package in packages:  # each says what it holds
        init = RUNNER / package / "__init__.py"
        assert init.is_file() and ast.get_docstring(ast.parse(init.read_text())), package
