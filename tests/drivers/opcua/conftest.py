"""Fixtures for OPC UA device tests: the simulator's OPC UA server on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from drivers.opcua.config import OpcUaDevice
from drivers.opcua.device import OpcUaDeviceRunner
from gateway.acquisition.models import PollGroup
from gateway.bus import Bus
from sim.opcua_space import NAMESPACE_URI
from sim.runner import SimRunner
from tests.gateway.conftest import Recorder, demo_station

NAMESPACES = {"plc": NAMESPACE_URI}


@pytest.fixture
async def plc() -> AsyncIterator[SimRunner]:
    """The demo station, its PLC served over OPC UA (and Modbus, unused here), physics x60."""
    async with SimRunner(demo_station(), opcua_port=0, control_port=None, tick_s=0.05, speed=60.0) as runner:
        yield runner


def endpoint(runner: SimRunner) -> str:
    assert runner.opcua is not None
    return runner.opcua.endpoint


def device_config(url: str, tags: Mapping[str, Mapping[str, Any]], **settings: Any) -> OpcUaDevice:
    """An OPC UA device at ``url`` with the simulator's namespace as ``plc``, fast reconnects."""
    return OpcUaDevice.model_validate({
        "protocol": "opcua", "endpoint": url, "namespaces": NAMESPACES, "timeout_s": 2.0, "keepalive_s": 0.5,
        "backoff": {"initial_s": 0.2, "max_s": 1.0, "jitter": 0.1}, "tags": dict(tags), **settings})


@contextlib.asynccontextmanager
async def running(config: OpcUaDevice, groups: Mapping[str, float]) -> AsyncIterator[tuple[OpcUaDeviceRunner, Recorder]]:
    """The device running against its server, everything it puts on the bus recorded."""
    bus = Bus()
    device = OpcUaDeviceRunner("plc", config, {g: PollGroup(interval_s=s) for g, s in groups.items()}, bus)
    async with Recorder(bus) as recorder:
        task = asyncio.create_task(device.run())
        try:
            yield device, recorder
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
