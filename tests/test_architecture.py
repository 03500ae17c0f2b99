"""The layout reads as the architecture: import rules between packages, checked on the source.

Module-level imports only (deferred imports inside functions and `if TYPE_CHECKING:` blocks are
not edges): a circle or a layer reaching upward fails here rather than in a reader's head.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = ("masking", "policies", "proxy")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.add(mod)
            # `from pkg import sub` may name a submodule.
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m in _top_level_imports(path) if m in modules and m != name}
    return graph


def _external(prefix: str) -> dict[str, set[str]]:
    files = [p for p in (ROOT / prefix.replace(".", "/")).rglob("*.py")]
    return {_module_name(p): _top_level_imports(p) for p in files}


def test_no_import_circles() -> None:
    graph = _graph()
    # A package's __init__ re-exporting its modules is not a circle of logic.
    for name in list(graph):
        graph[name] = {m for m in graph[name] if not (name.startswith(m + ".") and m in PACKAGES)}
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def _violations(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for mod, imports in _external(prefix).items():
        for imp in imports:
            if any(imp == f or imp.startswith(f + ".") for f in forbidden):
                bad.append(f"{mod} imports {imp}")
    return sorted(bad)


def test_masking_is_a_library_on_its_own() -> None:
    assert _violations("masking", ("policies", "proxy", "sqlglot", "asyncio", "socket", "yaml")) == []


def test_policies_know_no_protocol_and_no_io_loop() -> None:
    assert _violations("policies", ("proxy", "asyncio", "socket", "psycopg")) == []


def test_protocol_packages_hold_wire_code_only() -> None:
    # SQL is read by policies/; a protocol session asks the gate.
    assert _violations("proxy.pg", ("sqlglot", "yaml", "prometheus_client")) == []
    # The HTTP side asks the gate too; mitmproxy is its only I/O, and only through hooks.
    assert _violations("proxy.http", ("sqlglot", "yaml", "prometheus_client", "socket")) == []


def test_shared_services_know_no_protocol_and_no_sql() -> None:
    # A second protocol reuses core/ and services/ as they are: they must not lean on one.
    forbidden = ("proxy.pg", "proxy.mysql", "proxy.http", "sqlglot")
    assert _violations("proxy.services", forbidden) == []
    assert _violations("proxy.core", (*forbidden, "policies")) == []
