"""Bus -> report-by-exception filter -> telemetry messages -> outbox.

The batcher is the outbox's bus consumer, subscribed lossless: while it is busy, the poller waits
rather than the telemetry being dropped. Samples that pass the filter are written as ONE message
in ONE outbox transaction, which gives it its sequence number, as soon as nothing else is waiting
on the bus: a completed poll goes out at once, so a value reaches the broker within about its
poll's own duration, with no batch age to tune. The batching comes from the load itself (a group
commit): the polls that complete while a message is being stored, or in the same loop turn (many
devices polled on one schedule), wait on the bus meanwhile and share the next message, up to
``batch_max_samples``. ``batch_max_age_s`` only bounds the wait of a sample under a load that
never pauses. Measured with ``bench/latency.py``: the CPU per value is the same as with a fixed
one-second batch, the latency is the poll's instead of a second.

What a crash can lose is what has not reached the outbox yet: at most one message of samples
plus the bus queue. Those never got a sequence number, so the receiver sees a pause in time, as
during the restart itself, never a gap in the sequence. A clean stop flushes them.

A reload of the station file reaches the batcher as a ``StationReloaded`` item on the bus: the
samples before it are stored with the old tags' resolutions, those after it are filtered and
encoded with the new ones (``reconfigure``); the outbox and its sequence are untouched.

Other bus items become durable messages too, each stored at once as its own message on its own
topic (the controller's state on ``control``): the batcher is told which item types and how to
encode them (``Durable``), so it never learns what a controller is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.bus import Bus
from gateway.config import GatewayConfig
from gateway.logs import kv
from gateway.mqtt.outbox import AsyncOutbox
from gateway.mqtt.payloads import TelemetryEncoder
from gateway.mqtt.report import ReportFilter
from gateway.mqtt.settings import MqttSettings
from gateway.samples import Sample, SampleBatch, StationReloaded

log = logging.getLogger(__name__)

BUS_QUEUE = 1024  # bus items; lossless, so a full queue makes the poller wait


def report_filter(config: GatewayConfig, settings: MqttSettings) -> ReportFilter:
    """The filter for a station: each tag's deadband, and how long its samples may normally pause
    (``GatewayConfig.max_silence_s``, the staleness limit)."""
    return ReportFilter(config.tag_traits(), settings.integrity_interval_s)


@dataclass(frozen=True, slots=True)
class Durable:
    """How one kind of bus item is stored: its topic below the station, and its payload given the
    sequence number it gets (the receiver checks one sequence across all topics)."""

    topic: str
    encode: Callable[[Any, int], bytes]


class Batcher:
    """Turns bus traffic into telemetry messages in the outbox. ``run()`` until ``stop()``."""

    def __init__(
        self,
        bus: Bus,
        outbox: AsyncOutbox,
        encoder: TelemetryEncoder,
        report: ReportFilter,
        settings: MqttSettings,
        *,
        durable: Mapping[type, Durable] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._bus = bus
        self._durable = dict(durable or {})
        self._subscription = bus.subscribe("outbox", maxsize=BUS_QUEUE, lossless=True)
        self._outbox = outbox
        self._encoder = encoder
        self._report = report
        self._max_age_s = settings.batch_max_age_s
        self._max_samples = settings.batch_max_samples
        # A sweep looks at every tag: often enough to keep the integrity promise within 10 %,
        # never more than once a second (it would cost more than the telemetry on a big station).
        self._integrity_check_s = min(max(settings.integrity_interval_s / 10, 1.0), 10.0)
        self._clock = clock
        self._batch: list[Sample] = []
        self._stopping = False
        self.samples_in = 0  # offered to the filter
        self.samples_out = 0  # stored in the outbox
        self.samples_lost = 0  # refused by a failing disk
        self.durable_lost = 0  # other durable messages refused by a failing disk

    async def run(self) -> None:
        """Consume the bus until ``stop()``; then store what is left and return."""
        try:
            await self._consume()
        finally:
            # A lossless subscription nobody drains would stall the producers: leave the bus.
            self._bus.unsubscribe(self._subscription)

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._subscription.queue
        flush_at = next_sweep = loop.time()
        while not self._stopping or not queue.empty():
            wake = min(next_sweep, flush_at if self._batch else next_sweep)
            try:
                async with asyncio.timeout(max(0.0, wake - loop.time())):
                    item = await queue.get()
            except TimeoutError:
                item = None
            durable = self._durable.get(type(item))
            if durable is not None:
                await self._store_durable(durable, item)
            elif isinstance(item, StationReloaded):
                await self._reconfigure(item.config)
            if isinstance(item, SampleBatch):
                if not self._batch:
                    flush_at = loop.time() + self._max_age_s
                self._offer(item.samples)
                # Take whatever else is waiting without a round trip through the loop.
                while not queue.empty() and len(self._batch) < self._max_samples:
                    more = queue.get_nowait()
                    if isinstance(more, SampleBatch):
                        self._offer(more.samples)
                    elif (durable := self._durable.get(type(more))) is not None:
                        await self._store_durable(durable, more)
                    elif isinstance(more, StationReloaded):
                        await self._reconfigure(more.config)
            now = loop.time()
            if now >= next_sweep:
                self._batch.extend(self._report.overdue(self._clock()))
                next_sweep = now + self._integrity_check_s
            while len(self._batch) >= self._max_samples:
                await self._store(self._batch[: self._max_samples])
                del self._batch[: self._max_samples]
            if self._batch and queue.empty():
                await asyncio.sleep(0)  # polls completing in this same loop turn join the message
            if self._batch and (now >= flush_at or self._stopping or queue.empty()):
                await self._store(self._batch)
                self._batch = []
        if self._batch:
            await self._store(self._batch)
            self._batch = []

    def stop(self) -> None:
        """Finish: drain the bus queue, store the last batch, return from ``run()``."""
        self._stopping = True
        # Wake run() if it waits on an empty queue; run() ignores items it was not told about.
        with contextlib.suppress(asyncio.QueueFull):
            self._subscription.queue.put_nowait(None)  # type: ignore[arg-type]

    async def _reconfigure(self, config: GatewayConfig) -> None:
        """Store what was filtered under the old tags, then take the new tags' resolutions and deadbands."""
        if self._batch:
            await self._store(self._batch)
            self._batch = []
        self._encoder = TelemetryEncoder.for_config(config)
        self._report.retune(config.tag_traits())

    def _offer(self, samples: tuple[Sample, ...]) -> None:
        self.samples_in += len(samples)
        offer = self._report.offer
        self._batch.extend(sample for sample in samples if offer(sample))

    async def _store(self, samples: list[Sample]) -> None:
        batch = list(samples)
        try:
            await self._outbox.append(lambda seq: self._encoder.encode(seq, batch), len(batch))
        except (sqlite3.Error, OSError) as exc:
            # Keep consuming: a failing disk must not stall polling and control behind the bus.
            self.samples_lost += len(batch)
            log.error("outbox write failed: telemetry batch lost", extra=kv(
                samples=len(batch), lost_total=self.samples_lost, error=str(exc)))
            return
        self.samples_out += len(batch)

    async def _store_durable(self, durable: Durable, item: object) -> None:
        try:
            await self._outbox.append(lambda seq: durable.encode(item, seq), 0, durable.topic)
        except (sqlite3.Error, OSError) as exc:
            self.durable_lost += 1
            log.error("outbox write failed: message lost", extra=kv(
                topic=durable.topic, lost_total=self.durable_lost, error=str(exc)))
