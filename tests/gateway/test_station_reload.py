"""SIGHUP re-reads station.yaml: against the simulator over Modbus TCP and a real Mosquitto, a
reload adds a tag, changes an interval and removes a device while the untouched device polls on
without a gap and the outbox sequence runs on; a broken file changes nothing; a writable tag the
reload removed cannot be written any more."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from gateway.app import Gateway
from tooling.devstack import Mosquitto, stop_process
from gateway.preflight import Startup, load_startup
from gateway.reload import REMOVED, StationReload, plan_reload
from gateway.yaml_source import ConfigError
from sim.modbus_server import StationModbusServer
from tests.gateway.conftest import STATION_YAML, station_server  # noqa: F401 - a fixture used here
from tests.mqtt.conftest import (  # noqa: F401 - broker is a fixture
    TOPIC,
    Subscriber,
    assert_in_order_without_gap,
    broker,
    mqtt_section,
    until,
)

FAST_S = 0.5  # the plc's process values: the device that must not notice the reload
METER_BEFORE_S, METER_AFTER_S = 1.0, 0.4


def station(modbus_port: int, broker_port: int) -> dict[str, Any]:
    """The demo station with a second view of the heat meter (``meter_b``, its own group) and
    every sample reported, so the broker sees each poll."""
    data = copy.deepcopy(yaml.safe_load(STATION_YAML.read_text()))
    for device in data["devices"].values():
        device["port"] = modbus_port
    data["mqtt"] = mqtt_section(broker_port)
    data["groups"] = {"fast": {"interval_s": FAST_S}, "slow": {"interval_s": 1.0}, "meter": {"interval_s": METER_BEFORE_S}}
    data["devices"]["meter_b"] = {
        "protocol": "modbus_tcp", "host": "127.0.0.1", "port": modbus_port, "unit_id": 2, "timeout_s": 1.0,
        "max_gap": 0, "tags": {"meter_b_flow": {"function": "holding", "address": 0, "type": "float32",
                                                "unit": "m3/h", "group": "meter"}}}
    return data


def reloaded(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with a tag added to ``meter_b``, its group faster, and the heat meter removed
    (with the alarm and the report figure that named it)."""
    new = copy.deepcopy(data)
    new["devices"]["meter_b"]["tags"]["meter_b_power"] = {"function": "holding", "address": 2, "type": "float32",
                                                          "unit": "kW", "group": "meter"}
    new["groups"]["meter"]["interval_s"] = METER_AFTER_S
    del new["devices"]["heat_meter"]
    del new["alarms"]["definitions"]["heat_meter_lost"]
    del new["report"]["energy_tag"]
    return new


def write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def samples(subscriber: Subscriber, tag: str) -> list[tuple[float, str]]:
    """(timestamp, quality) of every telemetry sample of ``tag`` at the broker, in time order."""
    return sorted((t, quality) for t, quality, _ in rows(subscriber, tag))


def rows(subscriber: Subscriber, tag: str) -> list[tuple[float, str, Any]]:
    """(timestamp, quality, value) of every telemetry sample of ``tag`` at the broker."""
    found = []
    for message in subscriber.on(f"{TOPIC}/telemetry"):
        data = message.json()
        found += [(data["t0"] + row[2] / 1000, row[3], row[1]) for row in data["s"] if row[0] == tag]
    return found


def logged(log: Path, message: str) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if f'msg="{message}"' in line]


def start(config: Path, state: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as journal:
        return subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(config),
                                 "--state-dir", str(state)], stdout=journal, stderr=journal, cwd=config.parent)


