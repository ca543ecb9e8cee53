"""The flow stays one-way: who may import whom, read from the source (every import statement,
also those inside functions), so a shortcut through the layers fails here rather than in review.

- The gateway core knows no protocol: only the registry (``gateway/protocols.py``) names a
  protocol's folder under ``drivers/``; everything else talks to ``gateway.acquisition``.
- A protocol's folder knows acquisition, not heating: no controller, alarms, MQTT, historian or
  report, and not the wiring that imports drivers (app, station config, registry).
- One protocol's folder never imports another's.
- ``sim/`` is a station, not part of the gateway: it imports nothing of ours, and only ``tooling/``
  (demo, dev stack, simulation harness and clock, the ``demo``/``sim`` commands) imports it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

REGISTRY = "gateway/protocols.py"
DRIVER_FORBIDDEN = ("gateway.control", "gateway.alarms", "gateway.mqtt", "gateway.historian", "gateway.report",
                    "gateway.app", "gateway.config", "gateway.protocols")
OURS = ("gateway", "drivers", "sim", "tooling", "tests", "bench")


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def imported(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, absolute, including ``from package import module`` names."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join((*package[: len(package) - node.level + 1], *filter(None, [node.module])))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _within(module: str, *prefixes: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def protocol_folders() -> list[str]:
    return sorted(f"drivers.{p.name}" for p in (ROOT / "drivers").iterdir() if (p / "__init__.py").exists())


def test_the_registry_is_seen_importing_the_modbus_driver() -> None:
    # The scanner itself works: the one allowed import of a protocol folder is found.
    assert "drivers.modbus" in protocol_folders()
    assert any(_within(module, "drivers.modbus") for module in imported(ROOT / REGISTRY))


def test_the_gateway_core_imports_no_protocol_folder() -> None:
    folders = protocol_folders()
    found = [(_name(path), module) for path in _files("gateway") if _name(path) != REGISTRY
             for module in imported(path) if _within(module, *folders)]
    assert found == []


def test_a_protocol_folder_imports_neither_heating_nor_the_wiring_nor_another_protocol() -> None:
    found = []
    for folder in protocol_folders():
        others = [other for other in protocol_folders() if other != folder]
        for path in _files(folder.replace(".", "/")):
            found += [(_name(path), module) for module in imported(path)
                      if _within(module, *DRIVER_FORBIDDEN, *others)]
    assert found == []


def test_the_simulator_imports_nothing_of_ours() -> None:
    found = [(_name(path), module) for path in _files("sim") for module in imported(path)
             if _within(module, *OURS) and not _within(module, "sim")]
    assert found == []


def test_neither_the_gateway_nor_the_drivers_import_the_simulator() -> None:
    found = [(_name(path), module) for path in _files("gateway") + _files("drivers")
             for module in imported(path) if _within(module, "sim")]
    assert found == []
