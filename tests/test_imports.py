"""Imports between qa's modules flow one way, downwards: no module imports one that imports it back.

Every module under qa/ is parsed (not imported) and each ``import qa...`` or
``from qa... import`` anywhere in it counts: at the top, inside a function, or under
``if TYPE_CHECKING:``, since a cycle through any of them means two modules that
cannot be read, or split, one without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

QA = Path(__file__).resolve().parent.parent / "qa"


def module_name(path: Path, root: Path = QA) -> str:
    parts = ["qa", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, known: set[str], root: Path = QA) -> set[str]:
    """The qa modules ``path`` imports, resolved to modules (not names inside them)."""
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            # "from qa.bench import scale" imports the module qa.bench.scale, "from qa.index import Index" qa.index
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # "import qa.index.writer" -> qa.index.writer; a name -> its module
                target = target.rpartition(".")[0]
            if target and target != me:
                found.add(target)
    return found


def import_graph(root: Path = QA) -> dict[str, set[str]]:
    paths = sorted(root.rglob("*.py"))
    known = {module_name(p, root) for p in paths}
    # Importing qa.index.writer runs qa/index/__init__.py first; that edge is Python's, not the
    # module's, and is not counted (a submodule importing its own package is refused below).
    return {module_name(p, root): imports_of(p, known, root) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None


def _is_package_of(a: str, b: str) -> bool:
    return b.startswith(a + ".")


def test_no_import_cycle_between_qa_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_submodule_imports_its_own_package():
    """qa.index.writer importing ``qa.index`` would run the package's re-exports while it is half made."""
    offenders = [(m, t) for m, targets in import_graph().items() for t in targets
                 if _is_package_of(t, m) and t != "qa"]
    assert not offenders, offenders


def test_the_graph_sees_every_kind_of_import(tmp_path):
    """The check can fail: a cycle through a function-level, a TYPE_CHECKING and a submodule import is found."""
    pkg = tmp_path / "qa"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from qa.sub.low import thing\n")
    (pkg / "sub" / "low.py").write_text("def thing():\n    from qa import top\n    return top\n")
    (pkg / "top.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from qa.mid import x\n")
    (pkg / "mid.py").write_text("from qa.sub import low\nx = 1\n")
    graph = import_graph(pkg)
    assert graph["qa.sub.low"] == {"qa.top"}
    assert graph["qa.top"] == {"qa.mid"}
    assert graph["qa.mid"] == {"qa.sub.low"}
    assert find_cycle(graph) == ["qa.mid", "qa.sub.low", "qa.top", "qa.mid"]
    (pkg / "sub" / "low.py").write_text("def thing():\n    return 1\n")
    assert find_cycle(import_graph(pkg)) is None


@pytest.mark.parametrize("pair", [("qa.citations", "qa.retrieval"), ("qa.embedding", "qa.backends"),
                                  ("qa.bench.speed", "qa.bench.scale")])
def test_the_pairs_that_imported_each_other_now_import_one_way(pair):
    """Regression: these three pairs imported each other (issue 12)."""
    graph = import_graph()
    a, b = pair
    assert not (b in graph[a] and a in graph[b]), pair
    assert (b in graph[a]) != (a in graph[b]), f"{pair}: one should import the other"
