"""Curves as the controller uses them, the curve command, and the controller file's validation."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from gateway.control.curve_cli import curve_command, read_points
from gateway.config import load_gateway_config
from gateway.control.loader import describe_problems, load_controller_config, load_curve, tag_problems
from gateway.yaml_source import ConfigError
from tests.control.conftest import CONFIG_DIR, CONTROLLER_YAML, ROOT

RADIATORS = load_curve(CONFIG_DIR / "curves" / "radiators-75-50.yaml")
FLOOR = load_curve(CONFIG_DIR / "curves" / "floor-45-35.yaml")


def test_serving_another_room_temperature_is_exact_for_the_physical_form() -> None:
    warmer = RADIATORS.model_copy(update={"room_c": 20.0})
    outdoor = np.array([-7.6, 0.0, 5.0])
    assert RADIATORS.supply_for_room(outdoor, 20.0) == pytest.approx(warmer.supply_at(outdoor))
    assert RADIATORS.supply_for_room(outdoor, 18.0) == pytest.approx(RADIATORS.supply_at(outdoor))


def test_a_table_is_shifted_the_same_way_and_both_stay_clamped() -> None:
    # one kelvin warmer rooms: the table read one kelvin colder, plus one kelvin
    assert float(FLOOR.supply_for_room(-2.5, 19.0)) == pytest.approx(float(FLOOR.supply_at(-3.5)) + 1.0)
    assert float(FLOOR.supply_for_room(-40.0, 26.0)) == FLOOR.max_supply_c
    assert float(RADIATORS.supply_for_room(25.0, 10.0)) == RADIATORS.min_supply_c
    supply = RADIATORS.supply_for_room(np.linspace(-20, 20, 81), 18.3)
    assert np.all(np.diff(supply) <= 0)  # still never rising with outdoor temperature


def test_design_return_of_the_physical_form() -> None:
    returns = RADIATORS.return_at([-7.6, 0.0])
    assert returns is not None and returns[0] == pytest.approx(50.0)
    assert FLOOR.return_at(0.0) is None


def test_curve_command_prints_the_table_and_draws_the_plot(tmp_path: Path) -> None:
    points = tmp_path / "points.csv"
    points.write_text("outdoor_c,setpoint_c\n-5,68.5\n0,57.1\n")
    out = io.StringIO()
    assert curve_command(CONFIG_DIR / "curves" / "radiators-75-50.yaml", tmp_path / "curve.png", points, out=out) == 0
    text = out.getvalue()
    assert "demo-01-radiators v1 (2026-10-20)" in text
    assert "     -7.6      75.0      50.0" in text and "      0.0      60.7      43.1" in text
    png = (tmp_path / "curve.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_curve_command_refuses_a_broken_curve_with_file_and_line() -> None:
    err = io.StringIO()
    broken = ROOT / "tests" / "data" / "broken" / "curve_rising.yaml"
    assert curve_command(broken, out=io.StringIO(), err=err) == 2
    assert err.getvalue().startswith(f"{broken}:7:")


def test_operating_points_need_their_columns(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("t,sp\n1,2\n")
    with pytest.raises(ConfigError, match="outdoor_c and setpoint_c"):
        read_points(bad)


def test_the_shipped_controller_file_loads_with_its_curves_and_matches_the_station() -> None:
    config = load_controller_config(CONTROLLER_YAML)
    assert config.curves["radiators"].name == "demo-01-radiators"
    station = load_gateway_config(ROOT / "config" / "station.yaml")
    writable = {tag: cfg.writable is not None for tag, (_, cfg) in station.tags().items()}
    assert tag_problems(config.settings, writable) == []
    wrong = config.settings.model_copy(update={"circuits": {"radiators": config.settings.circuits["radiators"].model_copy(
        update={"setpoint_tag": "outdoor_temp", "supply_tag": "supply_temp"})}})
    assert describe_problems(tag_problems(wrong, writable)) == [
        "controller.circuits.radiators.supply_tag: unknown tag 'supply_temp'",
        "controller.circuits.radiators.setpoint_tag: tag 'outdoor_temp' is not writable",
    ]


@pytest.mark.parametrize(("change", "where", "message"), [
    (("night_c: 16", "night_c: 19"), "controller.circuits.radiators.comfort", "night_c must not be above day_c"),
    (("heating_from: \"11-15\"", "heating_from: \"11-31\""), "controller.season.heating_from", "11-31 is not a day of the year"),
    (("max_offset_k: 5", "max_offset_k: 50"), "controller.dispatch.max_offset_k", "less than or equal to 20"),
    (("[{outdoor_c: -15, value: 64}, {outdoor_c: -7.6, value: 60}", "[{outdoor_c: -7.6, value: 64}, {outdoor_c: -15, value: 60}"),
     "controller.circuits.radiators.return_limit.line", "sorted by outdoor_c"),
    (("curve: curves/radiators-75-50.yaml", "curve: curves/missing.yaml"), "circuit radiators", "cannot read file"),
])
def test_a_broken_controller_file_is_refused_with_the_place(tmp_path: Path, change: tuple[str, str],
                                                            where: str, message: str) -> None:
    text = CONTROLLER_YAML.read_text()
    assert change[0] in text
    (tmp_path / "curves").symlink_to(CONFIG_DIR / "curves")
    path = tmp_path / "controller.yaml"
    path.write_text(text.replace(change[0], change[1]))
    with pytest.raises(ConfigError) as caught:
        load_controller_config(path)
    first = caught.value.messages[0]
    assert where in first and message in first, first


def test_a_station_file_with_a_controller_section_loads_too(tmp_path: Path) -> None:
    station = (ROOT / "config" / "station.yaml").read_text()
    (tmp_path / "curves").symlink_to(CONFIG_DIR / "curves")
    (tmp_path / "plain.yaml").write_text(station)
    with pytest.raises(ConfigError, match="controller: no controller section in this station file"):
        load_controller_config(tmp_path / "plain.yaml")
    section = CONTROLLER_YAML.read_text().split("\ncontroller:\n", 1)[1]
    (tmp_path / "station.yaml").write_text(station + "\ncontroller:\n" + section)
    config = load_controller_config(tmp_path / "station.yaml")
    assert config.settings.circuits["radiators"].setpoint_tag == "supply_setpoint"