async def test_a_sighup_adds_a_tag_changes_an_interval_and_removes_a_device_while_the_rest_polls_on(
        tmp_path: Path, station_server: StationModbusServer, broker: Mosquitto) -> None:  # noqa: F811
    config, log = tmp_path / "station.yaml", tmp_path / "journal.log"
    data = station(station_server.port, broker.port)
    write(config, data)
    process = None
    with Subscriber(broker.port) as dispatch:
        try:
            process = start(config, tmp_path / "state", log)
            await until(lambda: len(samples(dispatch, "meter_b_flow")) >= 3 and samples(dispatch, "meter_flow"),
                        20, "the meter's values before the reload")
            write(config, reloaded(data))
            signalled = time.time()
            process.send_signal(signal.SIGHUP)
            await until(lambda: bool(logged(log, "station reloaded")), 10, "the reload")
            applied = time.time()
            await until(lambda: len(samples(dispatch, "meter_b_power")) >= 8, 10, "the new tag's values")
            await asyncio.sleep(1.0)
            process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(process.wait, 20) == 0
        finally:
            stop_process(process)

    summary = logged(log, "station reloaded")[0]
    assert "sections=devices,groups,alarms,report devices_added=- devices_removed=heat_meter" in summary, summary
    assert 'devices_restarted="meter_b (tags added meter_b_power; group meter)"' in summary, summary
    assert "tags_added=meter_b_power" in summary and "tags_removed=meter_flow," in summary, summary

    assert {quality for _, quality in samples(dispatch, "meter_b_power")} == {"g"}
    powers = [value for _, _, value in rows(dispatch, "meter_b_power")]
    assert all(float(f"{value:.7g}") == value for value in powers), f"not rounded as a float32: {powers}"
    before = [t for t, _ in samples(dispatch, "meter_b_flow") if t < signalled]
    after = [t for t, _ in samples(dispatch, "meter_b_flow") if t > applied]
    assert statistics.median(b - a for a, b in zip(before, before[1:])) == pytest.approx(METER_BEFORE_S, abs=0.1)
    assert statistics.median(b - a for a, b in zip(after, after[1:])) == pytest.approx(METER_AFTER_S, abs=0.1)

    assert max(t for t, _ in samples(dispatch, "meter_flow")) < applied, "the removed device's values went on"
    removals = [m.json() for m in dispatch.on(f"{TOPIC}/events") if m.json().get("kind") == "device"
                and m.json()["id"] == "heat_meter" and m.json()["state"] == "offline"]
    assert [removal["reason"] for removal in removals] == [REMOVED]

    plc = [t for t, _ in samples(dispatch, "outdoor_temp")]
    around = [t for t in plc if signalled - 3 * FAST_S < t < applied + 3 * FAST_S]
    assert len(around) >= 4
    gaps = [b - a for a, b in zip(around, around[1:])]
    assert max(gaps) < 1.5 * FAST_S, f"the untouched plc missed a poll across the reload: gaps {gaps}"

    assert_in_order_without_gap(dispatch.seqs())
    meta = dispatch.on(f"{TOPIC}/meta")[-1].json()
    assert "meter_b_power" in meta["tags"] and "meter_flow" not in meta["tags"]
    hashes = [status["config_hash"] for status in dispatch.statuses() if status["state"] == "online"]
    assert len(set(hashes)) == 2 and hashes[-1] == meta["config_hash"]
    assert "Traceback" not in log.read_text(errors="replace")


async def test_a_broken_or_restart_only_file_is_refused_with_its_line_and_everything_runs_on(
        tmp_path: Path, station_server: StationModbusServer, broker: Mosquitto) -> None:  # noqa: F811
    config, log = tmp_path / "station.yaml", tmp_path / "journal.log"
    data = station(station_server.port, broker.port)
    write(config, data)
    good = config.read_text()
    bad_interval = copy.deepcopy(data)
    bad_interval["groups"]["meter"]["interval_s"] = -1
    moved_broker = copy.deepcopy(data)
    moved_broker["mqtt"]["port"] = broker.port + 1
    broken = [("a YAML error", good.replace("  meter:\n    interval_s: 1.0", "  meter:\n    interval_s: [1.0", 1)),
              ("a validation error", yaml.safe_dump(bad_interval, sort_keys=False, allow_unicode=True))]
    process = None
    with Subscriber(broker.port) as dispatch:
        try:
            process = start(config, tmp_path / "state", log)
            await until(lambda: len(samples(dispatch, "meter_b_flow")) >= 2, 20, "values before the reloads")
            for number, (what, text) in enumerate(broken, start=1):
                config.write_text(text)
                with pytest.raises(ConfigError) as check:  # what `heatgw check` prints for this file
                    load_startup(config)
                process.send_signal(signal.SIGHUP)
                await until(lambda n=number: len(logged(log, "reload refused, the running configuration stays in force")) >= n,
                            10, f"the refusal of {what}")
                refusal = logged(log, "reload refused, the running configuration stays in force")[-1]
                for message in check.value.messages:
                    assert re.match(r".*station\.yaml:\d+:\d+: ", message), message
                    assert message.replace('"', '\\"') in refusal, (what, message, refusal)
            write(config, moved_broker)
            process.send_signal(signal.SIGHUP)
            await until(lambda: len(logged(log, "reload refused, the running configuration stays in force")) == 3,
                        10, "the refusal of a restart-only change")
            assert "mqtt changed: restart needed (systemctl restart heatgw)" in \
                logged(log, "reload refused, the running configuration stays in force")[-1]
            count, seq = len(samples(dispatch, "meter_b_flow")), max(dispatch.seqs())
            await until(lambda: len(samples(dispatch, "meter_b_flow")) >= count + 2 and max(dispatch.seqs()) > seq + 2,
                        10, "values after the refused reloads")
            assert process.poll() is None
        finally:
            stop_process(process)
    assert not logged(log, "station reloaded")
    after = [t for t, _ in samples(dispatch, "meter_b_flow")][-3:]
    assert statistics.median(b - a for a, b in zip(after, after[1:])) == pytest.approx(METER_BEFORE_S, abs=0.1)
    assert_in_order_without_gap(dispatch.seqs())
    assert "Traceback" not in log.read_text(errors="replace")


