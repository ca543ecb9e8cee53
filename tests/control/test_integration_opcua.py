"""The real path with the PLC on OPC UA: simulator's OPC UA server -> subscription -> LatestValues ->
ControllerTask -> WriteQueue -> the PLC's setpoint node, and the heat meter on Modbus TCP beside it,
all assembled by ``Gateway`` from config/station-opcua.yaml."""

from __future__ import annotations

from pathlib import Path

import yaml

from gateway.app import Gateway
from gateway.config import GatewayConfig
from sim.runner import SimRunner
from tests.control.conftest import CONFIG_DIR, controller_config, on_the_wall_clock_all_day, written_setpoints
from tests.gateway.conftest import demo_station

STATION_OPCUA_YAML = CONFIG_DIR / "station-opcua.yaml"


def opcua_station_config(runner: SimRunner) -> GatewayConfig:
    """config/station-opcua.yaml pointed at the runner: the PLC at its OPC UA endpoint, the meter at its Modbus port."""
    assert runner.opcua is not None
    data = yaml.safe_load(STATION_OPCUA_YAML.read_text())
    data.pop("mqtt")  # no broker here
    data["devices"]["plc"]["endpoint"] = runner.opcua.endpoint
    data["devices"]["heat_meter"]["port"] = runner.server.port
    return GatewayConfig.model_validate(data)


async def test_the_plc_setpoint_follows_the_controller_over_opcua_with_the_meter_on_modbus(tmp_path: Path) -> None:
    station = demo_station()
    station.plc.supply_setpoint_c = 40.0  # far from what the controller will want
    async with SimRunner(station, speed=60.0, tick_s=0.05, control_port=None, opcua_port=0) as runner:
        gateway = Gateway(opcua_station_config(runner), state_dir=tmp_path / "state",
                          controller=controller_config(on_the_wall_clock_all_day))
        task = gateway.controller
        assert task is not None
        async with gateway:
            written = await written_setpoints(task)
            meter = gateway.latest.get("meter_power")
            online = {name: device.online for name, device in gateway.devices.items()}

    assert len(written) >= 2, f"the controller wrote {written}"
    state = task.state
    assert state is not None
    assert 40.0 < written[0] < written[1]  # ramping up from the 40 C the PLC held...
    assert state.circuits[0].curve_c > 55.0  # ...toward a January afternoon's curve
    assert abs(runner.station.plc.supply_setpoint_c - written[-1]) < 0.05  # it reached the PLC over OPC UA
    assert state.outdoor_source.value == "sensor" and state.circuits[0].rooms_valid == 6  # rooms read as nodes
    assert online == {"plc": True, "heat_meter": True}
    assert meter is not None and meter.quality.value == "good"  # the meter on Modbus beside it
