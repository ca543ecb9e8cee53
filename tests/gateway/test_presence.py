"""A device is online only when its answers say so, and the log says why it is not.

Against the simulator over real sockets: Modbus TCP on loopback, Modbus RTU through a socat pty
pair. Reasons are the short, stable words an operator reads (``connection_refused``,
``no_such_port``, ``timeout``, ``exception 11 (...)``); pymodbus's own text stays in the debug log.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from drivers.base import Quality
from gateway.app import Gateway
from sim.modbus_server import CommFaults, ExceptionRange, SerialLine, StationModbusServer
from tests.gateway.conftest import Recorder, demo_station, free_port, meter_on_serial, station_config

POLLER = "drivers.modbus.poller"
needs_socat = pytest.mark.skipif(shutil.which("socat") is None,
                                 reason="socat not installed (scripts/bootstrap.sh installs it)")


def quick(data: dict[str, Any]) -> None:
    """No broker; short intervals, timeouts and backoff, so presence is decided within a second."""
    data.pop("mqtt")
    data["groups"] = {"fast": {"interval_s": 0.2}, "slow": {"interval_s": 0.4}}
    for device in data["devices"].values():
        device.update(timeout_s=0.5, retries=0, backoff={"initial_s": 0.2, "max_s": 1.0})


def edits(*steps: Any) -> Any:
    def edit(data: dict[str, Any]) -> None:
        for step in steps:
            step(data)
    return edit


def messages(caplog: pytest.LogCaptureFixture, device: str, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == POLLER and r.getMessage() == text and getattr(r, "fields", {}).get("device") == device]


def operator_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What our own loggers said at info and above (pymodbus's logger is silenced in production)."""
    return [f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records
            if r.levelno >= logging.INFO and r.name.startswith(("drivers.", "gateway."))]


async def run_until(gateway: Gateway, recorder: Recorder, device: str, what: str, lost: bool = True) -> None:
    await recorder.wait_for(lambda: gateway.devices[device].online is (False if lost else True), 5, what)


