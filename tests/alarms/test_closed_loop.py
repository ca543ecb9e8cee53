"""What an operator sees on MQTT when the simulated station breaks: the real gateway (pollers,
controller, alarm engine, outbox, publisher) against the simulator over Modbus TCP and a real
Mosquitto, faults injected into the station's physics and its wire."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from gateway.app import Gateway
from gateway.control.loader import load_controller_config
from gateway.control.model import Signal
from tooling.devstack import Mosquitto
from sim.modbus_server import CommFaults
from sim.runner import SimRunner
from tests.control.conftest import CONFIG_DIR, CONTROLLER_YAML
from tests.gateway.conftest import demo_station
from tests.mqtt.conftest import TOPIC, Subscriber, gateway_config, station_with_mqtt, until


def events(subscriber: Subscriber, alarm: str | None = None) -> list[dict[str, Any]]:
    got = [m.json() for m in subscriber.on(f"{TOPIC}/events")]
    return [e for e in got if alarm is None or e["id"] == alarm]


def has(subscriber: Subscriber, alarm: str, state: str) -> Callable[[], bool]:
    return lambda: any(e["state"] == state for e in events(subscriber, alarm))


def activations(subscriber: Subscriber) -> list[str]:
    return [e["id"] for e in events(subscriber) if e["state"] == "active"]


def command(alarm_id: str) -> str:
    return json.dumps({"id": f"ack-{alarm_id}", "origin": "dispatch/zhang.wei", "expires": time.time() + 60,
                       "args": {"alarm_id": alarm_id}})


def controller_file(tmp_path: Path) -> Path:
    data = yaml.safe_load(CONTROLLER_YAML.read_text())
    section = data["controller"]
    section["cycle_s"] = 1
    section["season"]["override"] = "heating"
    section["circuits"]["radiators"]["comfort"].update(day_start="00:00", day_end="23:59:59")
    section["circuits"]["radiators"]["curve"] = str(CONFIG_DIR / "curves" / "radiators-75-50.yaml")
    (tmp_path / "controller.yaml").write_text(yaml.safe_dump(data))
    return tmp_path / "controller.yaml"


async def test_a_pump_trip_is_one_critical_alarm_acknowledged_over_mqtt_and_normal_once_cleared(
        tmp_path: Path, broker: Mosquitto) -> None:
    async with SimRunner(demo_station(), speed=60.0, tick_s=0.05, control_port=None) as runner:
        config = gateway_config(station_with_mqtt(runner.server.port, broker.port))
        with Subscriber(broker.port) as dispatch:
            gateway = Gateway(config, state_dir=tmp_path / "state",
                              controller=load_controller_config(controller_file(tmp_path)))
            async with gateway:
                await until(lambda: bool(dispatch.seqs()), 10, "telemetry")
                await until(lambda: gateway.controller is not None and gateway.controller.state is not None, 10,
                            "the controller's first state")
                before = set(activations(dispatch))
                tripped_at = time.monotonic()
                runner.station.faults.pump_trip()
                await until(has(dispatch, "pump_trip", "active"), 5, "the pump trip alarm")
                assert time.monotonic() - tripped_at < 3.0
                task = gateway.controller
                assert task is not None
                await until(lambda: task.state is not None and Signal.CIRCULATION_LOST in task.state.signals, 10,
                            "the controller to notice")
                assert task.state is not None
                assert task.state.circuits[0].reason.startswith("circulation lost: pump fault; holding")
                # Past the consequences' on-delays (10 s for circulation_lost, the controller's signal).
                await until(has(dispatch, "circulation_lost", "suppressed"), 20, "circulation_lost suppressed")
                await until(has(dispatch, "no_circulation_flow", "suppressed"), 20, "no flow suppressed")

                [trip] = [e for e in events(dispatch, "pump_trip") if e["state"] == "active"]
                assert (trip["priority"], trip["kind"], trip["value"]) == ("critical", "alarm", True)
                assert trip["message"] == "循环泵故障 Circulation pump tripped"
                assert set(activations(dispatch)) - before == {"pump_trip"}  # one fault, one alarm
                control = [m.json() for m in dispatch.on(f"{TOPIC}/control")]
                assert any(c["signals"].get("circulation_lost") for c in control)

                dispatch.publish(f"{TOPIC}/cmd/alarm_ack", command("pump_trip"))
                await until(has(dispatch, "pump_trip", "acknowledged"), 5, "the acknowledgement")
                [answer] = [m.json() for m in dispatch.on(f"{TOPIC}/cmd/alarm_ack/result")]
                assert answer["ok"] is True and answer["result"]["state"] == "acknowledged"
                again = json.loads(command("pump_trip")) | {"id": "ack-2"}
                dispatch.publish(f"{TOPIC}/cmd/alarm_ack", json.dumps(again))
                await until(lambda: len(dispatch.on(f"{TOPIC}/cmd/alarm_ack/result")) == 2, 5, "the refusal")
                assert dispatch.on(f"{TOPIC}/cmd/alarm_ack/result")[1].json()["reason"] == "already acknowledged"

                runner.station.faults.clear("pump_trip")
                await until(has(dispatch, "pump_trip", "normal"), 10, "the trip to clear")
                await until(lambda: task.state is not None and Signal.CIRCULATION_LOST not in task.state.signals, 10,
                            "heating to resume")
                seqs = [e["seq"] for e in events(dispatch)]
                assert len(seqs) == len(set(seqs))  # every transition once, each with its own seq
                with Subscriber(broker.port, topics=(f"{TOPIC}/alarms/+",)) as late:
                    await until(lambda: bool(late.on(f"{TOPIC}/alarms/pump_trip")), 5, "the retained state")
                    retained = late.on(f"{TOPIC}/alarms/pump_trip")[-1]
                    assert retained.retain and retained.json()["state"] == "normal"
                    assert retained.json()["origin"] == "dispatch/zhang.wei"


async def test_a_device_that_stops_answering_is_one_comm_loss_alarm_not_one_per_tag(
        tmp_path: Path, broker: Mosquitto) -> None:
    async with SimRunner(demo_station(), speed=60.0, tick_s=0.05, control_port=None) as runner:
        data = station_with_mqtt(runner.server.port, broker.port)
        for alarm in data["alarms"]["definitions"].values():
            if alarm["kind"] == "quality":
                # Would fire within the test if the comm loss did not suppress it; longer than the
                # PLC's poll interval plus its full timeout (2 s), after which the poller reports it lost.
                alarm["after_s"] = 4
        config = gateway_config(data)
        with Subscriber(broker.port) as dispatch:
            async with Gateway(config, state_dir=tmp_path / "state"):
                await until(lambda: bool(dispatch.seqs()), 10, "telemetry")
                before = set(activations(dispatch))
                runner.server.set_comm_faults(1, CommFaults(offline=True))
                await until(has(dispatch, "plc_lost", "active"), 15, "the PLC comm loss alarm")
                await until(has(dispatch, "supply_sensor", "suppressed"), 10, "the supply sensor alarm suppressed")
                assert set(activations(dispatch)) - before == {"plc_lost"}
                runner.server.set_comm_faults(1, CommFaults())
                await until(has(dispatch, "plc_lost", "returned"), 20, "the PLC back")
