"""Bus -> filter -> outbox: batching, the clean-stop flush, and a failing disk that must not stall polling."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from gateway.bus import Bus
from gateway.mqtt.batcher import Batcher, Durable
from gateway.mqtt.outbox import AsyncOutbox
from gateway.mqtt.payloads import TelemetryEncoder
from gateway.mqtt.report import ReportFilter
from gateway.tag_traits import TagTraits
from gateway.mqtt.settings import MqttSettings, OutboxSettings
from gateway.samples import DeviceStatus, Sample, SampleBatch
from tests.mqtt.conftest import until

TAGS = [f"t{i}" for i in range(10)]


def settings(**overrides: object) -> MqttSettings:
    return MqttSettings.model_validate({"host": "127.0.0.1", "batch_max_age_s": 0.2, "batch_max_samples": 25,
                                        **overrides})


async def stored_messages(outbox: AsyncOutbox) -> list[dict[str, object]]:
    return [json.loads(entry.payload) for entry in await outbox.pending(0, 10_000)]


async def test_polls_waiting_together_go_out_as_full_messages_in_order_and_the_rest_without_waiting_for_the_age(
        tmp_path: Path) -> None:
    bus, outbox = Bus(), AsyncOutbox(tmp_path / "outbox.sqlite", OutboxSettings())
    await outbox.open()
    report = ReportFilter({tag: TagTraits(deadband=0.0) for tag in TAGS}, integrity_interval_s=3600)
    batcher = Batcher(bus, outbox, TelemetryEncoder({}), report, settings(batch_max_age_s=30))
    task = asyncio.create_task(batcher.run())
    now = time.time()
    try:
        for poll in range(8):  # 80 samples, every one a change, all waiting when the batcher wakes
            await bus.publish(SampleBatch("d", "g", tuple(Sample(tag, poll, now + poll) for tag in TAGS)))
        # Far sooner than the 30 s batch age: nothing else waits, so the last 5 need not either.
        await until(lambda: batcher.samples_out == 80, 5, "every polled sample stored")
        await bus.publish(SampleBatch("d", "g", tuple(Sample(tag, 7, now + 9) for tag in TAGS)))  # unchanged
        await bus.publish(SampleBatch("d", "g", (Sample("t0", 99, now + 10),)))
        await until(lambda: batcher.samples_out == 81, 5, "the next poll's change stored")
        batcher.stop()
        await asyncio.wait_for(task, 5)
    finally:
        task.cancel()
    messages = await stored_messages(outbox)
    assert [m["seq"] for m in messages] == [1, 2, 3, 4, 5]
    assert [len(m["s"]) for m in messages] == [25, 25, 25, 5, 1]  # type: ignore[arg-type]
    sent = [(row[0], row[1]) for m in messages for row in m["s"]]  # type: ignore[attr-defined]
    assert sent == [(tag, poll) for poll in range(8) for tag in TAGS] + [("t0", 99)]
    assert (batcher.samples_in, batcher.samples_out, batcher.samples_lost) == (91, 81, 0)
    await outbox.close()


async def test_a_completed_poll_is_stored_at_once_without_waiting_for_the_batch_age(tmp_path: Path) -> None:
    bus, outbox = Bus(), AsyncOutbox(tmp_path / "outbox.sqlite", OutboxSettings())
    await outbox.open()
    batcher = Batcher(bus, outbox, TelemetryEncoder({}), ReportFilter({}, 3600), settings(batch_max_age_s=60))
    task = asyncio.create_task(batcher.run())
    try:
        await bus.publish(SampleBatch("d", "g", (Sample("t0", 1.0, time.time()),)))
        await until(lambda: outbox.last_seq == 1, 5, "the lone poll stored long before its 60 s batch age")
    finally:
        batcher.stop()
        await asyncio.wait_for(task, 5)
        await outbox.close()


async def test_devices_that_finish_their_polls_together_share_one_message(tmp_path: Path) -> None:
    bus, outbox = Bus(), AsyncOutbox(tmp_path / "outbox.sqlite", OutboxSettings())
    await outbox.open()
    batcher = Batcher(bus, outbox, TelemetryEncoder({}), ReportFilter({}, 3600), settings(batch_max_samples=1000))
    task = asyncio.create_task(batcher.run())
    try:
        await asyncio.sleep(0.05)  # the batcher waits on an empty bus, as between two poll rounds

        async def device(name: str) -> None:
            await bus.publish(SampleBatch(name, "g", tuple(Sample(f"{name}_{tag}", 1.0, time.time()) for tag in TAGS)))

        await asyncio.gather(*(device(f"plc{number}") for number in range(20)))  # one loop turn, like a poll round
        await until(lambda: batcher.samples_out == 200, 5, "every device's samples stored")
        messages = await stored_messages(outbox)
    finally:
        batcher.stop()
        await asyncio.wait_for(task, 5)
        await outbox.close()
    assert [len(m["s"]) for m in messages] == [200], "one message for the round, not one per device"  # type: ignore[arg-type]


async def test_a_failing_outbox_loses_the_batch_but_never_stalls_the_bus(tmp_path: Path) -> None:
    bus, outbox = Bus(), AsyncOutbox(tmp_path / "outbox.sqlite", OutboxSettings())
    await outbox.open()
    batcher = Batcher(bus, outbox, TelemetryEncoder({}), ReportFilter({}, 0.001), settings(batch_max_samples=1))
    task = asyncio.create_task(batcher.run())
    try:
        await outbox._run(outbox.outbox.close)  # the disk is gone: every append now fails
        for i in range(3000):  # far more than the bus queue holds: a stall would hang here
            await asyncio.wait_for(bus.publish(SampleBatch("d", "g", (Sample("t0", float(i), 1000.0 + i),))), 2)
        batcher.stop()
        await asyncio.wait_for(task, 10)
    finally:
        task.cancel()
    assert batcher.samples_lost == batcher.samples_in == 3000


async def test_a_durable_bus_item_is_stored_at_once_on_its_topic_numbered_with_the_telemetry(tmp_path: Path) -> None:
    bus, outbox = Bus(), AsyncOutbox(tmp_path / "outbox.sqlite", OutboxSettings())
    await outbox.open()
    status = Durable("control", lambda item, seq: json.dumps({"seq": seq, "online": item.online}).encode())
    batcher = Batcher(bus, outbox, TelemetryEncoder({}), ReportFilter({}, 3600), settings(batch_max_age_s=0.2),
                      durable={DeviceStatus: status})
    task = asyncio.create_task(batcher.run())
    try:
        await bus.publish(SampleBatch("d", "g", (Sample("t0", 1.0, time.time()),)))
        await until(lambda: outbox.last_seq == 1, 2, "the telemetry stored")
        await bus.publish(DeviceStatus("d", False, time.time(), "timeout"))
        await until(lambda: outbox.last_seq == 2, 1, "the durable item stored without waiting for a batch age")
    finally:
        batcher.stop()
        await asyncio.wait_for(task, 5)
    entries = await outbox.pending(0, 10)
    assert [(e.seq, e.topic) for e in entries] == [(1, "telemetry"), (2, "control")]
    assert json.loads(entries[1].payload) == {"seq": 2, "online": False}
    await outbox.close()
