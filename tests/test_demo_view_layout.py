"""The demo's view is built from the configuration it runs and fits a plain 80 x 24 terminal."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from gateway.app import Gateway
from gateway.control.loader import load_controller_config
from tooling.demo_view import DemoState, render
from gateway.samples import Sample, SampleBatch
from tests.gateway.conftest import free_port, station_config

ROOT = Path(__file__).resolve().parents[1]
CONTROLLER = ROOT / "config" / "controller.yaml"


def screen(gateway: Gateway, width: int, height: int) -> list[str]:
    console = Console(width=width, height=height, record=True, file=io.StringIO())
    console.print(render(gateway, DemoState(), time.time(), height=height))
    return console.export_text().splitlines()


def with_readings(gateway: Gateway) -> Gateway:
    now = time.time()
    gateway.latest.update(SampleBatch("plc", "fast", (Sample("outdoor_temp", -3.5, now),
                                                      Sample("room_a_top_corner_temp", 17.2, now),
                                                      Sample("room_a_1_temp", 19.0, now))))
    return gateway


async def test_the_compact_view_fits_80_by_24_with_the_station_values_the_controller_and_the_alarms() -> None:
    gateway = with_readings(Gateway(station_config(5020, lambda data: data.pop("mqtt")),
                                    controller=load_controller_config(CONTROLLER)))
    faults = (Sample("tank_level", 5.0, 100.0), Sample("pump_fault", True, 100.0), Sample("pit_flooded", True, 100.0),
              Sample("overtemp_trip", True, 100.0), Sample("overpressure_trip", True, 100.0))
    gateway.alarms.engine.on_item(SampleBatch("plc", "fast", faults), 100.0)
    gateway.alarms.engine.tick(200.0)
    lines = screen(gateway, 80, 24)
    text = "\n".join(lines)
    assert len(lines) <= 24, text
    assert all(len(line) <= 80 for line in lines), text
    assert "Outdoor temp" in text and "-3.50 °C" in text  # one spelling of the unit: not degC
    assert "Coldest room: 17.2 °C in A-top-corner (2 of 6 rooms reporting)" in text
    assert "Supply-curve controller" in text and "Alarms" in text
    alarm_lines = [line for line in lines if line.startswith("│ critical") or line.startswith("│ high")]
    assert len(alarm_lines) == 3 and "more" in text, "the most urgent three alarms, one line each, the rest counted"
    assert "more" in text, "the values that do not fit are counted, not silently dropped"


async def test_a_station_without_the_demo_tags_is_shown_from_its_own_configuration() -> None:
    def edit(data: dict[str, Any]) -> None:
        data.pop("mqtt")
        data.pop("alarms", None)
        data.pop("events", None)
        plc = data["devices"]["plc"]["tags"]
        for tag in ("primary_supply_temp", "primary_return_temp", "meter_power"):
            plc.pop(tag, None)
            data["devices"]["heat_meter"]["tags"].pop(tag, None)
        # a station naming its tags its own way, the outdoor temperature first in its file
        data["devices"]["plc"]["tags"] = {"aussentemperatur": plc.pop("outdoor_temp"), **plc}
        data["report"] = {}

    gateway = Gateway(station_config(5020, edit))  # and without a controller
    for height in (24, 60):
        text = "\n".join(screen(gateway, 80, height))
        assert "Aussentemperatur" in text and "Primary supply temp" not in text


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_the_running_demo_shows_the_station_the_controller_and_the_alarms_on_an_80_by_24_terminal(
        tmp_path: Path) -> None:
    socket_name = f"heatgw-test-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, "-m", "gateway", "demo", "--duration", "40", "--port", str(free_port()),
               "--control-port", str(free_port()), "--mqtt-port", str(free_port()), "--tsdb-port", str(free_port())]
    tmux = ["tmux", "-L", socket_name]
    subprocess.run([*tmux, "new-session", "-d", "-x", "80", "-y", "24", "-c", str(ROOT),
                    " ".join(command) + f" 2> {tmp_path / 'stderr.log'}"], check=True, timeout=10)
    try:
        deadline = time.monotonic() + 60
        shown = ""
        while time.monotonic() < deadline:
            shown = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True, timeout=10).stdout
            if "writes in" in shown and "Outdoor temp" in shown and "°C" in shown:
                break
            time.sleep(1)
    finally:
        subprocess.run([*tmux, "send-keys", "C-c"], timeout=10)
        time.sleep(3)
        subprocess.run([*tmux, "kill-server"], timeout=10)
    lines = shown.splitlines()
    assert len(lines) <= 24
    assert "Outdoor temp" in shown and "Coldest room" in shown, shown
    assert "Supply-curve controller" in shown and "writes in" in shown, shown
    assert "Alarms" in shown, shown