async def test_a_writable_tag_the_reload_removed_is_refused_over_mqtt_at_once(
        tmp_path: Path, station_server: StationModbusServer, broker: Mosquitto) -> None:  # noqa: F811
    config, state = tmp_path / "station.yaml", tmp_path / "state"
    state.mkdir()
    data = station(station_server.port, broker.port)
    write(config, data)
    startup = load_startup(config, None, state)

    async def answer(dispatch: Subscriber, command_id: str) -> dict[str, Any]:
        dispatch.publish(f"{TOPIC}/cmd/write", json.dumps({"id": command_id, "origin": "dispatch/test",
                                                           "expires": time.time() + 60,
                                                           "args": {"tag": "pump_frequency_setpoint", "value": 44.0}}))
        results = f"{TOPIC}/cmd/write/result"
        await until(lambda: any(m.json()["id"] == command_id for m in dispatch.on(results)), 10, f"the answer to {command_id}")
        return next(m.json() for m in dispatch.on(results) if m.json()["id"] == command_id)

    with Subscriber(broker.port) as dispatch:
        async with Gateway(startup.station, state_dir=state) as gateway:
            await until(lambda: gateway.devices["plc"].online is True, 10, "the plc online")
            assert (await answer(dispatch, "before"))["ok"] is True
            without = copy.deepcopy(data)
            del without["devices"]["plc"]["tags"]["pump_frequency_setpoint"]
            write(config, without)
            assert await StationReload(gateway, config, None, state, startup)() is None
            refused = await answer(dispatch, "after")
    assert refused["ok"] is False
    assert refused["reason"] == "unknown tag 'pump_frequency_setpoint'"


def test_a_plan_restarts_the_devices_that_share_a_serial_line_with_a_changed_one(tmp_path: Path) -> None:
    def rtu(unit: int, tag: str) -> dict[str, Any]:
        return {"protocol": "modbus_rtu", "serial_port": "/dev/ttyUSB0", "unit_id": unit,
                "tags": {tag: {"function": "holding", "address": 0, "group": "default"}}}

    base = {"station": {"id": "s1", "name": "S"}, "devices": {"meter": rtu(1, "a"), "power": rtu(2, "b")}}
    old = load(tmp_path / "old.yaml", base)
    changed = copy.deepcopy(base)
    changed["devices"]["meter"]["tags"]["c"] = {"function": "holding", "address": 2, "group": "default"}
    plan = plan_reload(old, load(tmp_path / "new.yaml", changed))
    assert plan.changed == {"meter": "tags added c", "power": "shares its line with a device that changed"}
    unchanged = plan_reload(old, old)
    assert unchanged.changed == {} and unchanged.nothing


def load(path: Path, data: dict[str, Any]) -> Any:
    write(path, data)
    return load_startup(path).station


