"""No import circle in `reid/`: the graph of which module imports which, computed from the code.

Imports inside functions count (a circle there still ties two modules into one), `if
TYPE_CHECKING:` blocks do not (they never run). A circle means a lower part reaches up into a
higher one; the architecture wants data and calls to flow one way.
"""

from __future__ import annotations

from pathlib import Path

from tests.dvc_stages import REPO, imported_modules


def module_name(path: Path, repo: Path = REPO) -> str:
    parts = path.relative_to(repo).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(repo: Path = REPO) -> dict[str, set[str]]:
    """module -> the `reid` modules it names in an import (a package's own submodules that
    `from package import name` reaches count as the submodule)."""
    files = {module_name(p, repo): p for p in (repo / "reid").rglob("*.py")}
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = imported_modules(path, package, lazy=True)
        graph[name] = {m for m in imported if m in files and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_reid_has_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_circle_finder_sees_a_circle_through_a_function(tmp_path):
    pkg = tmp_path / "reid"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from reid.b import g\n")
    (pkg / "b.py").write_text("def g():\n    from reid import a\n    return a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from reid import a\n")
    graph = import_graph(tmp_path)
    assert graph["reid.c"] == set()
    assert find_cycle(graph) == ["reid.a", "reid.b", "reid.a"]
