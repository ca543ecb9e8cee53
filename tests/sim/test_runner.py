"""The accelerated real-time runner and its JSON-lines control port, over real loopback sockets.

These run the real physics (``sim.station.Station``); the fake station of test_modbus_server.py is
only used where a test needs a station that misbehaves.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from pymodbus.exceptions import ModbusIOException
from typer.testing import CliRunner

from sim.cli import app
from sim.runner import MAX_LINE, RunnableStation, SimRunner, send_control
from sim.station import Station
from tests.sim.test_modbus_server import WAIT_S, FakeStation, client


def make_station() -> Station:
    return Station(start=datetime(2026, 1, 10, 6, 0, tzinfo=UTC), seed=1)


@asynccontextmanager
async def running(station: RunnableStation | None = None, **kwargs: object) -> AsyncIterator[SimRunner]:
    options: dict[str, object] = {"speed": 600.0, "tick_s": 0.05} | kwargs
    async with SimRunner(station or make_station(), **options) as runner:  # type: ignore[arg-type]
        yield runner


async def until(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def control(runner: SimRunner, **request: object) -> dict[str, Any]:
    assert runner.control_port is not None
    return await send_control("127.0.0.1", runner.control_port, request)


@asynccontextmanager
async def raw_control(runner: SimRunner) -> AsyncIterator[Callable[[bytes], Awaitable[dict[str, object]]]]:
    """A control connection that sends arbitrary bytes as one line and reads one reply."""
    assert runner.control_port is not None
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", runner.control_port), WAIT_S)

    async def exchange(line: bytes) -> dict[str, object]:
        writer.write(line + b"\n")
        await writer.drain()
        return json.loads(await asyncio.wait_for(reader.readline(), WAIT_S))

    try:
        yield exchange
    finally:
        writer.close()
        await writer.wait_closed()


async def test_setpoint_written_over_modbus_moves_the_valve_while_running() -> None:
    async with running() as runner, client(runner.server.port) as modbus:
        before = (await modbus.read_input_registers(0, count=12, device_id=1)).registers
        assert before[7] > 600  # the demo station starts above 60 degC on this January morning
        assert not (await modbus.write_register(100, 550, device_id=1)).isError()  # 55.0 degC

        async def settled_at_new_setpoint() -> bool:
            now = (await modbus.read_input_registers(0, count=12, device_id=1)).registers
            return now[6] <= before[6] - 50 and abs(now[7] - 550) <= 15  # valve -5 %, supply within 1.5 K

        await until(settled_at_new_setpoint, "the valve to close and the supply to settle near 55 degC")
        assert (await modbus.read_holding_registers(100, count=1, device_id=1)).registers == [550]
        assert runner.station.plc.supply_setpoint_c == 55.0


async def test_simulated_time_runs_at_the_speed_factor() -> None:
    station = make_station()
    async with running(station, speed=1000.0):
        started_sim, started_wall = station.now, time.monotonic()
        await asyncio.sleep(0.5)
        sim_elapsed = (station.now - started_sim).total_seconds()
        wall_elapsed = time.monotonic() - started_wall
    # the last tick may not have happened yet: allow one tick of lag
    assert 1000.0 * (wall_elapsed - 0.25) <= sim_elapsed <= 1000.0 * wall_elapsed


async def test_control_round_trips() -> None:
    station = make_station()
    async with running(station) as runner:
        snapshot = await control(runner, cmd="snapshot")
        assert snapshot["ok"] is True
        values = snapshot["result"]
        assert values["timestamp"] >= datetime(2026, 1, 10, 6, 0, tzinfo=UTC).timestamp()
        assert values["meter"]["power_kw"] > 0
        assert len(values["rooms"]) == len(station.measurements().rooms)

        status = (await control(runner, cmd="status"))["result"]
        assert status["plc_port"] == status["meter_port"] == runner.server.port
        assert status["control_port"] == runner.control_port

        reply = await control(runner, cmd="comm", unit=1, offline=True, exception_ranges=[
            {"function": 3, "address": 100, "count": 2}])
        assert reply == {"ok": True, "result": {"offline": True, "delay_s": 0.0, "exception_ranges": [
            {"function": 3, "address": 100, "count": 2}]}}
        async with client(runner.server.port, timeout=0.3) as modbus:
            with pytest.raises(ModbusIOException):
                await modbus.read_input_registers(0, count=1, device_id=1)
            assert not (await modbus.read_holding_registers(0, count=2, device_id=2)).isError()

            reply = await control(runner, cmd="comm", unit=1, offline=False)  # other settings stay
            assert reply["result"]["exception_ranges"] != []
            assert (await modbus.read_holding_registers(100, count=1, device_id=1)).exception_code == 2

            stats = (await control(runner, cmd="stats", reset=True))["result"]
            assert stats == {"requests": {"1": {"3": 1, "4": 1}, "2": {"3": 1}}, "total": 3}
            assert (await control(runner, cmd="stats"))["result"] == {"requests": {}, "total": 0}

            assert await control(runner, cmd="fault", kind="pump_trip") == {"ok": True, "result": None}
            await control(runner, cmd="fault", kind="sensor_open", args={"sensor": "outdoor"})
            assert (await control(runner, cmd="status"))["result"]["faults"] == {
                "pump_trip": True, "outdoor": {"sensor": "open"}}

            async def open_sensor_on_the_wire() -> bool:
                return (await modbus.read_input_registers(0, count=1, device_id=1)).registers == [8500]

            await until(open_sensor_on_the_wire, "the open outdoor sensor to show 850.0 in register 0")

            assert await control(runner, cmd="clear") == {"ok": True, "result": None}
            assert station.faults.active() == {}
            assert not (await modbus.read_holding_registers(100, count=1, device_id=1)).isError()


async def test_bad_input_gets_an_error_reply_and_never_stops_the_runner() -> None:
    station = make_station()
    async with running(station) as runner, raw_control(runner) as exchange:
        bad_lines = [
            b"this is not json",
            b"\xff\xfe",
            b"[1, 2, 3]",
            b'{"command": "snapshot"}',
            b'{"cmd": "reboot"}',
            b'{"cmd": "comm"}',
            b'{"cmd": "comm", "unit": 9, "offline": true}',
            b'{"cmd": "comm", "unit": 1, "delay_s": "slow"}',
            b'{"cmd": "comm", "unit": 1, "delay_s": -1}',
            b'{"cmd": "comm", "unit": 1, "offline": "yes"}',
            b'{"cmd": "comm", "unit": 1, "exception_ranges": [{"function": 3}]}',
            b'{"cmd": "comm", "unit": 1, "exception_ranges": [{"function": 3, "address": 1, "count": 0}]}',
            b'{"cmd": "fault"}',
            b'{"cmd": "fault", "kind": "no_such_fault"}',
            b'{"cmd": "fault", "kind": "__init__"}',
            b'{"cmd": "fault", "kind": "pump_trip", "args": {"bogus": 1}}',
            b'{"cmd": "fault", "kind": "sensor_open", "args": {"sensor": "attic"}}',
            b'{"cmd": "fault", "kind": "leak", "args": {"m3h": -3}}',
            b'{"cmd": "fault", "kind": "pump_trip", "args": [1]}',
        ]
        for line in bad_lines:
            reply = await exchange(line)
            assert reply["ok"] is False and isinstance(reply["error"], str) and reply["error"], line
        assert (await exchange(b'{"cmd": "status"}'))["ok"] is True  # same connection still served
    async with running(station) as runner:
        reader, writer = await asyncio.open_connection("127.0.0.1", runner.control_port)
        writer.write(b"x" * (MAX_LINE + 10) + b"\n")
        reply = json.loads(await asyncio.wait_for(reader.readline(), WAIT_S))
        assert reply["ok"] is False and "longer" in reply["error"]
        assert await asyncio.wait_for(reader.read(), WAIT_S) == b""  # then the runner hangs up
        writer.close()
        assert (await control(runner, cmd="snapshot"))["ok"] is True
        assert runner.server.comm_faults(1).offline is False


async def test_everything_stops_on_exit_even_with_a_control_client_connected() -> None:
    station = make_station()
    async with running(station) as runner:
        ports = (runner.server.port, runner.control_port)
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", runner.control_port)
    assert await asyncio.wait_for(idle_reader.read(), WAIT_S) == b""  # hung up on
    idle_writer.close()
    await idle_writer.wait_closed()
    stopped_at = station.now
    for port in ports:
        with pytest.raises(OSError):
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT_S)
    await asyncio.sleep(0.15)
    assert station.now == stopped_at
    assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} == set()


async def test_meter_on_its_own_port_without_a_control_port() -> None:
    async with running(meter_port=0, meter_word_order="little", control_port=None) as runner:
        assert runner.control_port is None
        async with client(runner.server.meter_port) as modbus:
            assert not (await modbus.read_holding_registers(0, count=17, device_id=2)).isError()


async def test_a_physics_error_surfaces_through_wait() -> None:
    class BrokenStation(FakeStation):
        def step(self, dt_s: float) -> None:
            raise ArithmeticError("solver diverged")

    async with running(BrokenStation()) as runner:
        with pytest.raises(ArithmeticError, match="diverged"):
            await asyncio.wait_for(runner.wait(), WAIT_S)


def test_runner_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        SimRunner(make_station(), speed=0)
    with pytest.raises(ValueError):
        SimRunner(make_station(), tick_s=-1)


async def test_send_control_times_out_on_a_silent_port() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    try:
        with pytest.raises(TimeoutError):
            await send_control("127.0.0.1", silent.sockets[0].getsockname()[1], {"cmd": "status"}, timeout=0.2)
    finally:
        silent.close()
        await silent.wait_closed()


def test_cli_runs_the_simulator_and_its_client_commands_drive_it() -> None:
    """``heatgw sim run`` in a child process, the client commands in this one, SIGTERM to stop."""
    command = [sys.executable, "-c", "from sim.cli import app; app()", "run", "--port", "0", "--control-port", "0",
               "--speed", "600", "--start", "2026-01-10T06:00:00"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=os.environ | {"PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], WAIT_S)
        banner = process.stdout.readline() if ready else ""
        found = re.search(r"PLC unit 1 on (\d+).*control on (\d+)", banner)
        if not found:
            process.kill()
            pytest.fail(f"no banner from `sim run`: {banner!r} {process.communicate()[1]}")
        modbus_port, control_port = found.group(1), found.group(2)
        cli = CliRunner()

        def invoke(*args: str) -> str:
            result = cli.invoke(app, [*args, "--control-port", control_port])
            assert result.exit_code == 0, result.output
            return result.output

        assert "unit 1: offline, delay 0.5 s, exception 02 for FC04 10+2" in invoke(
            "comm", "--unit", "1", "--offline", "--delay", "0.5", "--exception-range", "4:10+2")
        assert "fault sensor_short injected" in invoke("fault", "sensor_short", "--sensor", "outdoor")
        assert "fault leak injected" in invoke("fault", "leak", "m3h=0.5")
        status = invoke("status")
        assert f"PLC port {modbus_port}" in status and "fault outdoor" in status and "unit 1: offline" in status
        assert 'fault leak {"m3h": 0.5}' in status
        deadline = time.monotonic() + WAIT_S
        while "-50.00" not in status:  # the shorted sensor reaches the registers with the next tick
            assert time.monotonic() < deadline, status
            time.sleep(0.05)
            status = invoke("status")
        assert "total 0" in invoke("stats")
        assert "all faults cleared" in invoke("clear")
        assert "unit 1" not in invoke("status")

        refused = cli.invoke(app, ["fault", "sensor_open", "--sensor=attic", "--control-port", control_port])
        assert refused.exit_code == 1 and "unknown sensor" in refused.output
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=WAIT_S) == 0
        finally:
            process.kill()
            process.communicate()


def test_cli_client_without_a_simulator_fails_cleanly() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        unused = str(probe.getsockname()[1])
    result = CliRunner().invoke(app, ["status", "--control-port", unused])
    assert result.exit_code == 1 and "no simulator control port" in result.output
