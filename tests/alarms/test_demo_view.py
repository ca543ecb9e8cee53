"""The demo's live view lists the open alarms, most urgent first, and the open station events."""

from __future__ import annotations

from rich.console import Console

from gateway.app import Gateway
from tooling.demo_view import alarm_panel
from gateway.samples import Sample, SampleBatch
from tests.gateway.conftest import station_config


def text(gateway: Gateway, now: float) -> str:
    console = Console(width=140, record=True)
    console.print(alarm_panel(gateway, now))
    return console.export_text()


async def test_the_alarm_panel_shows_priority_state_age_and_the_open_events() -> None:
    gateway = Gateway(station_config(5020, lambda data: data.pop("mqtt")))
    assert "no open alarm, no open event" in text(gateway, 0.0)
    samples = (Sample("tank_level", 5.0, 100.0), Sample("pump_fault", True, 100.0), Sample("pit_flooded", True, 100.0))
    gateway.alarms.engine.on_item(SampleBatch("plc", "fast", samples), 100.0)
    gateway.alarms.engine.tick(200.0)
    gateway.alarms.events.on_item(SampleBatch("plc", "fast", samples), 100.0)  # type: ignore[union-attr]
    shown = text(gateway, 100.0 + 1200)
    lines = [line for line in shown.splitlines() if " min " in line and "Events" not in line]
    assert "critical" in lines[0] and "active" in lines[0] and "20 min" in lines[0]
    assert "medium" in lines[-1] and "tank_low" in lines[-1]  # the least urgent last
    assert "循环泵故障" in shown and "Events: pit_flooding 20 min" in shown


async def test_systemctl_status_counts_the_open_and_unacknowledged_alarms() -> None:
    gateway = Gateway(station_config(5020, lambda data: data.pop("mqtt")))
    samples = (Sample("pump_fault", True, 100.0), Sample("pit_flooded", True, 100.0))
    gateway.alarms.engine.on_item(SampleBatch("plc", "fast", samples), 100.0)
    gateway.alarms.engine.acknowledge("pump_trip", 101.0, "op")
    assert (await gateway.status_line()).endswith("alarms 2 open, 1 unacknowledged")
