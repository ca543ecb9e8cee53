"""Poll one Modbus device: its groups at their own intervals, with an honest quality on every value.

``DevicePoller`` is the Modbus driver's ``gateway.acquisition.device.Device``.

One ``DevicePoller`` task runs per device, so a device that times out or refuses connections only
ever delays itself. Within a device, groups are scheduled on absolute deadlines
(``start + k * interval``) so the interval does not drift with request time, and a poll that
overruns skips the missed ticks instead of bursting to catch up.

When a device stops answering, every one of its tags is published BAD at once (within one
interval plus the timeout), a ``DeviceStatus(online=False)`` goes on the bus for the alarm
engine, and reconnection is retried with exponential backoff and jitter, so a fleet of stations
does not reconnect in lock-step after a network blip.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from drivers.base import Quality, Reason
from drivers.modbus.codec import BlockDecoder, Decoded, Fault, encode_write
from drivers.modbus.config import ModbusDeviceBase, TagConfig
from drivers.modbus.link import BadReply, ExceptionReply, LinkDown, LinkError, LinkTimeout, ModbusLink
from drivers.modbus.planner import ReadBlock, plan_reads, split_block
from drivers.modbus.points import Function, Point
from drivers.modbus.tagmap import to_point
from gateway.acquisition.device import PreparedWrite, Unrepresentable
from gateway.acquisition.models import PollGroup
from gateway.acquisition.stats import DeviceStats
from gateway.bus import Bus
from gateway.config_base import Backoff
from gateway.logs import kv
from gateway.samples import DeviceStatus, Sample, SampleBatch

log = logging.getLogger(__name__)

ILLEGAL_DATA_ADDRESS = 2


@dataclass
class _Group:
    name: str
    interval_s: float
    blocks: list[ReadBlock]
    next_deadline: float = 0.0
    # One decoder per block, same order: looking one up by block would hash the whole block
    # (every point in it) on every read, a measurable share of a poll's CPU.
    decoders: list[BlockDecoder] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.decoders = [BlockDecoder(block) for block in self.blocks]

    def replace(self, block: ReadBlock, parts: list[ReadBlock]) -> list[BlockDecoder]:
        """Put ``parts`` where ``block`` was in the plan (after a split); returns their decoders."""
        index = self.blocks.index(block)
        decoders = [BlockDecoder(part) for part in parts]
        self.blocks[index : index + 1] = parts
        self.decoders[index : index + 1] = decoders
        return decoders


class DevicePoller:
    """Owns one device's schedule, plan and connection state; publishes its samples on the bus."""

    def __init__(
        self,
        name: str,
        device: ModbusDeviceBase,
        groups: Mapping[str, PollGroup],
        link: ModbusLink,
        bus: Bus,
        *,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.unit = device.unit_id
        self.link = link
        self.bus = bus
        self.backoff: Backoff = device.backoff
        self._timeout_s, self._retries = device.timeout_s, device.retries
        self.online: bool | None = None  # None until the first connection attempt tells
        self.stats = DeviceStats()
        self.progressed: float | None = None  # event-loop time of the run loop's last step (the watchdog)
        self._bad_replies: set[tuple[str, int, Function]] = set()  # blocks whose last reply was bad
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self.tags: dict[str, TagConfig] = dict(device.tags)
        self.points: dict[str, Point] = {tag: to_point(tag, cfg, device) for tag, cfg in device.tags.items()}
        self._groups = [
            _Group(group, groups[group].interval_s, plan_reads(
                (self.points[t] for t, cfg in device.tags.items() if cfg.group == group),
                max_registers=device.max_registers, max_bits=device.max_bits, max_gap=device.max_gap,
            ))
            for group in sorted({cfg.group for cfg in device.tags.values()})
        ]

    def patience_s(self) -> float:
        """The longest the run loop may legitimately go without a step: the slowest group's
        interval, then a poll of its most requests each answered just before the time-out, or a
        connection attempt and the longest backoff. Past that, the poller is stuck (the watchdog)."""
        budget = self._timeout_s * (self._retries + 1)
        slowest_poll = max((g.interval_s + len(g.blocks) * budget for g in self._groups), default=0.0)
        longest_backoff = self.backoff.max_s * (1 + self.backoff.jitter)
        return slowest_poll + budget + longest_backoff

    def stalled(self, now: float) -> bool:
        """Whether the run loop has made no step within ``patience_s`` (event-loop time ``now``)."""
        return self.progressed is not None and now - self.progressed > self.patience_s()

    def planned_requests(self) -> dict[str, int]:
        """Requests one poll of each group costs with the current plan."""
        return {group.name: len(group.blocks) for group in self._groups}

    async def run(self) -> None:
        """Poll forever (until cancelled): connect, poll on schedule, back off when lost."""
        failures = 0
        loop = asyncio.get_running_loop()
        try:
            while True:
                self.progressed = loop.time()
                if not self.link.connected:
                    try:
                        await self.link.connect()
                    except LinkError as exc:
                        self.stats.record_error(Reason.CONNECTION_LOST)
                        await self._mark_lost(Reason.CONNECTION_LOST, str(exc))
                        failures += 1
                        await asyncio.sleep(self._backoff_delay(failures))
                        continue
                try:
                    answered = await self._poll_until_lost()
                except Exception:  # noqa: BLE001 - a poller must outlive any one bad reply
                    # A bug or an unforeseen reply must cost this device one backoff, never the
                    # task: a silently dead poller would leave its last values looking current.
                    log.exception("unexpected error while polling; reconnecting", extra=kv(device=self.name))
                    self.link.close()
                    await self._mark_lost(Reason.CONNECTION_LOST, "internal error, see log")
                    answered = False
                failures = 1 if answered else failures + 1
                await asyncio.sleep(self._backoff_delay(failures))
        finally:
            self.link.close()

    async def _poll_until_lost(self) -> bool:
        """Run the group schedule until a request shows the device is gone.

        Returns whether the device answered at least once, so a device that accepts connections
        but never answers keeps backing off further instead of being retried at the first step.
        """
        answered = False
        loop = asyncio.get_running_loop()
        now = loop.time()
        for group in self._groups:
            group.next_deadline = now
        while True:
            group = min(self._groups, key=lambda g: g.next_deadline)
            delay = group.next_deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            started = loop.time()
            self.stats.record_lateness(started - group.next_deadline)
            try:
                batch = await self.poll_group(group)
            except (LinkTimeout, LinkDown) as exc:
                reason = Reason.TIMEOUT if isinstance(exc, LinkTimeout) else Reason.CONNECTION_LOST
                self.stats.failures += 1
                self.stats.record_error(reason)
                self.link.close()
                await self._mark_lost(reason, str(exc))
                return answered
            answered = True
            self.progressed = loop.time()
            # Online means answering, not merely accepting a TCP connection.
            await self._mark_online()
            await self.bus.publish(batch)
            # Next tick on the absolute grid; skip ticks the poll overran rather than burst.
            missed = max(0, int((loop.time() - group.next_deadline) // group.interval_s))
            group.next_deadline += group.interval_s * (missed + 1) if missed else group.interval_s

    async def poll_group(self, group: _Group) -> SampleBatch:
        """Read every block of ``group``; per-block exceptions degrade only the affected points."""
        self.stats.polls += 1
        samples: list[Sample] = []
        for block, decoder in list(zip(group.blocks, group.decoders, strict=True)):
            samples.extend(await self._read_block(group, block, decoder))
        self.stats.values += len(samples)
        return SampleBatch(self.name, group.name, tuple(samples))

    async def _read_block(self, group: _Group, block: ReadBlock, decoder: BlockDecoder) -> list[Sample]:
        self.stats.requests += 1
        started = time.perf_counter()
        try:
            raw = await self.link.read(self.unit, block.function, block.start, block.count)
        except ExceptionReply as exc:
            self.stats.record_rtt(time.perf_counter() - started)
            if exc.code == ILLEGAL_DATA_ADDRESS and len(block.points) > 1:
                return await self._isolate(group, block)
            self.stats.record_error(Reason.EXCEPTION)
            return self._bad(block.points, Reason.EXCEPTION, str(exc))
        except BadReply as exc:  # this block is bad, the link was reset; the other blocks go on
            self.stats.failures += 1
            self.stats.record_error(Reason.BAD_REPLY)
            self._note_bad_reply(group, block, exc)
            return self._bad(block.points, Reason.BAD_REPLY, str(exc))
        self._bad_replies.discard((group.name, block.start, block.function))
        self.stats.record_rtt(time.perf_counter() - started)
        timestamp = self._wall_clock()
        try:
            decoded = decoder.decode(raw)
        except ValueError as exc:  # a reply of the wrong length: this block is bad, the rest goes on
            self.stats.record_error(Reason.DECODE_ERROR)
            return self._bad(block.points, Reason.DECODE_ERROR, str(exc))
        return [self._sample(key, result, timestamp) for key, result in decoded.items()]

    def _note_bad_reply(self, group: _Group, block: ReadBlock, exc: BadReply) -> None:
        """Log a block whose replies cannot be believed once, when it starts, not every poll."""
        key = (group.name, block.start, block.function)
        if key in self._bad_replies:
            return
        self._bad_replies.add(key)
        log.warning("device sent a reply that does not answer the request; the block is bad and the "
                    "connection reset", extra=kv(device=self.name, group=group.name, function=block.function.name.lower(),
                                                start=block.start, count=block.count, reason=str(exc)))

    async def read_tag(self, tag: str) -> Sample:
        """Read one tag on its own (write read-back, current value before a write)."""
        point = self.points[tag]
        block = ReadBlock(point.function, point.address, point.count, (point,))
        self.stats.requests += 1
        raw = await self.link.read(self.unit, point.function, point.address, point.count)
        return self._sample(tag, BlockDecoder(block).decode(raw)[tag], self._wall_clock())

    def prepare_write(self, tag: str, value: float) -> PreparedWrite:
        """Encode a checked value into the tag's registers (or coil state)."""
        point = self.points[tag]
        requested: float | bool = bool(value) if point.is_boolean else value
        try:
            return PreparedWrite(tag, requested, encode_write(point, requested))
        except ValueError as exc:
            raise Unrepresentable(f"not representable in the register: {exc}") from None

    async def write(self, prepared: PreparedWrite) -> None:
        """Put a prepared value on the wire (only the write queue calls this)."""
        point = self.points[prepared.tag]
        self.stats.requests += 1
        if isinstance(prepared.wire, bool):
            await self.link.write_coil(self.unit, point.address, prepared.wire)
        else:
            assert isinstance(prepared.wire, list)  # made by prepare_write
            await self.link.write_registers(self.unit, point.address, prepared.wire)

    async def _isolate(self, group: _Group, block: ReadBlock) -> list[Sample]:
        """Split a refused block, remember the split in the plan, and read the parts now."""
        parts = split_block(block)
        if len(parts) == 1:
            return self._bad(block.points, Reason.EXCEPTION, str(ExceptionReply(ILLEGAL_DATA_ADDRESS)))
        decoders = group.replace(block, parts)
        log.warning("device refused a read block; splitting it to isolate the bad addresses", extra=kv(
            device=self.name, group=group.name, function=block.function.name.lower(),
            start=block.start, count=block.count, parts=len(parts)))
        samples: list[Sample] = []
        for part, decoder in zip(parts, decoders, strict=True):
            samples.extend(await self._read_block(group, part, decoder))
        return samples

    def _sample(self, tag: str, result: Decoded, timestamp: float) -> Sample:
        if result.fault is not None:
            reason = Reason.NO_VALUE if result.fault is Fault.NO_VALUE else Reason.DECODE_ERROR
            return Sample(tag, None, timestamp, Quality.BAD, reason.value)
        value = result.value
        limits = self.tags[tag].range
        if limits is not None and not isinstance(value, bool) and not limits[0] <= value <= limits[1]:
            # Keep the implausible reading: 850 C tells the technician "open circuit".
            return Sample(tag, value, timestamp, Quality.BAD, Reason.OUT_OF_RANGE.value)
        return Sample(tag, value, timestamp)

    def _bad(self, points: Iterable[Point], reason: Reason, detail: str = "") -> list[Sample]:
        now = self._wall_clock()
        text = f"{reason.value}: {detail}" if detail else reason.value
        return [Sample(point.key, None, now, Quality.BAD, text) for point in points]

    async def _mark_lost(self, reason: Reason, detail: str) -> None:
        """Publish every tag BAD and the device offline, once per loss rather than once per retry."""
        if self.online is False:
            return
        self.online = False
        for group in self._groups:
            points = [p for block in group.blocks for p in block.points]
            await self.bus.publish(SampleBatch(self.name, group.name, tuple(self._bad(points, reason, detail))))
        log.warning("device lost", extra=kv(device=self.name, link=self.link.describe(), reason=reason.value, detail=detail))
        await self.bus.publish(DeviceStatus(self.name, False, self._wall_clock(), f"{reason.value}: {detail}"))

    async def _mark_online(self) -> None:
        if self.online is True:
            return
        self.online = True
        log.info("device online", extra=kv(device=self.name, link=self.link.describe()))
        await self.bus.publish(DeviceStatus(self.name, True, self._wall_clock()))

    def _backoff_delay(self, failures: int) -> float:
        """Exponential backoff with multiplicative jitter, capped at ``max_s``."""
        base = min(self.backoff.max_s, self.backoff.initial_s * 2 ** max(0, failures - 1))
        spread = self.backoff.jitter
        return base * self._rng.uniform(1 - spread, 1 + spread)
