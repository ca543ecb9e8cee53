"""Fixtures for gateway tests: a simulated station served over real Modbus TCP on loopback."""

from __future__ import annotations

import asyncio
import copy
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.bus import Bus, Subscription
from gateway.config import GatewayConfig
from gateway.samples import DeviceStatus, Sample, SampleBatch
from sim.modbus_server import StationModbusServer
from sim.station import Station

ROOT = Path(__file__).resolve().parents[2]
STATION_YAML = ROOT / "config" / "station.yaml"


class Clock:
    """A clock that moves only when the test sets ``now``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_station() -> Station:
    return Station(start=datetime(2026, 1, 10, 6, 0, tzinfo=UTC), seed=1)


@pytest.fixture
async def station_server() -> AsyncIterator[StationModbusServer]:
    """The demo station's PLC (unit 1) and meter (unit 2) on one free loopback port."""
    async with StationModbusServer(demo_station(), port=0) as server:
        yield server


def station_config(port: int, edit: Callable[[dict[str, Any]], None] | None = None) -> GatewayConfig:
    """config/station.yaml pointed at ``port`` (both devices), optionally edited further."""
    data = copy.deepcopy(yaml.safe_load(STATION_YAML.read_text()))
    for device in data["devices"].values():
        device["port"] = port
    if edit is not None:
        edit(data)
    return GatewayConfig.model_validate(data)


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(simulator end, gateway end) of a socat pty pair, like a USB-RS485 adapter wired to a
    meter; socat is stopped afterwards."""
    sim_end, gateway_end = tmp_path / "meter-sim", tmp_path / "meter-gw"
    process = subprocess.Popen(
        ["socat", f"pty,raw,echo=0,link={sim_end}", f"pty,raw,echo=0,link={gateway_end}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 5
        while not (sim_end.exists() and gateway_end.exists()):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"socat did not create the pty pair: {process.communicate(timeout=5)[1]!r}")
            time.sleep(0.02)
        yield str(sim_end), str(gateway_end)
    finally:
        process.terminate()
        process.wait(timeout=5)


def meter_on_serial(serial_port: str, **settings: Any) -> Callable[[dict[str, Any]], None]:
    """A ``station_config`` edit: the heat meter on Modbus RTU at ``serial_port`` (short timeout
    and backoff), with ``settings`` (``unit_id=5``) on top."""
    def edit(data: dict[str, Any]) -> None:
        meter = data["devices"]["heat_meter"]
        for key in ("host", "port"):
            meter.pop(key)
        meter.update(protocol="modbus_rtu", serial_port=serial_port, baudrate=9600, timeout_s=0.5, retries=0,
                     backoff={"initial_s": 0.2, "max_s": 1.0}, **settings)
    return edit


class Recorder:
    """Drains a bus subscription, keeping everything with the loop time it arrived."""

    def __init__(self, bus: Bus) -> None:
        self.subscription: Subscription = bus.subscribe("test-recorder", maxsize=100_000, lossless=True)
        self.items: list[tuple[float, SampleBatch | DeviceStatus]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Recorder:
        self._task = asyncio.create_task(self._drain())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        async for item in self.subscription:
            self.items.append((loop.time(), item))

    def batches(self, device: str | None = None, group: str | None = None) -> list[tuple[float, SampleBatch]]:
        return [
            (t, item) for t, item in self.items
            if isinstance(item, SampleBatch)
            and (device is None or item.device == device)
            and (group is None or item.group == group)
        ]

    def statuses(self, device: str) -> list[DeviceStatus]:
        return [item for _, item in self.items if isinstance(item, DeviceStatus) and item.device == device]

    def latest(self, tag: str) -> Sample | None:
        for _, item in reversed(self.items):
            if isinstance(item, SampleBatch):
                for sample in item.samples:
                    if sample.tag == tag:
                        return sample
        return None

    async def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``predicate`` until true; fail the test with ``what`` after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}")
            await asyncio.sleep(0.02)
