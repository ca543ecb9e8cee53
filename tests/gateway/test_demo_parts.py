"""The demo's pieces that need no process: its configuration on accelerated time, its log throttle,
the controller panel."""

from __future__ import annotations

import logging
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

import pytest
from rich.console import Console

from tooling.demo import demo_config
from tooling.demo_logs import OriginThrottle
from tooling.demo_view import DemoState, controller_panel
from gateway.logs import kv
from tests.control.test_task import STATION, Rig
from tests.gateway.conftest import STATION_YAML, Clock, station_config


def test_write_intervals_are_scaled_to_simulated_time_and_value_limits_are_not() -> None:
    shipped = station_config(5020).tags()
    scaled = demo_config(STATION_YAML, port=25020, mqtt_port=28830, speed=600.0).tags()
    for tag in ("supply_setpoint", "pump_frequency_setpoint"):
        before, after = shipped[tag][1].writable, scaled[tag][1].writable
        assert before is not None and after is not None
        assert after.min_interval_s == pytest.approx(before.min_interval_s / 600.0)  # 10 simulated seconds
        assert (after.min, after.max, after.max_step) == (before.min, before.max, before.max_step)


def test_no_group_polls_slower_than_the_fastest_on_accelerated_time() -> None:
    config = demo_config(STATION_YAML, port=25020, mqtt_port=28830, speed=600.0)
    assert {name: group.interval_s for name, group in config.groups.items()} == {"fast": 1.0, "slow": 1.0}
    assert config.devices["plc"].port == 25020 and config.mqtt is not None and config.mqtt.port == 28830


def test_at_real_time_the_demo_config_keeps_the_station_timing() -> None:
    shipped, demo = station_config(5020), demo_config(STATION_YAML, port=25020, mqtt_port=28830, speed=1.0)
    assert demo.groups == shipped.groups
    assert demo.tags()["supply_setpoint"][1].writable == shipped.tags()["supply_setpoint"][1].writable


def test_a_station_written_with_device_templates_runs_in_the_demo_like_the_station_written_out(tmp_path: Path) -> None:
    # The shipped station, its heat meter given a writable tag, written out and with the meter as
    # a device of a template (its tags published as meter_<tag>: the same names).
    data = yaml.safe_load(STATION_YAML.read_text())
    meter = data["devices"].pop("heat_meter")
    meter["tags"]["meter_power"]["writable"] = {"min": 0, "max": 100, "min_interval_s": 60}
    data["devices"]["meter"] = meter
    data["alarms"]["definitions"]["heat_meter_lost"]["device"] = "meter"
    (tmp_path / "written.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    data["templates"] = {"heat_meter": {**{key: value for key, value in meter.items() if key != "host"},
                                        "tags": {tag.removeprefix("meter_"): cfg for tag, cfg in meter["tags"].items()}}}
    data["devices"]["meter"] = {"template": "heat_meter", "host": "10.1.1.20"}
    (tmp_path / "templated.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))

    written, templated = (demo_config(tmp_path / name, port=25020, mqtt_port=28830, speed=600.0)
                          for name in ("written.yaml", "templated.yaml"))
    assert (templated.devices["meter"].host, templated.devices["meter"].port) == ("127.0.0.1", 25020)
    assert {tag: cfg for tag, (_, cfg) in templated.tags().items()} == {tag: cfg for tag, (_, cfg) in written.tags().items()}
    limits = templated.devices["meter"].tags["meter_power"].writable
    assert limits is not None and limits.min_interval_s == pytest.approx(60 / 600)


def record(throttle: OriginThrottle, message: str, origin: str) -> logging.LogRecord | None:
    record = logging.LogRecord("gateway.writes", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(kv(tag="supply_setpoint", origin=origin))
    return record if throttle.filter(record) else None


def test_the_throttle_passes_one_line_per_message_and_period_and_counts_the_rest() -> None:
    clock = Clock(0.0)
    throttle = OriginThrottle("controller", every_s=10.0, clock=clock)
    assert record(throttle, "write done", "controller") is not None
    for _ in range(5):
        clock.now += 1.0
        assert record(throttle, "write done", "controller") is None
    assert record(throttle, "write refused", "controller") is not None  # another message: its own period
    assert record(throttle, "write done", "dispatch/li") is not None  # other origins are never held back
    clock.now = 10.0
    passed = record(throttle, "write done", "controller")
    assert passed is not None and passed.fields["left_out"] == 5  # type: ignore[attr-defined]
    clock.now = 20.0
    passed = record(throttle, "write done", "controller")
    assert passed is not None and "left_out" not in passed.fields  # type: ignore[attr-defined]


async def test_the_controller_panel_explains_the_night_coast() -> None:
    rig = Rig()  # midnight in Shanghai: the rooms coast
    await rig.run(1800)
    state = rig.task.state
    assert state is not None
    demo = DemoState()
    demo.count(state)
    console = Console(record=True, width=160)
    console.print(controller_panel(state, demo, ZoneInfo(STATION.station.timezone)))
    text = console.export_text()
    assert "night coast" in text and "heating (heating season)" in text
    assert f"decided {state.circuits[0].setpoint_c:.2f} °C" in text
    assert "return " in text and "power " in text  # both limiters, with their lines
    assert f"{demo.writes} in 1 cycles" in text
    console.print(controller_panel(None, DemoState(), ZoneInfo("UTC")))
    assert "waiting for the first cycle" in console.export_text()


def test_the_opcua_station_file_runs_its_plc_on_the_simulator_s_opcua_port_and_its_meter_on_modbus() -> None:
    config = demo_config(STATION_YAML.with_name("station-opcua.yaml"), port=25020, mqtt_port=28830, speed=600.0,
                         opcua_port=24840)
    plc, meter = config.devices["plc"], config.devices["heat_meter"]
    assert plc.protocol == "opcua" and plc.endpoint == "opc.tcp://127.0.0.1:24840/heatgw/station"  # type: ignore[union-attr]
    assert meter.protocol == "modbus_tcp" and meter.port == 25020  # type: ignore[union-attr]
    assert plc.tags["supply_setpoint"].writable.min_interval_s == pytest.approx(10 / 600)  # type: ignore[union-attr]
