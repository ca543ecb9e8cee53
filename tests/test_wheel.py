"""What ``pip install`` puts on a station: the four packages and the example station, nothing else.

The wheel is built from this checkout (``pip wheel --no-deps``) and unpacked, and the demo is run
from the unpacked copy in an empty directory, so it can only find its station as package data.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.gateway.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"gateway", "drivers", "sim", "tooling"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (built,) = out.glob("heatgw-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel unpacked, as pip would lay it out in site-packages."""
    target = tmp_path_factory.mktemp("site-packages")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


def test_the_wheel_installs_the_four_packages_and_no_tests_or_benches(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        top = {name.split("/")[0] for name in archive.namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert top == PACKAGES


def test_the_wheel_ships_every_example_file_the_demo_and_the_simulator_read(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name.removeprefix("tooling/config/") for name in archive.namelist() if name.startswith("tooling/config/")}
    examples = {path.relative_to(ROOT / "config").as_posix() for path in (ROOT / "config").rglob("*") if path.is_file()}
    assert {"station.yaml", "controller.yaml", "curves/radiators-75-50.yaml", "stations/demo-beijing.yaml"} <= examples
    assert shipped == examples


def test_an_installed_heatgw_demo_runs_its_shipped_station_outside_a_checkout(installed: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(installed)}  # ahead of the checkout's editable install
    where = subprocess.run([sys.executable, "-c", "import tooling.cli; print(tooling.cli.EXAMPLE_CONFIG)"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert where.stdout.strip() == str(installed / "tooling" / "config"), where.stderr
    command = [sys.executable, "-m", "gateway", "demo", "--duration", "8", "--no-live",
               "--port", str(free_port()), "--control-port", str(free_port()),
               "--mqtt-port", str(free_port()), "--tsdb-port", str(free_port())]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'msg="device online" device=plc' in proc.stderr
    assert "setpoint writes" in proc.stdout
