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
from gateway.mqtt.report import ReportFilter, TagPolicy
from gateway.mqtt.settings import MqttSettings, OutboxSettings
from gateway.samples import DeviceStatus, Sample, SampleBatch
from tests.mqtt.conftest import until

TAGS = [f"t{i}" for i in range(10)]


def settings(**overrides: object) -> MqttSettings:
    return MqttSettings.model_validate({"host": "127.0.0.1", "batch_max_age_s": 0.2, "batch_max_samples": 25,
                                        **overrides})


async def stored_messages(outbox: AsyncOutbox) -> list[dict[str, object]]:
    return [json.loads(entry.payload) for entry in await outbox.pending(0, 10_000)]


async def test_samples_are_batched_by_age_and_size_and_a_clean_stop_stores_the_rest(tmp_path: Path) -> None:
    bus, outbox = Bus(), AsyncOutbox(tmp_path / "outbox.sqlite", OutboxSettings())
    await outbox.open()
    report = ReportFilter({tag: TagPolicy(deadband=0.0) for tag in TAGS}, integrity_interval_s=3600)
    batcher = Batcher(bus, outbox, TelemetryEncoder({}), report, settings(batch_max_age_s=30))
    task = asyncio.create_task(batcher.run())
    now = time.time()
    try:
        for poll in range(8):  # 80 samples, every one a change
            await bus.publish(SampleBatch("d", "g", tuple(Sample(tag, poll, now + poll) for tag in TAGS)))
        await until(lambda: batcher.samples_out >= 75, 5, "full batches stored")
        await asyncio.sleep(0.2)
        assert batcher.samples_out == 75, "three full messages of 25; the last 5 wait for their batch age"
        await bus.publish(SampleBatch("d", "g", tuple(Sample(tag, 7, now + 9) for tag in TAGS)))  # unchanged
        await bus.publish(SampleBatch("d", "g", (Sample("t0", 99, now + 10),)))
        batcher.stop()
        await asyncio.wait_for(task, 5)
    finally:
        task.cancel()
    messages = await stored_messages(outbox)
    assert [m["seq"] for m in messages] == [1, 2, 3, 4]
    assert [len(m["s"]) for m in messages] == [25, 25, 25, 6]  # type: ignore[arg-type]
    sent = [(row[0], row[1]) for m in messages for row in m["s"]]  # type: ignore[attr-defined]
    assert sent == [(tag, poll) for poll in range(8) for tag in TAGS] + [("t0", 99)]
    assert (batcher.samples_in, batcher.samples_out, batcher.samples_lost) == (91, 81, 0)
    await outbox.close()


async def test_a_batch_is_stored_within_its_age_even_when_nothing_else_arrives(tmp_path: Path) -> None:
    bus, outbox = Bus(), AsyncOutbox(tmp_path / "outbox.sqlite", OutboxSettings())
    await outbox.open()
    batcher = Batcher(bus, outbox, TelemetryEncoder({}), ReportFilter({}, 3600), settings(batch_max_age_s=0.3))
    task = asyncio.create_task(batcher.run())
    try:
        loop = asyncio.get_running_loop()
        await bus.publish(SampleBatch("d", "g", (Sample("t0", 1.0, time.time()),)))
        published = loop.time()
        await until(lambda: outbox.last_seq == 1, 2, "the lone sample stored")
        assert 0.25 <= loop.time() - published < 0.6
    finally:
        batcher.stop()
        await asyncio.wait_for(task, 5)
        await outbox.close()


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
