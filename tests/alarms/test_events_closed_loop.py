"""Station events as the dispatch centre sees them on MQTT, on the simulator's accelerated time:
the gateway's alarms and events are timed on the simulated clock (``alarm_clock``), so a 9-hour
outage takes seconds and its escalations fall at the right simulated times."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from gateway.app import Gateway
from tooling.devstack import Mosquitto
from sim.runner import SimRunner
from tests.gateway.conftest import demo_station
from tests.mqtt.conftest import TOPIC, Subscriber, gateway_config, station_with_mqtt, until

SPEED = 1800.0  # a simulated hour in two seconds
H = 3600.0


def updates(subscriber: Subscriber, event: str) -> list[dict[str, Any]]:
    return [m.json() for m in subscriber.on(f"{TOPIC}/events") if m.json()["id"] == event]


@asynccontextmanager
async def station(tmp_path: Path, broker: Mosquitto) -> AsyncIterator[tuple[SimRunner, Subscriber]]:
    async with SimRunner(demo_station(), speed=SPEED, tick_s=0.05, control_port=None) as runner:
        data = station_with_mqtt(runner.server.port, broker.port)
        data["groups"]["slow"]["interval_s"] = 0.5  # the make-up counter and the rooms: every 15 simulated min
        data["events"]["rooms"]["tags"] = ["room_a_1_temp"]  # no controller here to name the rooms
        with Subscriber(broker.port) as dispatch:
            async with Gateway(gateway_config(data), state_dir=tmp_path / "state",
                               alarm_clock=lambda: runner.station.time_s, controller_time_scale=SPEED):
                await until(lambda: bool(dispatch.seqs()), 10, "telemetry")
                yield runner, dispatch


async def test_primary_supply_lost_for_9_hours_is_one_interruption_escalated_at_1_and_8_hours(
        tmp_path: Path, broker: Mosquitto) -> None:
    async with station(tmp_path, broker) as (runner, dispatch):
        lost_at = runner.station.time_s
        runner.station.faults.primary_loss()
        await until(lambda: any(u["state"] == "started" for u in updates(dispatch, "interruption")), 10,
                    "the interruption")
        await until(lambda: runner.station.time_s >= lost_at + 9 * H, 30, "nine simulated hours")
        runner.station.faults.clear("primary_loss")
        back_at = runner.station.time_s
        await until(lambda: any(u["state"] == "ended" for u in updates(dispatch, "interruption")), 10, "its end")
        with Subscriber(broker.port, topics=(f"{TOPIC}/events/open",)) as late:
            await until(lambda: bool(late.messages), 5, "the retained summary of open events")
            summary = late.messages[-1]
    got = updates(dispatch, "interruption")
    assert [u["state"] for u in got] == ["started", "escalated", "escalated", "ended"]
    started, first, second, ended = got
    assert lost_at <= started["started"] < lost_at + 0.5 * H  # a poll (6 min) and 5 min to confirm
    assert "primary supply lost" in started["cause"] and started["deadline"] == started["started"] + H
    assert first["escalation_h"] == 1 and abs(first["ts"] - (started["started"] + H)) < 600
    assert first["deadline"] == started["started"] + 8 * H
    assert second["escalation_h"] == 8 and abs(second["ts"] - (started["started"] + 8 * H)) < 600
    assert second["deadline"] == started["started"] + 24 * H
    # It ends when heat reaches the users again: the supply back above 35 C, some time after the
    # primary network returns (the exchanger and the secondary water warm up first).
    assert back_at <= ended["ended"] < back_at + 1.5 * H and ended["duration_s"] > 8.5 * H
    # The rooms cooled during the outage: their events may still be open, the interruption is not.
    assert summary.retain and "interruption" not in {event["id"] for event in summary.json()["open"]}


async def test_a_leak_is_a_make_up_loss_event_and_a_cold_room_a_16_degree_event_with_its_deadline(
        tmp_path: Path, broker: Mosquitto) -> None:
    async with station(tmp_path, broker) as (runner, dispatch):
        runner.station.faults.leak(m3h=1.0)
        runner.station.faults.freeze("A-1", 15.0)
        await until(lambda: bool(updates(dispatch, "makeup_loss")), 30, "the make-up loss event")
        await until(lambda: bool(updates(dispatch, "room_repair_room_a_1_temp")), 30, "the 16 C event")
        opened = dispatch.on(f"{TOPIC}/events/open")[-1].json()["open"]
    [loss] = updates(dispatch, "makeup_loss")[:1]
    assert loss["state"] == "started" and loss["value"] > 1.0 and loss["deadline"] == loss["started"] + 6 * H
    [cold] = updates(dispatch, "room_repair_room_a_1_temp")[:1]
    assert cold["state"] == "started" and cold["value"] == 15.0 and cold["refund_pct"] == 50
    assert cold["deadline"] == cold["started"] + 2 * H
    assert {"makeup_loss", "room_repair_room_a_1_temp"} <= {event["id"] for event in opened}
