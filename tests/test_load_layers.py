"""The load package is built by concept: each module owns one idea (its docstring says which),
and imports only modules below it, so the import graph has no cycle and no arrow back up."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "syncpipe" / "services" / "load"
#: bottom to top: a module may import only modules to its left
LAYERS = [
    "cut",
    "tables",
    "records",
    "header",
    "scan",
    "ledger",
    "claim",
    "rejects",
    "errors",
    "copying",
    "upsert",
    "dupes",
    "state",
    "keymatch",
    "lane",
    "slow",
    "fast",
    "driver",
    "loader",
]
PREFIX = "syncpipe.services.load"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == PREFIX:
                found |= {alias.name for alias in node.names}
            elif node.module.startswith(PREFIX + "."):
                found.add(node.module.removeprefix(PREFIX + ".").split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PREFIX + "."):
                    found.add(alias.name.removeprefix(PREFIX + ".").split(".")[0])
    return found


def test_every_module_is_in_a_layer_and_says_what_it_owns() -> None:
    """No module is left out of the layering, and each has a docstring."""
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(LAYERS)
    for name in LAYERS:
        tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), name


def test_modules_import_only_layers_below_them() -> None:
    """No import cycle, no arrow back up."""
    for level, name in enumerate(LAYERS):
        above = set(LAYERS[level:])
        assert not _imports(PACKAGE / f"{name}.py") & above, name
