"""The flow stays one-way: who may import whom, read from the source (every import statement,
also those inside functions), so a shortcut through the layers fails here rather than in review.

- The gateway core knows no protocol: only the registry (``gateway/protocols.py``) names a
  protocol's folder under ``drivers/``; everything else talks to ``gateway.acquisition``.
- ``drivers/`` knows acquisition, not heating: of the gateway it imports only the acquisition
  interface (``gateway.acquisition``, the ``gateway.bus`` it publishes to and the ``gateway.samples``
  it publishes), the configuration base (``gateway.config_base``) and the log helper
  (``gateway.logs``). One protocol's folder never imports another's.
- The controller's pure core (``PURE_CORE``, with the curve and configuration-base models it is
  built from) imports nothing that does I/O: of ours only itself, and no I/O library. Imports
  under ``if TYPE_CHECKING:`` are not executed and are not counted.
- ``sim/`` is a station, not part of the gateway: it imports nothing of ours, and neither the
  gateway nor the drivers import it (``tooling/``, the tests and the benches do).
- The production packages (``gateway/``, ``drivers/``) import nothing of ``tooling/``, with one
  exception: ``gateway/cli.py`` imports ``tooling.cli`` inside a function, when ``heatgw demo`` or
  ``heatgw sim`` is named (the lazy hook), never at module level.
- The production packages import no numpy, not even inside a function: its shared libraries are
  about 20 MB of a running gateway's memory; the simulator, the benches and tooling may use it.

Each rule is a function of the tree's root; ``test_every_rule_finds_its_violation`` runs each on a
small tree that breaks it, so no rule here passes because it cannot fail.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

REGISTRY = "gateway/protocols.py"
OURS = ("gateway", "drivers", "sim", "tooling", "tests", "bench")
DRIVERS_MAY_IMPORT = ("gateway.acquisition", "gateway.bus", "gateway.samples", "gateway.config_base", "gateway.logs")
PURE_CORE = tuple(f"gateway.control.{name}" for name in (
    "controller", "comfort", "learned", "loops", "model", "outdoor", "rooms", "safety", "season", "settings",
    "stored"))
PURE_SHARED = ("gateway.curves", "gateway.config_base")
"""The heating-curve model and the configuration base the core's settings are built from."""
IO_LIBRARIES = (
    "asyncio", "socket", "selectors", "select", "ssl", "signal", "subprocess", "threading", "multiprocessing",
    "concurrent", "os", "io", "shutil", "tempfile", "pathlib", "sqlite3", "logging", "time", "urllib", "http",
    "paho", "pymodbus", "asyncua", "influxdb_client", "prometheus_client", "serial", "yaml", "rich", "typer")
"""Libraries whose purpose is I/O (files, sockets, processes, logs, the terminal) or a clock."""
LAZY_HOOK = ("gateway/cli.py", "tooling.cli")
"""The one production module that may import tooling, and what: inside a function only."""


@dataclass(frozen=True)
class Import:
    module: str
    line: int
    top_level: bool  # runs when the importing module is imported (not inside a function)
    typing_only: bool  # under ``if TYPE_CHECKING:``: never executed