async def test_a_station_file_that_drops_a_tag_the_controller_uses_is_refused_as_check_refuses_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = yaml.safe_load(STATION_YAML.read_text())
    del data["devices"]["plc"]["tags"]["supply_setpoint"]
    del data["alarms"]["definitions"]["supply_deviation"]
    config, controller = tmp_path / "station.yaml", STATION_YAML.parent / "controller.yaml"
    write(config, data)
    with pytest.raises(ConfigError) as check:
        load_startup(config, controller)
    assert any("controller.yaml" in m and "unknown tag 'supply_setpoint'" in m for m in check.value.messages)
    reload = StationReload(cast(Gateway, None), config, controller, None, cast(Startup, None))
    assert await reload() == "\n".join(check.value.messages)  # refused before the gateway is looked at
    assert "reload refused, the running configuration stays in force" in caplog.text


def test_a_plan_restarts_a_device_whose_write_limits_changed_and_leaves_the_others(tmp_path: Path) -> None:
    data = yaml.safe_load(STATION_YAML.read_text())
    old = load(tmp_path / "old.yaml", data)
    lowered = copy.deepcopy(data)
    lowered["devices"]["plc"]["tags"]["supply_setpoint"]["writable"]["max"] = 80
    plan = plan_reload(old, load(tmp_path / "new.yaml", lowered))
    assert plan.changed == {"plc": "tags changed supply_setpoint"}
    assert (plan.added, plan.removed, plan.tags_added, plan.tags_removed) == ((), (), (), ())
    assert plan.sections == ("devices",) and not plan.restart_only


ALWAYS_ACTIVE = {"kind": "threshold", "tag": "outdoor_temp", "level": "h", "limit": -100, "deadband": 1,
                 "priority": "low", "message": "outdoor above -100 °C (a test alarm, active at once)"}