async def test_a_tcp_port_with_nothing_listening_is_lost_as_connection_refused_and_never_online(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    gateway = Gateway(station_config(port, quick))
    with caplog.at_level(logging.DEBUG):
        async with Recorder(gateway.bus) as recorder, gateway:
            await run_until(gateway, recorder, "plc", "PLC lost")
            await asyncio.sleep(1.0)  # reconnect attempts (backoff 0.2 s, 0.4 s...) change nothing
    statuses = recorder.statuses("plc")
    assert [(s.online, s.reason) for s in statuses] == [(False, "connection_lost: connection_refused")]
    sample = recorder.latest("outdoor_temp")
    assert sample is not None and sample.quality is Quality.BAD
    assert sample.reason == "connection_lost: connection_refused"
    assert not messages(caplog, "plc", "device online")
    [lost] = messages(caplog, "plc", "device lost")
    fields = {"device": "plc", "link": f"127.0.0.1:{port}", "reason": "connection_lost: connection_refused"}
    assert lost.fields == fields  # type: ignore[attr-defined]
    # The operating system's own words are kept, for whoever turns the debug log on.
    assert any("Connect call failed" in str(getattr(r, "fields", {}).get("detail", ""))
               for r in caplog.records if r.levelno == logging.DEBUG and r.name == "drivers.modbus.link")


async def test_a_missing_serial_port_is_lost_as_no_such_port(
    station_server: StationModbusServer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    missing = tmp_path / "ttyUSB-unplugged"
    gateway = Gateway(station_config(station_server.port, edits(quick, meter_on_serial(str(missing)))))
    with caplog.at_level(logging.INFO):
        async with Recorder(gateway.bus) as recorder, gateway:
            await run_until(gateway, recorder, "heat_meter", "meter lost")
            await run_until(gateway, recorder, "plc", "PLC online", lost=False)
    assert [(s.online, s.reason) for s in recorder.statuses("heat_meter")] == [(False, "connection_lost: no_such_port")]
    sample = recorder.latest("meter_power")
    assert sample is not None and sample.reason == "connection_lost: no_such_port"
    assert not messages(caplog, "heat_meter", "device online")
    assert not [line for line in operator_lines(caplog) if "Errno" in line or "Modbus Error" in line]


@needs_socat
async def test_a_unit_that_is_not_on_the_rs485_line_times_out_and_is_never_online(
    pty_pair: tuple[str, str], caplog: pytest.LogCaptureFixture,
) -> None:
    sim_end, gateway_end = pty_pair
    async with StationModbusServer(demo_station(), port=0, meter_serial=SerialLine(sim_end)) as server:
        # The simulator's meter is unit 2; nothing on the line answers to 5.
        config = station_config(server.port, edits(quick, meter_on_serial(gateway_end, unit_id=5)))
        gateway = Gateway(config)
        with caplog.at_level(logging.DEBUG):
            async with Recorder(gateway.bus) as recorder, gateway:
                await run_until(gateway, recorder, "heat_meter", "meter lost")
                await asyncio.sleep(1.5)  # more polls after reconnecting: still nobody answers
    assert [(s.online, s.reason) for s in recorder.statuses("heat_meter")] == [
        (False, "timeout: no answer within 0.5 s")]
    assert not messages(caplog, "heat_meter", "device online")
    assert not [line for line in operator_lines(caplog) if "Modbus Error" in line]
    assert any("No response received" in str(getattr(r, "fields", {}).get("detail", ""))
               for r in caplog.records if r.levelno == logging.DEBUG and r.name == "drivers.modbus.link")


async def test_a_device_that_refuses_every_request_is_lost_with_the_refusal_once_every_group_was_polled(
    station_server: StationModbusServer, caplog: pytest.LogCaptureFixture,
) -> None:
    # The simulator answers like a Modbus TCP gateway with no unit 9 behind it: exception 11.
    def absent_unit(data: dict[str, Any]) -> None:
        data["devices"]["heat_meter"]["unit_id"] = 9
    gateway = Gateway(station_config(station_server.port, edits(quick, absent_unit)))
    meter = gateway.devices["heat_meter"]
    with caplog.at_level(logging.INFO):
        async with Recorder(gateway.bus) as recorder, gateway:
            await run_until(gateway, recorder, "heat_meter", "meter lost")
            polls = meter.stats.polls
            await recorder.wait_for(lambda: meter.stats.polls >= polls + 3, 5, "more polls of the refusing meter")
    reason = "exception: exception 11 (gateway target failed to respond)"
    assert [(s.online, s.reason) for s in recorder.statuses("heat_meter")] == [(False, reason)]
    groups = {b.group for _, b in recorder.batches("heat_meter")}
    assert groups == {"slow"}  # the meter's only group, polled before the verdict
    assert all(s.reason == reason for _, b in recorder.batches("heat_meter") for s in b.samples)
    assert not messages(caplog, "heat_meter", "device online")
    assert [r.fields["reason"] for r in messages(caplog, "heat_meter", "device lost")] == [reason]  # type: ignore[attr-defined]
    assert not messages(caplog, "heat_meter", "every value of the device is bad")


async def test_an_online_device_whose_every_value_goes_bad_is_logged_once_and_its_recovery_once(
    station_server: StationModbusServer, caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = Gateway(station_config(station_server.port, quick))
    plc = gateway.devices["plc"]
    everything = tuple(ExceptionRange(function, 0, 65536) for function in (1, 2, 3, 4))
    with caplog.at_level(logging.INFO):
        async with Recorder(gateway.bus) as recorder, gateway:
            await run_until(gateway, recorder, "plc", "PLC online", lost=False)
            loop = asyncio.get_running_loop()
            refused_at = loop.time()
            station_server.set_comm_faults(1, CommFaults(exception_ranges=everything))
            await recorder.wait_for(lambda: bool(messages(caplog, "plc", "every value of the device is bad")),
                                    5, "the all-bad warning")
            warned_after = loop.time() - refused_at
            polls = plc.stats.polls
            await recorder.wait_for(lambda: plc.stats.polls >= polls + 6, 5, "more all-bad polls")
            station_server.clear_comm_faults()
            await recorder.wait_for(lambda: bool(messages(caplog, "plc", "device values recovered")),
                                    5, "the recovery")
            polls = plc.stats.polls
            await recorder.wait_for(lambda: plc.stats.polls >= polls + 4, 5, "more good polls")
    [warning] = messages(caplog, "plc", "every value of the device is bad")
    assert warning.levelno == logging.WARNING
    assert warning.fields["reason"] == "exception: exception 2 (illegal data address)"  # type: ignore[attr-defined]
    assert 0.4 < warned_after < 2.0, warned_after  # past the slowest interval (0.4 s), within a few polls
    [recovered] = messages(caplog, "plc", "device values recovered")
    assert recovered.levelno == logging.INFO
    assert [s.online for s in recorder.statuses("plc")] == [True]  # answering all along, never lost
    latest = recorder.latest("outdoor_temp")
    assert latest is not None and latest.quality is Quality.GOOD
