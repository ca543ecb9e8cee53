"""Commands through a real broker to the gateway and the simulated PLC: refusals change nothing."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
import yaml

from gateway.app import Gateway
from gateway.control.loader import load_controller_config
from sim.modbus_server import StationModbusServer, plc_settings
from tests.control.conftest import CONFIG_DIR, CONTROLLER_YAML
from tests.mqtt.conftest import TOPIC, Subscriber, gateway_config, station_with_mqtt, until
from tooling.devstack import Mosquitto


def envelope(command_id: str, expires_in_s: float = 60, **args: object) -> str:
    return json.dumps({"id": command_id, "origin": "dispatch/test", "expires": time.time() + expires_in_s,
                       "args": args})


async def test_bad_commands_are_refused_with_a_reason_and_change_nothing_on_the_plc(
        tmp_path: Path, broker: Mosquitto, station_server: StationModbusServer,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.mqtt.commands")
    plc = station_server.station.plc
    before = plc_settings(plc)
    target = round(before.supply_setpoint_c) + 2.0
    config = gateway_config(station_with_mqtt(station_server.port, broker.port))
    bad = [
        ("write", "{\"id\": \"m1\", ", None, "malformed JSON: Expecting property name enclosed in double quotes"),
        ("reboot", envelope("u1"), "u1", "unknown command 'reboot' (known: alarm_ack, alarm_shelve, outdoor, replay, setpoint_offset, write)"),
        ("write", envelope("r1", tag="supply_setpoint", value=200), "r1", "value 200 outside the limits [30.0, 90.0]"),
        ("write", envelope("r2", tag="supply_setpoint", value=target + 10), "r2", "exceeds max_step 5"),
        ("write", envelope("r3", tag="valve_mode", value=1), "r3", "tag 'valve_mode' is not writable"),
        ("setpoint_offset", envelope("r4", offset_k=-25, duration_s=3600), "r4", "offset_k: must be between -20 and 20"),
        ("setpoint_offset", envelope("n1", offset_k=-2.0, duration_s=3600), "n1", "controller not running"),
        ("write", envelope("e1", expires_in_s=-5, tag="supply_setpoint", value=target), "e1", "expired at "),
    ]
    with Subscriber(broker.port) as dispatch:
        async with Gateway(config, state_dir=tmp_path / "state"):
            await until(lambda: bool(dispatch.seqs()), 10, "the gateway online")
            for name, payload, _id, _reason in bad:
                dispatch.publish(f"{TOPIC}/cmd/{name}", payload)
            await until(lambda: len([m for m in dispatch.messages if m.topic.endswith("/result")]) >= len(bad), 10,
                        "an answer to every bad command")
            assert plc_settings(plc) == before, "a refused command changed the PLC"

            dispatch.publish(f"{TOPIC}/cmd/write", envelope("ok1", tag="supply_setpoint", value=target))
            await until(lambda: any(m.json()["id"] == "ok1" for m in dispatch.on(f"{TOPIC}/cmd/write/result")), 10,
                        "the answer to the good command")

    results = [m for m in dispatch.messages if m.topic.endswith("/result")]
    answers = {(m.topic.split("/")[-2], m.json()["id"]): m.json() for m in results}
    for name, _payload, command_id, reason in bad:
        answer = answers[(name, command_id)]
        assert answer["ok"] is False and reason in answer["reason"], (name, command_id, answer)
    assert answers[("write", "ok1")]["ok"] is True
    assert answers[("write", "ok1")]["result"] == {"readback": target}
    assert plc.supply_setpoint_c == pytest.approx(target), "the one valid command did reach the PLC"
    logged = [r.getMessage() for r in caplog.records if r.name == "gateway.mqtt.commands"]
    assert logged.count("command refused") == len(bad) and logged.count("command done") == 1


async def test_a_station_configured_for_8_k_accepts_an_8_k_offset_over_mqtt_and_refuses_9_k_naming_its_bound(
        tmp_path: Path, broker: Mosquitto, station_server: StationModbusServer) -> None:
    """The offset bound is the station's ``controller.dispatch.max_offset_k``: the command schema
    does not hold a bound of its own that a station's setting could never get past."""
    data = yaml.safe_load(CONTROLLER_YAML.read_text())
    data["controller"]["dispatch"] = {"max_offset_k": 8, "max_duration_s": 2 * 86400}
    data["controller"]["circuits"]["radiators"]["curve"] = str(CONFIG_DIR / "curves" / "radiators-75-50.yaml")
    (tmp_path / "controller.yaml").write_text(yaml.safe_dump(data))
    config = gateway_config(station_with_mqtt(station_server.port, broker.port))
    cases = [
        ("a1", {"offset_k": 8.0, "duration_s": 3600}, True, ""),
        ("a2", {"offset_k": -9.0, "duration_s": 3600}, False,
         "offset_k: must be between -8 and 8 (controller.dispatch.max_offset_k)"),
        ("a3", {"offset_k": 2.0, "duration_s": 1.5 * 86400}, True, ""),  # a longer bound than the default day
        ("a4", {"offset_k": 2.0, "duration_s": 3 * 86400}, False,
         "duration_s: must be above 0 and at most 172800 (controller.dispatch.max_duration_s)"),
        ("a5", {"offset_k": 25.0, "duration_s": 3600}, False, "offset_k: must be between -20 and 20"),
    ]
    with Subscriber(broker.port) as dispatch:
        async with Gateway(config, state_dir=tmp_path / "state",
                           controller=load_controller_config(tmp_path / "controller.yaml")):
            await until(lambda: bool(dispatch.seqs()), 10, "the gateway online")
            for command_id, args, _ok, _reason in cases:
                dispatch.publish(f"{TOPIC}/cmd/setpoint_offset", envelope(command_id, **args))
            await until(lambda: len(dispatch.on(f"{TOPIC}/cmd/setpoint_offset/result")) >= len(cases), 10,
                        "an answer to every offset")
    answers = {m.json()["id"]: m.json() for m in dispatch.on(f"{TOPIC}/cmd/setpoint_offset/result")}
    for command_id, _args, ok, reason in cases:
        assert answers[command_id]["ok"] is ok, answers[command_id]
        assert answers[command_id].get("reason", "") == reason, answers[command_id]
