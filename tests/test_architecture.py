"""The layering of docs/architecture.md, held against the code: a module imports only from its own
layer or lower ones, never another module's private names, no import cycles, and no module is
over 500 lines. Read from the source with `ast` (nothing is imported or run)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

PACKAGE = ROOT / "forensic_vsr"
# Lowest first, as in docs/architecture.md. A module's layer is that of its longest matching prefix.
LAYERS: list[tuple[str, ...]] = [
    (
        "forensic_vsr",
        "forensic_vsr.errors",
        "forensic_vsr.timebase",
        "forensic_vsr.resources",
        "forensic_vsr.layout",
        "forensic_vsr.atomic",
        "forensic_vsr.progress",
        "forensic_vsr.allocator",
        "forensic_vsr.signals",
        "forensic_vsr._data",
    ),
    ("forensic_vsr.integrity",),
    ("forensic_vsr.media", "forensic_vsr.environment"),
    ("forensic_vsr.policy",),
    ("forensic_vsr.audit",),
    ("forensic_vsr.models",),
    ("forensic_vsr.ops",),
    ("forensic_vsr.uncertainty",),
    ("forensic_vsr.report", "forensic_vsr.benchmark", "forensic_vsr.training"),
    ("forensic_vsr.recipe",),
    ("forensic_vsr.judgement", "forensic_vsr.bundle", "forensic_vsr.storage"),
    ("forensic_vsr.pipeline", "forensic_vsr.dry_run", "forensic_vsr.distributed"),
    ("forensic_vsr.reproduce", "forensic_vsr.batch"),
    ("forensic_vsr.cli", "forensic_vsr.review", "forensic_vsr.__main__"),
]


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    best, layer = -1, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, layer = len(name), i
    assert layer >= 0, f"{module} is in no layer of tests/test_architecture.py (add it, and to docs/architecture.md)"
    return layer


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import in the file, lazy ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("forensic_vsr"):
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("forensic_vsr")]
    return found


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "_data" not in p.parts)


def test_lower_layers_never_import_higher_ones() -> None:
    wrong = []
    for path in SOURCES:
        mod = _module(path)
        for target, _names in _imports(path):
            if _layer(target) > _layer(mod):
                wrong.append(f"{mod} (layer {_layer(mod)}) imports {target} (layer {_layer(target)})")
    assert not wrong, "\n".join(wrong)


def _module_aliases(path: Path) -> set[str]:
    """Names a file binds to our own modules (`from forensic_vsr.cli import commands`, `import forensic_vsr.x as y`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("forensic_vsr"):
            found |= {
                a.asname or a.name
                for a in node.names
                if (PACKAGE.parent / (node.module + "." + a.name).replace(".", "/")).exists()
                or (PACKAGE.parent / ((node.module + "." + a.name).replace(".", "/") + ".py")).exists()
            }
        elif isinstance(node, ast.Import):
            found |= {a.asname for a in node.names if a.name.startswith("forensic_vsr") and a.asname}
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    wrong = [
        f"{_module(path)} imports {name} from {target}"
        for path in SOURCES
        for target, names in _imports(path)
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    for path in SOURCES:  # nor reaches into one: `commands._examiner(...)`
        aliases = _module_aliases(path)
        for node in ast.walk(ast.parse(path.read_text())):
            private = isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
            if private and isinstance(node.value, ast.Name) and node.value.id in aliases:
                wrong.append(f"{_module(path)} uses {node.value.id}.{node.attr}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for path in SOURCES:
        mod = _module(path)
        graph[mod] = {t for t, _ in _imports(path) if t != mod}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt] if nxt in stack else [node, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt in graph and not state.get(nxt):
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for mod in graph:
        if not state.get(mod):
            visit(mod, [mod])


def test_no_module_is_over_500_lines() -> None:
    long = [f"{p.relative_to(ROOT)}: {n} lines" for p in SOURCES if (n := len(p.read_text().splitlines())) > 500]
    assert not long, "\n".join(long)