def with_alarm(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with an alarm active at once, and a station event open at once (a "trip" on the
    running pump)."""
    new = copy.deepcopy(data)
    new["alarms"]["definitions"]["outdoor_check"] = ALWAYS_ACTIVE
    new["events"]["trips"]["pump_on"] = "pump_running"
    return new


def event_states(dispatch: Subscriber, event: str) -> dict[int, str]:
    """seq -> state of every update of station event ``event`` on the events stream."""
    return {m.json()["seq"]: m.json()["state"] for m in dispatch.on(f"{TOPIC}/events")
            if m.json().get("kind") == "event" and m.json()["id"] == event}


def alarm_states(dispatch: Subscriber, alarm: str) -> list[dict[str, Any]]:
    """The transitions of ``alarm`` on the events stream, in arrival order."""
    return [m.json() for m in dispatch.on(f"{TOPIC}/events") if m.json().get("kind") == "alarm"
            and m.json()["id"] == alarm]


def retained(dispatch: Subscriber, alarm: str) -> list[bytes]:
    return [m.payload for m in dispatch.on(f"{TOPIC}/alarms/{alarm}")]


async def assert_no_retained_state(port: int, alarm: str, *topics: str) -> None:
    """A dashboard subscribing now gets the other alarms' retained states and none for ``alarm``
    (nor on ``topics``)."""
    with Subscriber(port) as late:
        await until(lambda: bool(retained(late, "pump_trip")), 10, "the retained alarm states")
        await asyncio.sleep(0.5)
    assert retained(late, alarm) == []
    for topic in topics:
        assert late.on(f"{TOPIC}/{topic}") == [], topic


async def test_an_alarm_the_reload_removed_ends_as_removed_on_events_then_its_retained_state_is_cleared(
        tmp_path: Path, station_server: StationModbusServer, broker: Mosquitto) -> None:  # noqa: F811
    config, state = tmp_path / "station.yaml", tmp_path / "state"
    data = with_alarm(station(station_server.port, broker.port))
    write(config, data)
    startup = load_startup(config, None, state)
    with Subscriber(broker.port) as dispatch:
        async with Gateway(startup.station, state_dir=state) as gateway:
            await until(lambda: [a["state"] for a in alarm_states(dispatch, "outdoor_check")] == ["active"]
                        and bool(retained(dispatch, "outdoor_check")), 10, "the test alarm active")
            await until(lambda: dispatch.on(f"{TOPIC}/events/open")[-1].json()["count"] == 1, 10, "the test event open")
            without = station(station_server.port, broker.port)
            del without["events"]  # the station events too: their retained summary has no owner any more
            write(config, without)
            assert await StationReload(gateway, config, None, state, startup)() is None
            await until(lambda: len(alarm_states(dispatch, "outdoor_check")) == 2
                        and retained(dispatch, "outdoor_check")[-1] == b"", 10, "the removal and the clear")
            assert "outdoor_check" not in {record.id for record in gateway.alarms.engine.records}
            await until(lambda: list(event_states(dispatch, "pump_on").values()) == ["started", "removed"], 10,
                        "the open event's removal")
            assert dispatch.on(f"{TOPIC}/events/open")[-1].payload == b""
        await assert_no_retained_state(broker.port, "outdoor_check", "events/open")
    removal = alarm_states(dispatch, "outdoor_check")[-1]
    assert (removal["state"], removal["previous"], removal["priority"]) == ("removed", "active", "low")
    assert removal["message"] == ALWAYS_ACTIVE["message"]
    states = [json.loads(payload)["state"] if payload else "" for payload in retained(dispatch, "outdoor_check")]
    assert states[-2:] == ["active", ""], states
    [event] = [m.json() for m in dispatch.on(f"{TOPIC}/events") if m.json().get("id") == "pump_on"
               and m.json()["state"] == "removed"]
    assert (event["cause"], event["ended"], event["deadline"]) == (REMOVED, None, None)
    assert_in_order_without_gap(dispatch.seqs())


async def test_an_alarm_removed_while_the_gateway_was_stopped_ends_once_at_the_next_start_and_stays_cleared(
        tmp_path: Path, station_server: StationModbusServer, broker: Mosquitto) -> None:  # noqa: F811
    config, state = tmp_path / "station.yaml", tmp_path / "state"
    data = station(station_server.port, broker.port)
    with Subscriber(broker.port) as dispatch:
        write(config, with_alarm(data))
        async with Gateway(load_startup(config, None, state).station, state_dir=state):
            await until(lambda: bool(alarm_states(dispatch, "outdoor_check")) and bool(event_states(dispatch, "pump_on")),
                        10, "the test alarm active and the test event open")
        write(config, data)
        for start in (1, 2):
            async with Gateway(load_startup(config, None, state).station, state_dir=state):
                await until(lambda n=start: retained(dispatch, "outdoor_check").count(b"") == n, 10,
                            f"the retained state cleared at start {start}")
                await until(lambda n=start: len([s for s in dispatch.statuses() if s["state"] == "online"]) == n + 1,
                            10, "the gateway online")
                await asyncio.sleep(0.5)
        await assert_no_retained_state(broker.port, "outdoor_check")
    assert list(event_states(dispatch, "pump_on").values()) == ["started", "removed"]
    assert [e["id"] for e in dispatch.on(f"{TOPIC}/events/open")[-1].json()["open"]] == []
    by_seq = {a["seq"]: (a["state"], a["previous"]) for a in alarm_states(dispatch, "outdoor_check")}  # (resent
    # from the outbox at each start: nothing confirms them here)
    assert list(by_seq.values()) == [("active", "normal"), ("removed", "active")], \
        "removed once: the second start only clears again"
    assert_in_order_without_gap(dispatch.seqs())


async def test_a_write_to_a_device_the_reload_is_restarting_waits_for_it_and_is_made(
        tmp_path: Path, station_server: StationModbusServer, broker: Mosquitto) -> None:  # noqa: F811
    config, state = tmp_path / "station.yaml", tmp_path / "state"
    data = station(station_server.port, broker.port)
    write(config, data)
    startup = load_startup(config, None, state)
    lowered = copy.deepcopy(data)
    lowered["devices"]["plc"]["tags"]["pump_frequency_setpoint"]["writable"]["max"] = 49  # restarts the plc
    async with Gateway(startup.station, state_dir=state) as gateway:
        await until(lambda: gateway.devices["plc"].online is True, 10, "the plc online")
        before = gateway.devices["plc"]
        write(config, lowered)
        reload = asyncio.create_task(StationReload(gateway, config, None, state, startup)())
        async with asyncio.timeout(10):
            while "plc" in gateway.devices:  # the old plc stopped, the new one not started yet
                await asyncio.sleep(0)
        written = await gateway.writes.write("pump_frequency_setpoint", 44.0, "dispatch/test")
        assert await reload is None
        assert gateway.devices["plc"] is not before
    assert (written.accepted, written.reason, written.readback) == (True, "", 44.0)
