"""The direction of imports between the rooms (docs/architecture.md, *Layout*), and no circle between modules.

Every import counts, lazy ones inside functions included (a lazy import is still a dependency);
only imports under `if TYPE_CHECKING:` are left out, as they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ("aztrain", "functions", "devhost", "trainer")

#: What each room may import of the project, by module prefix. The first matching room applies.
ALLOWED: dict[str, set[str]] = {
    # The domain is rules only. `trainer.args`: the built-in trainer's argument rules, which the
    # manifest checks at submit time (the trainer package is pure Python and imports no aztrain).
    "aztrain.domain": {"aztrain.domain", "trainer.args"},
    "aztrain.api": {"aztrain.api", "aztrain.domain"},
    # The composition root and the offline planner are the service's only ways to the adapters.
    "aztrain.service.bootstrap": {"aztrain.service", "aztrain.domain", "aztrain.api", "aztrain.adapters"},
    "aztrain.service.plan": {"aztrain.service", "aztrain.domain", "aztrain.api", "aztrain.adapters.compute"},
    "aztrain.service": {"aztrain.service", "aztrain.domain", "aztrain.api"},
    # The local job supervisor is a program of its own: it builds its data store through bootstrap.
    "aztrain.adapters": {"aztrain.adapters", "aztrain.domain", "aztrain.service", "trainer.exit_codes"},
    # The CLI speaks HTTP. Besides the wire contract and the domain's rules it reads the settings it
    # shares with the server (connection defaults, the local settings file), plans offline, runs the
    # dev host for `aztrain dev | demo`, and exports the trainer's data format for `seed-digits`.
    "aztrain.cli": {
        "aztrain.cli",
        "aztrain.api",
        "aztrain.domain",
        "aztrain.service.settings",
        "aztrain.service.plan",
        "devhost",
        "trainer.data",
    },
    "functions": {
        "functions",
        "aztrain.api",
        "aztrain.domain",
        "aztrain.service.facade",
        "aztrain.service.bootstrap",
        "aztrain.service.telemetry",
        "aztrain.service.queries",
    },
    "trainer": {"trainer"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found = {_module_name(p): p for folder in PROGRAMS for p in (ROOT / folder).rglob("*.py")}
    found["function_app"] = ROOT / "function_app.py"
    return found


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of imports under `if TYPE_CHECKING:`."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            lines |= {n.lineno for child in node.body for n in ast.walk(child) if hasattr(n, "lineno")}
    return lines


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree)
    named: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            named |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & modules.keys()
            # `from package import module` depends on the module, not on the rest of the package.
            named |= submodules or {node.module}
    return {name for name in named if name in modules}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _room(module: str) -> str | None:
    return next((room for room in ALLOWED if _within(module, room)), None)


def test_each_room_imports_only_what_it_may() -> None:
    offenders = []
    for module, imported in sorted(_graph().items()):
        room = _room(module)
        if room is None:
            continue
        for target in sorted(imported):
            if not any(_within(target, allowed) for allowed in ALLOWED[room]):
                offenders.append(f"{module} imports {target} ({room} may import {sorted(ALLOWED[room])})")
    assert offenders == [], "\n".join(offenders)


def test_functions_never_import_an_adapter() -> None:
    graph = _graph()
    reached = {t for m, imported in graph.items() if _within(m, "functions") for t in imported}
    assert not [t for t in reached if _within(t, "aztrain.adapters")]


def test_no_circle_between_modules() -> None:
    graph = _graph()
    circles = [cycle for cycle in _strongly_connected(graph) if len(cycle) > 1]
    assert circles == [], f"import circles: {circles}"


def test_the_rules_catch_a_wrong_way_import_and_a_circle() -> None:
    assert _room("aztrain.domain.runs") == "aztrain.domain"
    assert not any(_within("aztrain.service.facade", allowed) for allowed in ALLOWED["aztrain.domain"])
    assert _strongly_connected({"a": {"b"}, "b": {"a"}, "c": set()}) == [["b", "a"], ["c"]]


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the strongly connected components of the import graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            child = next((e for e in edges if e in graph), None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components
