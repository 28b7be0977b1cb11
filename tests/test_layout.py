"""The package's shape: no import cycle between ragkit's modules, and modules stay readable in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ragkit"
LONG = 400  # lines; a longer module says why at its top
REASON = "Why this module is long:"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """ragkit modules that ``path`` imports, at module level or inside functions (not the lazy facade)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and (node.module + ".").startswith("ragkit."):
            submodules = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
            found |= submodules
            if node.module in modules and node.module != "ragkit" and len(submodules) < len(node.names):
                found.add(node.module)  # names defined in the module itself (not only its submodules)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ragkit.") and a.name in modules}
    return found


def test_no_import_cycle_between_modules():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target] if target in path else [name, target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, path + [target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_long_modules_say_why():
    for name, path in sorted(_modules().items()):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > LONG:
            docstring = ast.get_docstring(ast.parse(text)) or ""
            assert REASON in docstring, f"{name} has {len(text.splitlines())} lines and no '{REASON}' at its top"
