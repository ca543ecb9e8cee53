"""The real path: simulator over Modbus TCP -> pollers -> LatestValues -> ControllerTask -> WriteQueue -> PLC,
assembled by ``Gateway`` itself, with the dispatch commands reaching the controller."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.mqtt.payloads import control_payload
from gateway.control.loader import load_controller_config
from gateway.control.memory import FILE_NAME as MEMORY_FILE_NAME
from gateway.control.memory import MemoryFile
from gateway.control.model import ControllerState
from gateway.historian.schema import LineEncoder, parse_topic
from sim.runner import SimRunner
from tests.control.conftest import CONTROLLER_YAML, controller_config, on_the_wall_clock_all_day, written_setpoints
from tests.gateway.conftest import demo_station, station_config


def command(args: dict[str, object]) -> bytes:
    return json.dumps({"id": "c1", "origin": "dispatch/test", "expires": time.time() + 60, "args": args}).encode()


async def test_the_plc_setpoint_follows_the_controller_over_modbus(tmp_path: Path) -> None:
    station = demo_station()
    station.plc.supply_setpoint_c = 40.0  # far from what the controller will want
    async with SimRunner(station, speed=60.0, tick_s=0.05, control_port=None) as runner:
        config = station_config(runner.server.port, lambda data: data.pop("mqtt"))  # no broker here
        gateway = Gateway(config, state_dir=tmp_path / "state",
                          controller=controller_config(on_the_wall_clock_all_day))
        states = gateway.bus.subscribe("test-states", maxsize=10_000)
        task = gateway.controller
        assert task is not None
        async with gateway:
            written = await written_setpoints(task)
            accepted = json.loads(await gateway.commands.handle("setpoint_offset", command(
                {"offset_k": 2.0, "duration_s": 600})))
            refused = json.loads(await gateway.commands.handle("outdoor", command({"value_c": 80})))

        assert len(written) >= 2, f"the controller wrote {written}"
        state = task.state
        assert state is not None
        assert 40.0 < written[0] < written[1]  # ramping up from the 40 C the PLC held...
        assert state.circuits[0].curve_c > 55.0  # ...toward a January afternoon's curve
        assert abs(runner.station.plc.supply_setpoint_c - written[-1]) < 0.05  # it reached the PLC
        assert state.outdoor_source.value == "sensor" and state.circuits[0].rooms_valid == 6
        assert accepted["ok"] is True, accepted
        assert refused["ok"] is False and "value_c" in refused["reason"], refused
        published = []
        while (item := states.get_nowait()) is not None:
            if isinstance(item, ControllerState):
                published.append(item)
        assert len(published) >= 2, "the controller's state did not reach the bus"
        # What goes out on <prefix>/<station>/control is what the historian bridge can store.
        topic = parse_topic("heatgw", "heatgw/demo-01/control")
        assert topic is not None
        payload = control_payload(published[-1], 42)
        assert json.loads(payload)["ts"] == pytest.approx(published[-1].timestamp, abs=1e-3) and "timestamp" not in json.loads(payload)
        encoded = LineEncoder("default").state(topic, None, payload)
        assert encoded.seq == 42, "the control state is numbered in the station's one sequence"
        line = encoded.lines[0]
        assert "seq=" not in line
        assert line.startswith("control,site=default,station=demo-01 ")
        assert "control_timestamp" not in line and "timestamp=" not in line  # the time is the point's own
        assert f"circuits_radiators_setpoint_c={float(round(published[-1].circuits[0].setpoint_c, 3))}" in line
        assert "circuits_radiators_limiters_return_limit_active=" in line
        # What it learned was saved in the state directory when the gateway stopped.
        memory = MemoryFile(tmp_path / "state" / MEMORY_FILE_NAME).load()
        assert memory is not None and memory.circuits["radiators"].curve == state.circuits[0].curve


async def test_the_gateway_runs_its_controller_on_the_clock_and_time_scale_it_is_given() -> None:
    async with SimRunner(demo_station(), speed=600.0, tick_s=0.05, control_port=None) as runner:
        config = station_config(runner.server.port, lambda data: data.pop("mqtt"))
        gateway = Gateway(config, controller=load_controller_config(CONTROLLER_YAML),
                          controller_clock=lambda: runner.station.time_s, controller_time_scale=600.0)
        states = gateway.bus.subscribe("test-states", maxsize=10_000)
        async with gateway:
            await asyncio.sleep(2.0)
            reply = json.loads(await gateway.commands.handle("setpoint_offset", command(
                {"offset_k": 1.0, "duration_s": 3600})))
            now = runner.station.time_s
        published = []
        while (item := states.get_nowait()) is not None:
            if isinstance(item, ControllerState):
                published.append(item)
    # 60 s cycles at 600x: one every 0.1 s, about twenty in 2 s (one, unscaled)
    assert len(published) >= 8, len(published)
    assert abs(published[-1].timestamp - now) < 600  # stamped with the simulated time, not the wall clock
    assert reply["ok"] is True and abs(reply["result"]["until"] - (now + 3600)) < 60  # the offset ends on it too
