"""SIGHUP with the PLC on OPC UA: against the simulator's OPC UA server and its Modbus heat meter,
a reload that adds a node to the PLC and changes the interval of the group it subscribes restarts
the PLC's subscriptions with the new node and the new interval, while the meter on Modbus beside
it is not touched and misses no poll."""

from __future__ import annotations

import copy
import statistics
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.app import Gateway
from gateway.preflight import load_startup
from gateway.reload import StationReload
from gateway.samples import SampleBatch
from sim.runner import SimRunner
from tests.control.test_integration_opcua import STATION_OPCUA_YAML
from tests.gateway.conftest import Recorder, demo_station
from tests.gateway.test_station_reload import write

FAST_BEFORE_S, FAST_AFTER_S = 1.0, 0.5  # the PLC's subscription group, and only the PLC's
METER_S = 0.5  # the meter's group ("slow"), which the reload leaves alone


def station(runner: SimRunner) -> dict[str, Any]:
    """config/station-opcua.yaml pointed at the runner, without MQTT, and without the node the
    reload adds (``valve_position``)."""
    assert runner.opcua is not None
    data = yaml.safe_load(STATION_OPCUA_YAML.read_text())
    data.pop("mqtt")
    data["devices"]["plc"]["endpoint"] = runner.opcua.endpoint
    data["devices"]["heat_meter"]["port"] = runner.server.port
    data["groups"] = {"fast": {"interval_s": FAST_BEFORE_S}, "slow": {"interval_s": METER_S}}
    del data["devices"]["plc"]["tags"]["valve_position"]
    return data


def arrivals(recorder: Recorder, tag: str, after: float = 0.0, before: float = float("inf")) -> list[float]:
    """When samples of ``tag`` reached the bus (loop time), between ``after`` and ``before``."""
    return [t for t, item in recorder.items if isinstance(item, SampleBatch) and after < t < before
            for sample in item.samples if sample.tag == tag]


async def test_a_reload_adds_a_node_to_the_opcua_subscription_and_changes_its_interval_while_the_modbus_meter_polls_on(
        tmp_path: Path) -> None:
    config, state = tmp_path / "station.yaml", tmp_path / "state"
    async with SimRunner(demo_station(), opcua_port=0, control_port=None, tick_s=0.05, speed=60.0) as runner:
        data = station(runner)
        write(config, data)
        startup = load_startup(config, None, state)
        gateway = Gateway(startup.station, state_dir=state)
        async with Recorder(gateway.bus) as recorder, gateway:
            await recorder.wait_for(lambda: len(arrivals(recorder, "pump_running")) >= 5, 20,
                                    "the PLC's constant values refreshed before the reload")
            meter = gateway.devices["heat_meter"]
            new = copy.deepcopy(data)
            new["devices"]["plc"]["tags"]["valve_position"] = copy.deepcopy(
                yaml.safe_load(STATION_OPCUA_YAML.read_text())["devices"]["plc"]["tags"]["valve_position"])
            new["groups"]["fast"]["interval_s"] = FAST_AFTER_S
            write(config, new)
            signalled = recorder.items[-1][0]
            assert await StationReload(gateway, config, None, state, startup)() is None
            applied = recorder.items[-1][0]
            await recorder.wait_for(lambda: len(arrivals(recorder, "pump_running", after=applied)) >= 8
                                    and len(arrivals(recorder, "valve_position")) >= 3, 20,
                                    "the new node's values and the faster refreshes")
            assert gateway.devices["heat_meter"] is meter, "the meter's device was restarted"
            online = {name: device.online for name, device in gateway.devices.items()}

    assert online == {"plc": True, "heat_meter": True}
    new_values = [sample for _, item in recorder.items if isinstance(item, SampleBatch)
                  for sample in item.samples if sample.tag == "valve_position"]
    assert {sample.quality.value for sample in new_values} == {"good"}
    assert {item.device for _, item in recorder.items if isinstance(item, SampleBatch)
            and any(sample.tag == "valve_position" for sample in item.samples)} == {"plc"}

    before = arrivals(recorder, "pump_running", before=signalled)[1:]  # (the first: the subscription's initial value)
    after = arrivals(recorder, "pump_running", after=applied)[1:]
    assert statistics.median(b - a for a, b in zip(before, before[1:])) == pytest.approx(FAST_BEFORE_S, abs=0.15)
    assert statistics.median(b - a for a, b in zip(after, after[1:])) == pytest.approx(FAST_AFTER_S, abs=0.15)

    polls = arrivals(recorder, "meter_flow", after=signalled - 3 * METER_S, before=applied + 3 * METER_S)
    assert len(polls) >= 4
    gaps = [b - a for a, b in zip(polls, polls[1:])]
    assert max(gaps) < 1.5 * METER_S, f"the untouched meter missed a poll across the reload: gaps {gaps}"
