"""Arrows point one way: commands and callbacks use models and data, never the reverse, and no two
modules of emblab import each other, lazily inside a function or not (ast, so lazy imports count)."""

from __future__ import annotations

import ast

from conftest import ROOT

SRC = ROOT / "src"
# what a model or a data module may use besides models and data: no command, callback or bench
FOUNDATIONS = {"emblab.errors", "emblab.download", "emblab.cli"}


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted((SRC / "emblab").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("emblab"):
                deps.add(node.module)  # from emblab import cli: the module emblab.cli
                deps |= {
                    f"{node.module}.{a.name}"
                    for a in node.names
                    if (SRC / node.module.replace(".", "/") / f"{a.name}.py").exists()
                }
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("emblab")}
        graph[module] = deps - {module, "emblab"}
    return graph


def test_models_and_data_import_no_command():
    graph = import_graph()
    layer = ("emblab.models", "emblab.data")
    wrong = {
        m: sorted(d for d in deps if not d.startswith(layer) and d not in FOUNDATIONS)
        for m, deps in graph.items()
        if m.startswith(layer)
    }
    assert not any(wrong.values()), {m: d for m, d in wrong.items() if d}


def test_no_two_modules_import_each_other():
    graph = import_graph()
    cycles, state = [], {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for d in sorted(graph.get(m, ())):
            if state.get(d) == "open":
                cycles.append(path[path.index(d) :] + [d] if d in path else [m, d])
            elif d not in state:
                visit(d, [*path, d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles
