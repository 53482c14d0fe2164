"""The dependency direction of README's architecture map, checked on every import in audiossl/.

Each module belongs to a room (``audiossl.<room>`` or a top-level module); a room may import
only the rooms listed for it below. Function-level (lazy) imports count as much as top-level
ones: a lazy import still ties the rooms together. Imports under ``if TYPE_CHECKING:`` are
annotations only and are not counted. The deprecated re-export modules kept at old paths are
inside their old room and import the new room, which the table allows.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "audiossl"
PLUGINS = Path(__file__).resolve().parents[1] / "plugins"

#: Rooms anyone may import.
LEAVES = {"errors", "registry", "config", "fileio", "progress", "entrypoints", "extensions", "__init__"}

#: Room -> the rooms it may import (besides itself and the leaves), lowest rooms first.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "registry": set(),
    "config": set(),
    "fileio": set(),
    "progress": set(),
    "entrypoints": set(),
    "extensions": set(),
    "__init__": {"embed"},
    "nn": set(),
    "audio": {"nn"},
    "data": {"audio", "nn"},
    "encoders": {"nn", "audio"},
    "models": {"encoders", "audio", "data", "nn"},
    "objectives": {"models", "encoders", "nn", "audio", "data"},
    "cluster": {"models", "encoders", "nn", "audio", "data"},
    "interop": {"models", "encoders", "nn", "audio"},
    "embed": {"models", "interop", "encoders", "nn", "audio", "data"},
    "export": {"models", "embed", "interop", "encoders", "nn", "audio", "data"},
    "engine": {"nn", "data"},
    "downstream": {"engine", "models", "embed", "interop", "encoders", "nn", "audio", "data"},
    "train": {"engine", "objectives", "models", "cluster", "embed", "interop", "encoders", "nn", "audio", "data"},
    "report": {"engine", "downstream", "models", "embed", "data", "audio"},
    # the SUPERB protocol runs downstream tasks over upstreams: above downstream, beside report
    "superb": {"engine", "downstream", "models", "embed", "data", "audio"},
    # Top of the house: the typer app, and the fixtures for tests and plugin authors (tiny_pretrained runs a
    # real pretraining, so it sits beside the CLI, above train).
    "cli": {"*"},
    "testing": {"*"},
    "configs": set(),
}


def _room(module: str) -> str | None:
    """``audiossl.train.trainer`` -> ``train``; ``audiossl`` -> ``__init__``; None outside audiossl."""
    parts = module.split(".")
    if parts[0] != "audiossl":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path, root: Path) -> str:
    relative = path.relative_to(root.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, module: str, root: Path = PACKAGE) -> list[tuple[str, int]]:
    """(imported module of package ``root``, line) for every import in ``path`` outside ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            # ``from audiossl.x import y`` where y is a submodule imports audiossl.x.y too
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                if _exists(candidate, root):
                    found.append((candidate, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    top = {root.name, "audiossl"}
    return [(name, line) for name, line in found if name.split(".")[0] in top]


def _exists(module: str, root: Path) -> bool:
    path = root.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _graph(root: Path) -> dict[str, list[tuple[str, int]]]:
    graph: dict[str, list[tuple[str, int]]] = {}
    for path in sorted(root.rglob("*.py")):
        graph[_module_name(path, root)] = _imports(path, _module_name(path, root), root)
    return graph


def test_every_room_is_in_the_table():
    rooms = {_room(module) for module in _graph(PACKAGE)}
    assert rooms <= set(ALLOWED), f"rooms missing from the layering table: {sorted(rooms - set(ALLOWED))}"


def test_imports_follow_the_dependency_direction():
    violations = []
    for module, imports in _graph(PACKAGE).items():
        room = _room(module)
        allowed = ALLOWED[room]
        for target, line in imports:
            other = _room(target)
            if other in (room, None) or other in LEAVES or "*" in allowed or other in allowed:
                continue
            violations.append(f"{module}:{line} imports {target} ({room} -> {other})")
    assert not violations, "imports against the map:\n" + "\n".join(violations)


def test_only_train_and_cli_import_train():
    offenders = [
        f"{module}:{line} imports {target}"
        for module, imports in _graph(PACKAGE).items()
        for target, line in imports
        if _room(target) == "train" and _room(module) not in ("train", "cli", "testing")
    ]
    assert not offenders, "\n".join(offenders)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively; components of more than one module (the loops)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    loops: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
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
                if len(component) > 1:
                    loops.append(sorted(component))
    return loops


def _module_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules it imports, leaving out a package's own ``__init__`` seen from inside it.

    A submodule importing its package (to trigger the registration of the built-ins, as
    ``create_objective`` does) is how Python packages work, not a loop between modules.
    """
    graph: dict[str, set[str]] = defaultdict(set)
    for module, imports in _graph(root).items():
        graph[module]
        for target, _ in imports:
            if target != module and not module.startswith(target + "."):
                graph[module].add(target)
    return dict(graph)


def test_no_import_loops_between_audiossl_modules():
    loops = _strongly_connected(_module_graph(PACKAGE))
    assert not loops, "import loops:\n" + "\n".join(" <-> ".join(loop) for loop in loops)


def _plugin_packages() -> list[Path]:
    """The import packages of plugins/* (``plugins/sv/audiossl_sv`` ...)."""
    return sorted(
        package
        for plugin in PLUGINS.iterdir()
        if (plugin / "pyproject.toml").is_file()
        for package in plugin.iterdir()
        if package.is_dir() and (package / "__init__.py").is_file()
    )


@pytest.mark.parametrize("package", _plugin_packages(), ids=lambda p: p.name)
def test_plugins_use_no_training_internals(package):
    """Plugins go through audiossl's public rooms; ``audiossl.train`` is the pretraining app, not an API."""
    offenders = [
        f"{module}:{line} imports {target}"
        for module, imports in _graph(package).items()
        for target, line in imports
        if _room(target) == "train"
    ]
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("package", _plugin_packages(), ids=lambda p: p.name)
def test_no_import_loops_inside_plugins(package):
    loops = _strongly_connected(_module_graph(package))
    assert not loops, f"import loops in {package.name}:\n" + "\n".join(" <-> ".join(x) for x in loops)


def test_the_walk_sees_a_violation(tmp_path):
    """The checker itself: a lazy import of train from encoders is found, a TYPE_CHECKING one is not."""
    package = tmp_path / "audiossl"
    (package / "encoders").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "encoders" / "__init__.py").write_text("")
    (package / "encoders" / "x.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from audiossl.objectives import base\n"
        "def f():\n    from audiossl.train import trainer\n"
    )
    imports = _imports(package / "encoders" / "x.py", "audiossl.encoders.x", package)
    assert [name for name, _ in imports] == ["audiossl.train"]
    assert imports[0][1] == 5
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
