"""The command line as an operator meets it: version, log levels, help text, the same options everywhere."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from gateway.cli import app
from gateway.control.curve_cli import POINT_COLUMNS, read_points
from sim.faults import FAULT_KINDS, Faults
from sim.plant import PlantFaults

ROOT = Path(__file__).resolve().parents[2]
CURVE = ROOT / "config" / "curves" / "radiators-75-50.yaml"


def heatgw(*args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """``heatgw ARGS`` in a fresh interpreter, after ``prelude`` (Python) has run in it."""
    code = f"{prelude}\nimport sys\nsys.argv = ['heatgw', *sys.argv[1:]]\nfrom gateway.cli import main\nmain()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group under ``command`` (typer's own click), as the words that name it,
    asked as the command line asks (``list_commands``, ``get_command``), so the lazily mounted
    tooling commands (``demo``, ``sim``) are among them."""
    found = [path]
    if hasattr(command, "list_commands"):
        context = typer.Context(command)
        for name in command.list_commands(context):
            found += command_paths(command.get_command(context, name), (*path, name))
    return found


COMMANDS = command_paths(typer.main.get_command(app))


def test_version_prints_the_installed_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"heatgw {version('heatgw')}\n"


def test_an_unknown_log_level_is_refused_in_one_clear_line_without_a_traceback() -> None:
    for args in (("--log-level", "verbose", "check", str(CURVE)),
                 ("historian", "--log-level", "verbose", "check", str(ROOT / "config" / "historian.yaml"))):
        proc = heatgw(*args)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "'verbose' is not one of 'debug', 'info', 'warning', 'error'" in proc.stderr


def test_a_log_level_is_taken_in_any_case() -> None:
    assert CliRunner().invoke(app, ["--log-level", "DEBUG", "check", str(CURVE)]).exit_code == 0


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "heatgw")
def test_help_shows_a_value_type_only_for_options_that_take_a_value(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.stdout
    assert "--help                " in result.stdout or "--help  " in result.stdout


def test_check_takes_the_station_and_controller_as_run_does() -> None:
    runner = CliRunner()
    for command in ("check", "run"):
        help_text = runner.invoke(app, [command, "--help"], terminal_width=100).stdout
        assert "--config" in help_text and "--controller" in help_text, command
    result = runner.invoke(app, ["check", "--config", str(ROOT / "config" / "station.yaml"),
                                 "--controller", str(ROOT / "config" / "controller.yaml")])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("ok ") == 2


def test_a_controller_without_its_station_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["check", "--controller", str(ROOT / "config" / "controller.yaml")])
    assert result.exit_code == 2
    assert "give --config too" in result.output


def test_historian_check_takes_config_like_run_and_still_the_file_by_position(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("not-a-token\n")
    historian = tmp_path / "historian.yaml"
    historian.write_text((ROOT / "config" / "historian.yaml").read_text().replace("/etc/heatgw/historian-token", str(token)))
    runner, config = CliRunner(), str(historian)
    for args in (["historian", "check", "--config", config], ["historian", "check", config]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"ok {config}: historian ")
    both = runner.invoke(app, ["historian", "check", "--config", config, str(ROOT / "config" / "station.yaml")])
    assert both.exit_code == 2
    assert "two files given" in both.output


def test_curve_png_without_matplotlib_says_how_to_get_it_in_one_line(tmp_path: Path) -> None:
    png = tmp_path / "curve.png"
    proc = heatgw("curve", str(CURVE), "--png", str(png), prelude="import sys; sys.modules['matplotlib'] = None")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert "matplotlib" in line and "heatgw[plot]" in line and "pip install" in line
    assert not png.exists()


def test_curve_help_names_the_points_columns_the_reader_reads(tmp_path: Path) -> None:
    help_text = " ".join(CliRunner().invoke(app, ["curve", "--help"], terminal_width=200).stdout.split())
    assert f"columns {POINT_COLUMNS[0]} and {POINT_COLUMNS[1]}" in help_text
    assert "supply_c" not in help_text
    points = tmp_path / "points.csv"
    points.write_text(",".join(POINT_COLUMNS) + "\n-5,62.5\n0,55\n")
    outdoor, setpoint = read_points(points)
    assert list(outdoor) == [-5.0, 0.0] and list(setpoint) == [62.5, 55.0]


def test_sim_fault_help_lists_every_kind_with_one_line_each() -> None:
    help_text = CliRunner().invoke(app, ["sim", "fault", "--help"], terminal_width=200).stdout
    listed = [line.strip() for line in help_text.splitlines() if line.startswith("    ")]
    assert [line.split(" ", 1)[0].rstrip(":") for line in listed] == list(FAULT_KINDS)
    assert "leak --m3h M3H: Secondary water escapes" in help_text
    assert "freeze --sensor SENSOR [--value VALUE]: " in help_text
    for kind in FAULT_KINDS:  # what the help offers, both kinds of simulated station take
        assert callable(getattr(Faults, kind)) and callable(getattr(PlantFaults, kind))