def imports(path: Path, root: Path) -> Iterator[Import]:
    """Every module ``path`` imports, absolute, including ``from package import name`` as ``package.name``."""
    package = path.relative_to(root).with_suffix("").parts[:-1]

    def visit(node: ast.AST, top_level: bool, typing_only: bool) -> Iterator[Import]:
        if isinstance(node, ast.Import):
            yield from (Import(alias.name, node.lineno, top_level, typing_only) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join((*package[: len(package) - node.level + 1], *filter(None, [node.module])))
            yield Import(base, node.lineno, top_level, typing_only)
            yield from (Import(f"{base}.{alias.name}", node.lineno, top_level, typing_only) for alias in node.names)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                yield from visit(child, top_level, True)
            for child in node.orelse:
                yield from visit(child, top_level, typing_only)
            return
        function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            yield from visit(child, top_level and not function, typing_only)

    yield from visit(ast.parse(path.read_text(), str(path)), True, False)


def _files(root: Path, *folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (root / folder).rglob("*.py"))


def _name(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _within(module: str, *prefixes: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def protocol_folders(root: Path) -> list[str]:
    return sorted(f"drivers.{p.name}" for p in (root / "drivers").iterdir() if (p / "__init__.py").exists())


Found = list[tuple[str, str]]


def core_imports_of_protocols(root: Path) -> Found:
    folders = protocol_folders(root)
    return [(_name(path, root), i.module) for path in _files(root, "gateway") if _name(path, root) != REGISTRY
            for i in imports(path, root) if _within(i.module, *folders)]


def driver_imports_beyond_acquisition(root: Path) -> Found:
    found: Found = []
    for path in _files(root, "drivers"):
        name = _name(path, root)
        own = [f for f in protocol_folders(root) if name.startswith(f.replace(".", "/") + "/")]
        others = [f for f in protocol_folders(root) if f not in own]
        found += [(name, i.module) for i in imports(path, root)
                  if (_within(i.module, *OURS) and not _within(i.module, "drivers", *DRIVERS_MAY_IMPORT))
                  or _within(i.module, *others)]
    return found


def _module_path(root: Path, module: str) -> Path:
    path = root.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def pure_core_imports_of_io(root: Path) -> Found:
    modules = (*PURE_CORE, *PURE_SHARED)
    packages = {".".join(m.split(".")[:n]) for m in modules for n in range(1, m.count(".") + 1)}

    def allowed(module: str) -> bool:  # one of the modules, a name defined in one, or a package on their way
        return module in modules or module in packages or module.rpartition(".")[0] in modules

    found: Found = []
    for module in sorted({*modules, *packages}):
        path = _module_path(root, module)
        found += [(_name(path, root), i.module) for i in imports(path, root) if not i.typing_only and (
            (_within(i.module, *OURS) and not allowed(i.module)) or _within(i.module, *IO_LIBRARIES))]
    return found


def simulator_imports_of_ours(root: Path) -> Found:
    return [(_name(path, root), i.module) for path in _files(root, "sim") for i in imports(path, root)
            if _within(i.module, *OURS) and not _within(i.module, "sim")]


def production_imports_of_the_simulator(root: Path) -> Found:
    return [(_name(path, root), i.module) for path in _files(root, "gateway", "drivers")
            for i in imports(path, root) if _within(i.module, "sim")]


def production_imports_of_tooling(root: Path) -> Found:
    return [(_name(path, root), i.module) for path in _files(root, "gateway", "drivers")
            for i in imports(path, root) if _within(i.module, "tooling")
            and ((_name(path, root), i.module.removesuffix(".command")) != LAZY_HOOK or i.top_level)]


def production_imports_of_numpy(root: Path) -> Found:
    return [(_name(path, root), i.module) for path in _files(root, "gateway", "drivers")
            for i in imports(path, root) if _within(i.module, "numpy") and not i.typing_only]


RULES: dict[str, Callable[[Path], Found]] = {
    "core imports a protocol": core_imports_of_protocols,
    "driver imports beyond acquisition": driver_imports_beyond_acquisition,
    "pure core imports I/O": pure_core_imports_of_io,
    "simulator imports ours": simulator_imports_of_ours,
    "production imports the simulator": production_imports_of_the_simulator,
    "production imports tooling": production_imports_of_tooling,
    "production imports numpy": production_imports_of_numpy,
}

BROKEN_TREE = {
    "gateway/__init__.py": "",
    "gateway/protocols.py": "import drivers.modbus\n",
    "gateway/cli.py": "from tooling.cli import command\n",  # the lazy hook, but at module level
    "gateway/alarms.py": "def f():\n    from drivers.modbus import codec\n",
    "gateway/report.py": "def f():\n    import sim.station\n",
    "gateway/control/__init__.py": "",
    "gateway/control/controller.py": "from gateway.control import memory\n",
    "gateway/control/rooms.py": "def f():\n    import asyncio\n",
    "gateway/control/model.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pathlib import Path\n",
    "gateway/curves.py": "",
    "gateway/config_base.py": "",
    "gateway/control/comfort.py": "", "gateway/control/learned.py": "", "gateway/control/loops.py": "",
    "gateway/control/outdoor.py": "", "gateway/control/safety.py": "", "gateway/control/season.py": "",
    "gateway/control/settings.py": "", "gateway/control/stored.py": "",
    "drivers/__init__.py": "",
    "drivers/modbus/__init__.py": "",
    "drivers/modbus/poller.py": "from gateway.acquisition.device import Device\ndef f():\n    from gateway.mqtt import payloads\n",
    "drivers/modbus/codec.py": "def decode():\n    import numpy as np\n",
    "drivers/opcua/__init__.py": "",
    "drivers/opcua/session.py": "from drivers.modbus.codec import decode\n",
    "sim/__init__.py": "",
    "sim/station.py": "from sim.weather import Weather\nimport gateway.config\n",
}
EXPECTED = {
    "core imports a protocol": {("gateway/alarms.py", "drivers.modbus")},
    "driver imports beyond acquisition": {("drivers/modbus/poller.py", "gateway.mqtt"),
                                          ("drivers/opcua/session.py", "drivers.modbus.codec")},
    "pure core imports I/O": {("gateway/control/controller.py", "gateway.control.memory"),
                              ("gateway/control/rooms.py", "asyncio")},
    "simulator imports ours": {("sim/station.py", "gateway.config")},
    "production imports the simulator": {("gateway/report.py", "sim.station")},
    "production imports tooling": {("gateway/cli.py", "tooling.cli")},
    "production imports numpy": {("drivers/modbus/codec.py", "numpy")},
}


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_finds_its_violation(rule: str, tmp_path: Path) -> None:
    for name, text in BROKEN_TREE.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert {(name, module) for name, module in RULES[rule](tmp_path)
            if not any(module.startswith(f"{m}.") for _, m in EXPECTED[rule])} == EXPECTED[rule]


def test_the_registry_is_seen_importing_the_modbus_driver() -> None:
    # The scanner itself works on the real tree: the one allowed import of a protocol folder is found.
    assert "drivers.modbus" in protocol_folders(ROOT)
    assert any(_within(i.module, "drivers.modbus") for i in imports(ROOT / REGISTRY, ROOT))


def test_the_gateway_core_imports_no_protocol_folder() -> None:
    assert core_imports_of_protocols(ROOT) == []


def test_a_driver_imports_of_the_gateway_only_the_acquisition_interface_and_the_configuration_base() -> None:
    assert driver_imports_beyond_acquisition(ROOT) == []


def test_the_controllers_pure_core_imports_nothing_that_does_io() -> None:
    assert all(_module_path(ROOT, module).exists() for module in (*PURE_CORE, *PURE_SHARED))
    assert pure_core_imports_of_io(ROOT) == []


def test_the_simulator_imports_nothing_of_ours() -> None:
    assert simulator_imports_of_ours(ROOT) == []


def test_neither_the_gateway_nor_the_drivers_import_the_simulator() -> None:
    assert production_imports_of_the_simulator(ROOT) == []


def test_the_production_packages_import_tooling_only_through_the_lazy_cli_hook() -> None:
    hook = [i for i in imports(ROOT / LAZY_HOOK[0], ROOT) if _within(i.module, "tooling")]
    assert hook and not any(i.top_level for i in hook)  # the hook is there, inside a function
    assert production_imports_of_tooling(ROOT) == []


def _last_line_printed_by(code: str) -> str:
    """Run ``code`` in a fresh interpreter at the root (so sys.modules starts empty); its last line."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()[-1]


def test_the_production_commands_load_no_tooling_and_nothing_of_the_simulator() -> None:
    # What actually runs, not only what the source says: `heatgw check` on the example station,
    # and every module `heatgw run`, `read` and the historian bridge start from.
    code = ("import sys\nsys.argv = ['heatgw', 'check', 'config/station.yaml']\n"
            "import gateway.app, gateway.historian.bridge, gateway.protocols, gateway.read_view\n"
            "from gateway.cli import main\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tooling', 'sim')))")
    assert _last_line_printed_by(code) == "[]"


def test_the_production_packages_import_no_numpy() -> None:
    assert production_imports_of_numpy(ROOT) == []


def test_heatgw_run_loads_no_numpy() -> None:
    # What `heatgw run` loads, not only what the source says: the CLI, the example station with
    # the example controller checked as at start-up, and the gateway built (devices, write queue,
    # controller, outbox) in a running loop, as its drivers need one.
    code = ("import asyncio, sys, tempfile\nfrom pathlib import Path\n"
            "import gateway.cli\nfrom gateway.app import Gateway\nfrom gateway.preflight import load_startup\n"
            "startup = load_startup(Path('config/station.yaml'), Path('config/controller.yaml'))\n"
            "async def build(state):\n"
            "    gateway = Gateway(startup.station, state_dir=Path(state), controller=startup.controller)\n"
            "    assert gateway.devices and gateway.controller is not None\n"
            "with tempfile.TemporaryDirectory() as state:\n    asyncio.run(build(state))\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'numpy'))")
    assert _last_line_printed_by(code) == "[]"
