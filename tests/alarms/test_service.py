"""The engine in the gateway's plumbing, without a broker: bus in, the real outbox and the real
alarm store out, commands answered, and the states carried across a restart."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from gateway.alarms.engine import AlarmEngine
from gateway.alarms.service import AlarmService
from gateway.alarms.settings import AlarmSettings
from gateway.alarms.store import AlarmStore
from gateway.bus import Bus
from gateway.mqtt.commands import CommandRegistry, standard_commands
from gateway.mqtt.outbox import AsyncOutbox
from gateway.mqtt.settings import OutboxSettings
from gateway.samples import Sample, SampleBatch
from gateway.writes import WriteQueue

SETTINGS = AlarmSettings.model_validate({"definitions": {
    "pump_trip": {"kind": "discrete", "tag": "pump_fault", "priority": "critical", "message": "循环泵故障 pump tripped"},
    "no_flow": {"kind": "threshold", "tag": "secondary_flow", "level": "l", "limit": 5, "priority": "high",
                "message": "no circulation flow"},
}})
TAGS = {"pump_fault": "plc", "secondary_flow": "plc"}


@asynccontextmanager
async def service(state: Path) -> AsyncIterator[tuple[Bus, AlarmService, AsyncOutbox, CommandRegistry]]:
    bus = Bus()
    outbox = AsyncOutbox(state / "outbox.sqlite", OutboxSettings())
    await outbox.open()
    alarms = AlarmService(AlarmEngine(SETTINGS, TAGS, now=time.time()), bus, store_path=state / "alarms.sqlite",
                          outbox=outbox, tick_s=0.05)
    commands = standard_commands(WriteQueue({}))
    alarms.provide_commands(commands)
    try:
        async with alarms:
            task = asyncio.create_task(alarms.run())
            try:
                yield bus, alarms, outbox, commands
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        await outbox.close()


async def publish(bus: Bus, **values: Any) -> None:
    await bus.publish(SampleBatch("plc", "fast", tuple(Sample(t, v, time.time()) for t, v in values.items())))
    await asyncio.sleep(0.1)


async def events(outbox: AsyncOutbox) -> list[dict[str, Any]]:
    entries = await outbox.pending(0, 1000)
    assert {entry.topic for entry in entries} <= {"events"}
    return [json.loads(entry.payload) for entry in entries]


def command(name: str, **args: Any) -> bytes:
    return json.dumps({"id": f"{name}-{time.time()}", "origin": "dispatch/王工", "expires": time.time() + 60,
                       "args": args}).encode()


async def test_every_transition_goes_to_the_outbox_on_events_with_the_outbox_seq(tmp_path: Path) -> None:
    async with service(tmp_path) as (bus, _alarms, outbox, commands):
        await publish(bus, pump_fault=True, secondary_flow=50.0)
        reply = json.loads(await commands.handle("alarm_ack", command("alarm_ack", alarm_id="pump_trip")))
        assert reply["ok"] and reply["result"] == {"alarm_id": "pump_trip", "state": "acknowledged"}
        await asyncio.sleep(0.1)
        got = await events(outbox)
    assert [(e["id"], e["state"]) for e in got] == [("pump_trip", "active"), ("pump_trip", "acknowledged")]
    assert [e["seq"] for e in got] == [1, 2]
    assert got[0]["kind"] == "alarm" and got[0]["priority"] == "critical" and got[0]["value"] is True
    assert got[0]["message"] == "循环泵故障 pump tripped"
    assert got[1]["origin"] == "dispatch/王工" and got[1]["acknowledged"] >= got[1]["activated"]


async def test_refusals_say_why(tmp_path: Path) -> None:
    async with service(tmp_path) as (bus, _alarms, _outbox, commands):
        unknown = json.loads(await commands.handle("alarm_ack", command("alarm_ack", alarm_id="nope")))
        idle = json.loads(await commands.handle("alarm_ack", command("alarm_ack", alarm_id="no_flow")))
        too_long = json.loads(await commands.handle("alarm_shelve", command(
            "alarm_shelve", alarm_id="no_flow", duration_s=86_400.0, reason="sensor repair")))
        shelved = json.loads(await commands.handle("alarm_shelve", command(
            "alarm_shelve", alarm_id="no_flow", duration_s=600.0, reason="sensor repair")))
    assert unknown["reason"] == "unknown alarm 'nope'"
    assert idle["reason"] == "not active"
    assert "alarms.max_shelve_s" in too_long["reason"]
    assert shelved["ok"] and shelved["result"]["state"] == "shelved"


async def test_states_survive_a_restart_without_a_duplicate_activation(tmp_path: Path) -> None:
    async with service(tmp_path) as (bus, _alarms, outbox, commands):
        await publish(bus, pump_fault=True, secondary_flow=0.0)
        await commands.handle("alarm_ack", command("alarm_ack", alarm_id="pump_trip"))
        await asyncio.sleep(0.1)
        first = await events(outbox)
    assert sorted((e["id"], e["state"]) for e in first) == [
        ("no_flow", "active"), ("pump_trip", "acknowledged"), ("pump_trip", "active")]
    async with service(tmp_path) as (bus, alarms, outbox, _commands):
        assert alarms.engine.record("pump_trip").state.value == "acknowledged"
        await publish(bus, pump_fault=True, secondary_flow=50.0)  # the flow came back during the outage
        after = (await events(outbox))[len(first):]
    assert [(e["id"], e["state"]) for e in after] == [("no_flow", "returned")]
    stored = {record.id: record.state.value for record in AlarmStore(tmp_path / "alarms.sqlite").load()}
    # Every configured alarm has its row (so one removed while the gateway is stopped is found).
    assert stored == {"pump_trip": "acknowledged", "no_flow": "returned", "alarm_flood": "normal"}
