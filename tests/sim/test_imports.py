"""The simulator stands alone: nothing in sim/ imports the gateway, the drivers or the tooling (architecture rule)."""

from __future__ import annotations

import ast
from pathlib import Path

SIM = Path(__file__).resolve().parents[2] / "sim"


def test_sim_imports_nothing_of_the_gateway_or_the_drivers() -> None:
    offending = []
    for path in sorted(SIM.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offending += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("gateway", "drivers", "tooling", "bench")]
    assert not offending
