"""The write queue outlives anything a driver does: every request is answered, the task never dies."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from gateway.acquisition.device import PreparedWrite
from gateway.app import Gateway
from gateway.writes import RESTARTING, WriteQueue
from sim.modbus_server import StationModbusServer
from tests.gateway.conftest import Recorder, station_config


async def _broken_read(tag: str) -> None:
    raise RuntimeError(f"driver bug reading {tag}")


async def test_a_driver_that_raises_anything_fails_one_write_and_the_queue_goes_on(
    station_server: StationModbusServer, caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = Gateway(station_config(station_server.port, lambda data: data.pop("mqtt")))
    async with gateway:
        poller = gateway.devices["plc"]
        await Recorder(gateway.bus).wait_for(lambda: poller.online is True, 5, "PLC online")
        held = station_server.station.plc.supply_setpoint_c
        poller.read_tag = _broken_read  # type: ignore[method-assign] - a defect in the driver
        with caplog.at_level(logging.ERROR, logger="gateway.writes"):
            failed = await asyncio.wait_for(gateway.writes.write("supply_setpoint", held, origin="dispatch/li"), 5)
        assert not failed.accepted
        assert failed.reason == "write failed: internal error RuntimeError: driver bug reading supply_setpoint"
        errors = [r for r in caplog.records if r.name == "gateway.writes" and r.levelno == logging.ERROR]
        assert len(errors) == 1 and errors[0].exc_info is not None
        assert errors[0].fields == {"tag": "supply_setpoint", "value": held, "origin": "dispatch/li"}  # type: ignore[attr-defined]
        del poller.read_tag
        target = round(held + 1.0, 1)
        done = await asyncio.wait_for(gateway.writes.write("supply_setpoint", target, origin="test"), 5)
        assert done.accepted and done.readback == pytest.approx(target), done


class _StuckPoller:
    """A device whose reads never end (as a driver bug could make them)."""

    name = "plc"
    online = True

    def __init__(self) -> None:
        self.tags = dict(station_config(1).devices["plc"].tags)

    def prepare_write(self, tag: str, value: float) -> PreparedWrite:
        return PreparedWrite(tag, value, [int(value)])

    async def read_tag(self, tag: str) -> None:
        await asyncio.Event().wait()


async def test_a_stopped_queue_answers_every_request_still_waiting() -> None:
    queue = WriteQueue({"plc": _StuckPoller()})  # type: ignore[dict-item]
    runner = asyncio.create_task(queue.run())
    writes = [asyncio.create_task(queue.write("supply_setpoint", value, origin="test")) for value in (60.0, 61.0)]
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in writes)
    runner.cancel()
    results = await asyncio.wait_for(asyncio.gather(*writes), 1)
    assert [(r.accepted, r.reason) for r in results] == [(False, "write queue stopped")] * 2
    await asyncio.gather(runner, return_exceptions=True)


async def test_a_request_its_requester_gave_up_on_is_never_executed(caplog: pytest.LogCaptureFixture) -> None:
    queue = WriteQueue({"plc": _StuckPoller()})  # type: ignore[dict-item]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.write("supply_setpoint", 60.0, origin="controller"), 0.05)
    runner = asyncio.create_task(queue.run())
    with caplog.at_level(logging.WARNING, logger="gateway.writes"):
        await asyncio.sleep(0.05)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert [r.getMessage() for r in caplog.records] == ["write dropped: its requester stopped waiting"]


async def test_a_gateway_task_that_dies_anyway_is_logged_at_error(
    station_server: StationModbusServer, caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = Gateway(station_config(station_server.port, lambda data: data.pop("mqtt")))

    async def dies() -> None:
        raise RuntimeError("write queue defect")

    gateway.writes.run = dies  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="gateway.app"):
        async with gateway:
            await asyncio.sleep(0.1)
    errors = [r for r in caplog.records if r.name == "gateway.app" and r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    assert errors[0].fields == {"task": "writes"}  # type: ignore[attr-defined]
    assert errors[0].exc_info is not None and "write queue defect" in str(errors[0].exc_info[1])


async def test_a_write_to_a_device_a_reload_restarts_that_never_comes_back_is_refused_as_restarting_in_time() -> None:
    queue = WriteQueue({}, restart_wait_s=0.3)
    queue.serve({}, restarting=["supply_setpoint"])
    runner = asyncio.create_task(queue.run())
    started = time.monotonic()
    result = await asyncio.wait_for(queue.write("supply_setpoint", 60.0, origin="dispatch/test"), 5)
    waited = time.monotonic() - started
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert (result.accepted, result.reason) == (False, RESTARTING)
    assert 0.3 <= waited < 1.0
    unknown = WriteQueue({})
    runner = asyncio.create_task(unknown.run())
    assert (await unknown.write("supply_setpoint", 60.0, origin="dispatch/test")).reason == "unknown tag 'supply_setpoint'"
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
