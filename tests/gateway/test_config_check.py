"""`heatgw check`: every broken file gives file:line:field and exit 2, never a traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.config import load_gateway_config
from gateway.control.loader import load_curve

ROOT = Path(__file__).resolve().parents[2]
BROKEN = sorted((ROOT / "tests" / "data" / "broken").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (\d+) (.+?) \| (.+)$")


def expectation(path: Path) -> tuple[int, str, str]:
    match = EXPECT.match(path.read_text().splitlines()[0] if path.read_text() else "")
    assert match, f"{path.name} lacks its '# expect: LINE FIELD | TEXT' header"
    return int(match[1]), match[2], match[3]


def test_the_broken_set_covers_the_kinds_of_mistake() -> None:
    assert len(BROKEN) >= 20


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_config_names_file_line_and_field(path: Path) -> None:
    line, field, fragment = expectation(path)
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    first = result.stderr.strip().splitlines()[0]
    assert first.startswith(f"{path}:{line}:"), first
    assert f": {field}:" in first, first
    assert fragment in first, first


def test_real_command_exits_2_without_traceback_for_every_broken_file() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "check", *map(str, BROKEN)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    for path in BROKEN:
        assert f"{path}:" in proc.stderr, f"no message for {path.name}"


def test_missing_file_is_a_clear_error() -> None:
    result = CliRunner().invoke(app, ["check", "/nonexistent/station.yaml"])
    assert result.exit_code == 2
    assert "/nonexistent/station.yaml: cannot read file" in result.stderr


def test_shipped_configs_are_valid() -> None:
    files = [ROOT / "config" / "station.yaml", *sorted((ROOT / "config" / "curves").glob("*.yaml"))]
    result = CliRunner().invoke(app, ["check", *map(str, files)])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("ok ") == len(files)


def test_station_config_cross_references() -> None:
    config = load_gateway_config(ROOT / "config" / "station.yaml")
    tags = config.tags()
    device, setpoint = tags["supply_setpoint"]
    assert device == "plc"
    assert setpoint.writable is not None and setpoint.writable.max == 90
    assert tags["outdoor_temp"][1].data_type == "int16"
    assert tags["pump_run_command"][1].data_type == "bool"


def test_physical_curve_matches_the_quality_regulation_formula() -> None:
    # Worked values from the domain brief: 75/50 radiators at -7.6 C design, 18 C design room.
    curve = load_curve(ROOT / "config" / "curves" / "radiators-75-50.yaml")
    at = curve.supply_at([-7.6, 0.0, 10.0])
    assert at[0] == pytest.approx(75.0, abs=0.05)
    assert at[1] == pytest.approx(60.7, abs=0.1)
    assert at[2] == pytest.approx(40.1, abs=0.1)
    # Colder than design extrapolates upwards until max_supply_c; warm weather clamps at min.
    assert curve.supply_at(-30.0) == pytest.approx(curve.max_supply_c)
    assert curve.supply_at(25.0) == pytest.approx(curve.min_supply_c)


def test_point_curve_is_piecewise_linear_and_clamped() -> None:
    curve = load_curve(ROOT / "config" / "curves" / "floor-45-35.yaml")
    assert curve.supply_at(-2.5) == pytest.approx(38.5)
    assert curve.supply_at(-40) == pytest.approx(48.0)
    assert curve.supply_at(30) == pytest.approx(25.0)
    outdoor = np.linspace(-40, 30, 200)
    assert np.all(np.diff(curve.supply_at(outdoor)) <= 0)
