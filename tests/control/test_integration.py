"""The real path once: simulator over Modbus TCP -> pollers -> LatestValues -> ControllerTask -> WriteQueue -> PLC."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import yaml

from gateway.app import Gateway
from gateway.bus import Subscription
from gateway.control.loader import load_controller_config
from gateway.control.task import ControllerTask
from gateway.latest import LatestValues
from sim.runner import SimRunner
from tests.control.conftest import CONFIG_DIR, CONTROLLER_YAML
from tests.gateway.conftest import demo_station, station_config


async def feed(subscription: Subscription, latest: LatestValues) -> None:
    async for item in subscription:
        latest.update(item)


async def test_the_plc_setpoint_follows_the_controller_over_modbus(tmp_path: Path) -> None:
    data = yaml.safe_load(CONTROLLER_YAML.read_text())
    section = data["controller"]
    section["cycle_s"] = 1
    section["season"]["override"] = "heating"  # the wall clock's date, whatever it is, must not matter
    section["circuits"]["radiators"].update(ramp_up_k_per_h=600, ramp_down_k_per_h=600,
                                            curve=str(CONFIG_DIR / "curves" / "radiators-75-50.yaml"))
    (tmp_path / "controller.yaml").write_text(yaml.safe_dump(data))
    station = demo_station()
    station.plc.supply_setpoint_c = 40.0  # far from what the controller will want
    async with SimRunner(station, speed=60.0, tick_s=0.05, control_port=None) as runner:
        config = station_config(runner.server.port)
        gateway = Gateway(config)
        latest = LatestValues(config)
        feeder = asyncio.create_task(feed(gateway.bus.subscribe("controller", maxsize=4096), latest))
        task = ControllerTask(load_controller_config(tmp_path / "controller.yaml"), config, latest, gateway.writes,
                              gateway.bus)
        async with gateway:
            runner_task = asyncio.create_task(task.run())
            try:
                written: list[float] = []
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 40.0
                while len(written) < 2 and loop.time() < deadline:
                    await asyncio.sleep(0.5)
                    state = task.state
                    if state is not None and state.circuits[0].written_c is not None:
                        value = state.circuits[0].written_c
                        if not written or written[-1] != value:
                            written.append(value)
            finally:
                for t in (runner_task, feeder):
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await t
        assert len(written) >= 2, f"the controller wrote {written}"
        state = task.state
        assert state is not None
        assert 40.0 < written[0] < written[1]  # ramping up from the 40 C the PLC held...
        assert state.circuits[0].curve_c > 55.0  # ...toward a January afternoon's curve
        assert abs(runner.station.plc.supply_setpoint_c - written[-1]) < 0.05  # it reached the PLC
        assert state.outdoor_source.value == "sensor" and state.circuits[0].rooms_valid == 6
