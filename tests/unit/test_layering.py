"""The layers hold: the gateway knows the worker side only through ``workers.contract``,
``security`` stays framework-free, and no project module imports itself in a circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "workers", "security", "taskgate", "certs")
FRAMEWORKS = ("fastapi", "starlette", "celery", "kombu", "billiard")


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the project's packages."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.Module, *, import_time_only: bool) -> Iterator[tuple[str, list[str]]]:
    """What a module imports: ``(module, [])`` for ``import module``, ``(module, names)``
    for ``from module import names``. Imports under ``if TYPE_CHECKING:`` never run;
    ``import_time_only`` also leaves out those inside functions (run when called)."""

    def visit(nodes: list[ast.stmt]) -> Iterator[tuple[str, list[str]]]:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                yield from visit(node.orelse)
                continue
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if not import_time_only:
                    yield from visit(node.body)
                continue
            if isinstance(node, ast.Import):
                yield from ((alias.name, []) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                yield node.module, [alias.name for alias in node.names]
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from visit([child])
            for handler in getattr(node, "handlers", []):  # try: ... except: blocks
                yield from visit(handler.body)

    yield from visit(tree.body)


def _graph(*, import_time_only: bool) -> dict[str, set[str]]:
    """Module -> the project modules it imports. ``from package import module`` is an edge
    to the module only: the package is being imported already when one of its modules
    imports a sibling that way."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets: set[str] = set()
        for module, names in _imports(tree, import_time_only=import_time_only):
            submodules = {f"{module}.{item}" for item in names} & modules.keys()
            targets |= submodules
            if len(submodules) < len(names) or not names:
                targets.add(module)
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
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
                    found.append(sorted(component))
    return found


def _all_imports(package: str) -> Iterator[tuple[str, str]]:
    """(module file, imported name) for every import of a package, lazy ones included:
    ``from a import b`` gives both ``a`` and ``a.b`` (``b`` may be a module)."""
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for module, names in _imports(tree, import_time_only=False):
            for target in [module, *(f"{module}.{item}" for item in names)]:
                yield str(path.relative_to(ROOT)), target


def test_the_scan_sees_the_packages() -> None:
    """The graph covers the tree (a wrong root would make every check below pass on nothing)."""
    graph = _graph(import_time_only=True)
    assert {"gateway.app", "workers.app", "security.audit", "taskgate.cli.main"} <= set(graph)
    assert "workers.contract.keys" in set().union(*graph.values())


def test_no_import_cycle_among_the_projects_modules() -> None:
    """No project module imports, at import time, a module that imports it back."""
    assert _cycles(_graph(import_time_only=True)) == []


def test_a_cycle_is_found_when_there_is_one() -> None:
    """The cycle search reports two modules that import each other."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_the_gateway_imports_only_the_workers_contract() -> None:
    """Every import of workers/ in gateway/ (lazy ones too) is of workers.contract."""
    outside = [
        (path, target)
        for path, target in _all_imports("gateway")
        if (target == "workers" or target.startswith("workers."))
        and not (target == "workers.contract" or target.startswith("workers.contract."))
    ]
    assert outside == []


def test_security_imports_no_web_or_task_framework() -> None:
    """security/ imports neither FastAPI/Starlette nor Celery/kombu/billiard."""
    framework = [
        (path, target)
        for path, target in _all_imports("security")
        if target.split(".")[0] in FRAMEWORKS
    ]
    assert framework == []


def test_importing_the_gateway_loads_no_worker_module_outside_the_contract() -> None:
    """``import gateway.app`` in a fresh interpreter loads no workers module but the
    contract's, and no Celery."""
    probe = (
        "import sys, gateway.app\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('workers', 'celery', 'kombu', 'billiard'))\n"
        "print('\\n'.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    loaded = result.stdout.split()
    assert "workers.contract.keys" in loaded  # the probe saw the gateway's imports
    assert [
        name
        for name in loaded
        if name not in {"workers", "workers.contract"} and not name.startswith("workers.contract.")
    ] == []
