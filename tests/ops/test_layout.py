"""The layout holds: no import cycle between the packages of agent/ (nor from the plugins,
the clip cache or auth back into agent/), and nothing reads another object's private
members outside the tests (ruff SLF001, run by .ci/run; checked here by its own rule)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOP = ("agent", "plugins", "cache", "auth")


def node_of(module: str) -> str | None:
    """``agent.session.voice_manager`` → ``agent.session``; a top-level module of agent/ is
    its own node (``agent.settings``); plugins, cache and auth are one node each."""
    parts = module.split(".")
    if parts[0] not in TOP:
        return None
    if parts[0] != "agent":
        return parts[0]
    return ".".join(parts[:2]) if len(parts) > 1 else "agent"


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth, except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    )
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in child.names)
            visit(child)

    visit(tree)
    return found


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for top in TOP:
        for path in (REPO / top).rglob("*.py"):
            source = node_of(module_name(path))
            if source is None or module_name(path) == "agent.__main__":
                continue  # the CLI imports every command: it is the root, not a package
            for target in imports(path):
                node = node_of(target)
                if node is None or node == source:
                    continue
                if (REPO / node.replace(".", "/")).exists() or (
                    REPO / (node.replace(".", "/") + ".py")
                ).exists():
                    graph[source].add(node)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_no_import_cycle_between_packages() -> None:
    graph = package_graph()
    assert graph["agent.session"] and graph["agent.models"]  # the scan found imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_the_engines_below_the_sessions_and_the_plugins_below_the_agent() -> None:
    graph = package_graph()
    assert "agent.session" not in graph["agent.models"]
    assert "agent.inference" not in graph["agent.models"]
    for lower in ("plugins", "cache", "auth"):
        assert not {n for n in graph[lower] if n.startswith("agent")}, lower
