"""Simulated station -> gateway (Modbus polling, MQTT publisher) -> broker -> bridge -> database.

The one test where nothing is played by the test itself: the simulator runs its physics (60x, so
a few simulated minutes pass), the gateway polls it and publishes the README contract, and a
bridge process writes it. A plain, independent subscriber records what the gateway published;
the database must hold exactly that, every sample at its own timestamp with its own quality.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from gateway.app import Gateway
from tests.gateway.conftest import station_config
from tests.historian.conftest import QUALITY, BridgeProcess, stored, wait_until
from tooling.devstack import Mosquitto, VictoriaMetrics, free_port, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
SIM_SPEED = 60.0
RUN_S = 6.0  # six simulated minutes

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gateway.mqtt.publisher") is None
    or "state_dir" not in inspect.signature(Gateway).parameters,
    reason="needs the gateway's MQTT publisher (gateway/mqtt/publisher.py, Gateway(config, state_dir=...))",
)


class Recorder:
    """An ordinary, non-shared subscriber recording every telemetry message the gateway publishes."""

    def __init__(self, port: int) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="e2e-recorder", protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe("heatgw/+/telemetry", qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "recorder did not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(json.loads(message.payload))

    def expected(self, station: str) -> dict[tuple[str, str, int], tuple[float | None, int]]:
        """(station, tag, ts ms) -> (value, quality code) of every sample published, once."""
        found: dict[tuple[str, str, int], tuple[float | None, int]] = {}
        with self._lock:
            for message in self.messages:
                base = round(message["t0"] * 1000)
                for tag, value, dt_ms, quality, *_ in message["s"]:
                    number = None if value is None else float(value)
                    found[(station, tag, base + dt_ms)] = (number, QUALITY[quality])
        return found

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[int]:
    """``heatgw sim run`` at 60x as its own process; yields its Modbus port."""
    port, control = free_port(), free_port()
    log = (tmp_path / "sim.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "sim", "run", "--host", "127.0.0.1", "--port", str(port),
         "--control-port", str(control), "--speed", str(SIM_SPEED)], stdout=log, stderr=log, cwd=ROOT)
    try:
        wait_for_port(port, process, "simulator", timeout_s=30)
        yield port
    finally:
        stop_process(process)


async def test_simulated_station_through_gateway_and_bridge_lands_whole_in_the_database(
        tmp_path: Path, simulator: int, broker: Mosquitto, tsdb: VictoriaMetrics,
        bridges: Callable[..., BridgeProcess]) -> None:
    bridge = bridges("e2e")
    await asyncio.to_thread(bridge.start)
    recorder = Recorder(broker.port)

    def edit(data: dict[str, Any]) -> None:
        data["mqtt"] = {"host": "127.0.0.1", "port": broker.port, "batch_max_age_s": 0.2,
                        "integrity_interval_s": 1.0, "keepalive_s": 5, "reconnect": {"initial_s": 0.2, "max_s": 1.0}}
        data["groups"]["fast"]["interval_s"] = 0.2

    config = station_config(simulator, edit)
    station = config.station.id
    try:
        async with Gateway(config, state_dir=tmp_path / "gateway-state"):
            await asyncio.sleep(RUN_S)
        await asyncio.sleep(1.0)  # the last batch reaches the recorder
        expected = recorder.expected(station)
        assert len(expected) > 100, "the gateway published a few simulated minutes of samples"

        def all_stored() -> bool:
            return sum(len(points) for points in stored(tsdb, "quality").values()) >= len(expected)

        await asyncio.to_thread(wait_until, all_stored, 30, f"{len(expected)} samples in the database", 0.5)
    finally:
        recorder.close()

    qualities, values = stored(tsdb, "quality"), stored(tsdb, "value")
    for (name, tag, ts), (value, quality) in expected.items():
        assert qualities[(name, tag)].get(ts) == [quality], (tag, ts)
        if value is not None:
            assert values[(name, tag)].get(ts) == [pytest.approx(value, rel=1e-9)], (tag, ts)
    assert sum(len(points) for points in qualities.values()) == len(expected), "nothing doubled, nothing invented"
    # Units and devices came from the gateway's retained meta, the site from its station section.
    [series] = tsdb.export('{__name__="telemetry_quality",tag="outdoor_temp"}')
    device, tag = config.tags()["outdoor_temp"]
    assert series["metric"] == {"__name__": "telemetry_quality", "site": config.station.site, "station": station,
                                "device": device, "tag": "outdoor_temp", "unit": tag.unit}
    assert "telemetry sequence gap" not in bridge.log()
    assert time.time() - max(ts for _, _, ts in expected) / 1000 < 60, "samples carry their own, recent time"
