"""Folders are layers and arrows point one way (README "Layout"): each module imports only from its own layer
and the layers below it, lazily inside a function or not (ast, so lazy imports count), and no two modules
import each other."""

from __future__ import annotations

import ast

from conftest import ROOT

SRC = ROOT / "src"
# what each layer may import; a module of emblab's top level is a command, bench is above the commands
MAY_IMPORT = {
    "core": {"core"},
    "nets": {"core", "nets"},
    "data": {"core", "data"},
    "models": {"core", "nets", "models"},
    "analysis": {"core", "nets", "data", "models", "analysis"},
    "training": {"core", "nets", "data", "models", "analysis", "training"},
    "commands": {"core", "nets", "data", "models", "analysis", "training", "commands"},
    "bench": {"core", "nets", "data", "models", "analysis", "training", "commands", "bench"},
}


def layer(module: str) -> str:
    """A folder of src/emblab is a layer; a module directly in it is a command."""
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    return parts[1] if (SRC / "emblab" / parts[1]).is_dir() else "commands"


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted((SRC / "emblab").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("emblab"):
                deps.add(node.module)  # from emblab.core import cli: the module emblab.core.cli
                deps |= {
                    f"{node.module}.{a.name}"
                    for a in node.names
                    if (SRC / node.module.replace(".", "/") / f"{a.name}.py").exists()
                }
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("emblab")}
        graph[module] = {
            d
            for d in deps - {module, "emblab"}
            if (SRC / d.replace(".", "/")).with_suffix(".py").exists()
            or (SRC / d.replace(".", "/") / "__init__.py").exists()
        }
    return graph


def test_every_module_has_a_layer():
    assert {layer(m) for m in import_graph()} <= set(MAY_IMPORT) | {"package"}


def test_arrows_point_down_the_layers():
    wrong = {}
    for module, deps in import_graph().items():
        if layer(module) == "package":
            continue
        up = sorted(d for d in deps if layer(d) not in MAY_IMPORT[layer(module)])
        if up:
            wrong[module] = up
    assert not wrong, wrong


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


def test_steps_per_call_lives_in_one_module():
    """Model and data files never mention it: emblab.training.steps mixes it in."""
    mentions = [
        str(p.relative_to(SRC))
        for folder in ("models", "nets", "data")
        for p in (SRC / "emblab" / folder).rglob("*.py")
        if "steps_per_call" in p.read_text()
    ]
    assert not mentions, mentions
