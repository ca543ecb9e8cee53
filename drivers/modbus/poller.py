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

Presence is what the device's answers show, never what the transport allows: a TCP connection
or an open serial port says nothing (a Modbus TCP gateway accepts connections for a meter that
is not behind it, an RS-485 adapter opens without a meter on the line). A device is online after
a poll that returned data; one that has only ever answered exceptions or replies that cannot be
believed is declared lost, with that reason, once each of its groups has been polled. While it is
online, values that are all bad for longer than the slowest group's interval are logged once
(a warning with the reason), and their recovery once (info): the log says what the samples say.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from drivers.base import Quality, Reason
from drivers.modbus.codec import BlockDecoder, Decoded, Fault, MaskWrite, encode_write
from drivers.modbus.config import ModbusDeviceBase, TagConfig
from drivers.modbus.errors import ILLEGAL_DATA_ADDRESS
from drivers.modbus.link import BadReply, ExceptionReply, LinkDown, LinkError, LinkTimeout, ModbusLink
from drivers.modbus.planner import ReadBlock, plan_reads, split_block
from drivers.modbus.points import Function, Point
from drivers.modbus.tagmap import point_labels, to_point
from gateway.acquisition.device import PreparedWrite, Unrepresentable
from gateway.acquisition.models import PollGroup
from gateway.acquisition.stats import DeviceStats
from gateway.bus import Bus
from gateway.config_base import Backoff
from gateway.logs import kv
from gateway.samples import DeviceStatus, Sample, SampleBatch

log = logging.getLogger(__name__)
JITTER = random.Random()
"""The backoff jitter of every poller (a poller given its own ``rng`` uses that)."""


@dataclass
class _Group:
    name: str
    interval_s: float
    blocks: list[ReadBlock]
    # One decoder per block, same order: looking one up by block would hash the whole block
    # (every point in it) on every read, a measurable share of a poll's CPU. The decoders name
    # the values with the device's tag names (the points may be shared with other devices).
    decoders: list[BlockDecoder]
    next_deadline: float = 0.0
    answered: bool = False  # whether its last poll got data from the device (not only refusals)
    bad_since: float | None = None  # loop time of the first of its polls, in a row, with no good value
    reason: str = ""  # the commonest reason among its last poll's values when none was good

    def replace(self, block: ReadBlock, parts: list[ReadBlock]) -> list[BlockDecoder]:
        """Put ``parts`` where ``block`` was in the plan (after a split); returns their decoders."""
        index = self.blocks.index(block)
        tag_of = dict(zip(block.points, self.decoders[index].keys, strict=True))
        decoders = [BlockDecoder(part, [tag_of[point] for point in part.points]) for part in parts]
        self.blocks[index : index + 1] = parts
        self.decoders[index : index + 1] = decoders
        return decoders

    def tags(self) -> list[str]:
        """Every tag the group reads, in plan order."""
        return [tag for decoder in self.decoders for tag in decoder.keys]


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
        shared_points: dict[Point, Point] | None = None,
    ) -> None:
        """``shared_points``: points made for other devices of the station, to reuse where equal
        (a thousand devices of one kind then hold one point per tag of the kind: 11 MB less)."""
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
        self._data_replies = 0  # replies that carried data, so a poll can tell data from refusals
        self._all_bad_logged = False  # the "every value bad" warning is out and recovery not yet logged
        self._wall_clock = wall_clock
        self._rng = rng or JITTER  # jitter needs no stream of its own: a Random is 2.5 kB per device
        self.raw_observer: Callable[[ReadBlock, list[int] | list[bool]], None] | None = None
        """Shown every block's raw answer before it is decoded (``heatgw read``); None in service."""
        self.tags: Mapping[str, TagConfig] = device.tags  # the frozen configuration's own, not a copy per device
        self._device = device
        labels = point_labels(name, device.tags)
        points = {tag: to_point(labels[tag], cfg, device, shared_points) for tag, cfg in device.tags.items()}
        tag_of = {point: tag for tag, point in points.items()}  # one-to-one: labels are distinct
        self._groups: list[_Group] = []
        for group in sorted({cfg.group for cfg in device.tags.values()}):
            blocks = plan_reads((points[t] for t, cfg in device.tags.items() if cfg.group == group),
                                max_registers=device.max_registers, max_bits=device.max_bits, max_gap=device.max_gap)
            decoders = [BlockDecoder(block, [tag_of[point] for point in block.points]) for block in blocks]
            self._groups.append(_Group(group, groups[group].interval_s, blocks, decoders))

    def point(self, tag: str) -> Point:
        """Where and how ``tag`` is held (for a write, a read-back, ``heatgw read``). Made when
        asked rather than kept per tag: the plan holds the points it reads, and a table of them
        by tag name would cost a concentrator 3 MB for the rare write."""
        return to_point(point_labels(self.name, self.tags)[tag], self.tags[tag], self._device)

    def patience_s(self) -> float:
        """The longest the run loop may legitimately go without a step: the slowest group's
        interval, then a poll of its most requests each answered just before the time-out, or a
        connection attempt and the longest backoff. Past that, the poller is stuck (the watchdog)."""
        budget = self._timeout_s * (self._retries + 1)
        slowest_poll = max((g.interval_s + len(g.blocks) * budget for g in self._groups), default=0.0)
        return slowest_poll + budget + self.backoff.longest_s()

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
                        reason = Reason.TIMEOUT if isinstance(exc, LinkTimeout) else Reason.CONNECTION_LOST
                        self.stats.record_error(reason)
                        await self._mark_lost(reason, str(exc))
                        failures += 1
                        await asyncio.sleep(self.backoff.delay(failures, self._rng))
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
                await asyncio.sleep(self.backoff.delay(failures, self._rng))
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
            group.answered, group.bad_since, group.reason = False, None, ""
        polled: set[str] = set()  # groups polled on this connection
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
            polled.add(group.name)
            await self.bus.publish(batch)
            await self._judge_presence(group, batch, started, everything_polled=len(polled) == len(self._groups))
            # Next tick on the absolute grid; skip ticks the poll overran rather than burst.
            missed = max(0, int((loop.time() - group.next_deadline) // group.interval_s))
            group.next_deadline += group.interval_s * (missed + 1) if missed else group.interval_s

    async def poll_group(self, group: _Group) -> SampleBatch:
        """Read every block of ``group``; per-block exceptions degrade only the affected points."""
        self.stats.polls += 1
        samples: list[Sample] = []
        data_replies = self._data_replies
        for block, decoder in list(zip(group.blocks, group.decoders, strict=True)):
            samples.extend(await self._read_block(group, block, decoder))
        self.stats.values += len(samples)
        group.answered = self._data_replies > data_replies
        return SampleBatch(self.name, group.name, tuple(samples))

    async def poll_once(self) -> list[SampleBatch]:
        """Every group once, in order (``heatgw read``); a lost device raises as in ``poll_group``."""
        return [await self.poll_group(group) for group in self._groups]

    async def _judge_presence(self, group: _Group, batch: SampleBatch, started: float, *,
                              everything_polled: bool) -> None:
        """Online after data; lost when every group has only been refused; all-bad spells logged once.

        ``started`` is the loop time the poll of ``group`` began; ``everything_polled`` says
        whether each group has been polled since the connection was made.
        """
        good = any(sample.quality is Quality.GOOD for sample in batch.samples)
        if good:
            group.bad_since, group.reason = None, ""
        else:
            group.bad_since = started if group.bad_since is None else group.bad_since
            group.reason = _commonest(s.reason for s in batch.samples)
        if group.answered:
            await self._mark_online()
        if self.online is not True:
            if everything_polled and not any(g.answered for g in self._groups):
                # Answers, but only refusals: the device is not there (a gateway's exception 11),
                # or not the device the configuration describes.
                await self._mark_lost_while_answering(group.reason)
            return
        if good:
            if self._all_bad_logged:
                self._all_bad_logged = False
                log.info("device values recovered", extra=kv(device=self.name, group=group.name))
            return
        bad_since = [g.bad_since for g in self._groups]
        if self._all_bad_logged or None in bad_since:
            return
        bad_for = asyncio.get_running_loop().time() - max(t for t in bad_since if t is not None)
        if bad_for > max(g.interval_s for g in self._groups):
            self._all_bad_logged = True
            log.warning("every value of the device is bad", extra=kv(
                device=self.name, link=self.link.describe(), bad_for_s=round(bad_for, 1),
                reason=_commonest(g.reason for g in self._groups)))

    async def _read_block(self, group: _Group, block: ReadBlock, decoder: BlockDecoder) -> list[Sample]:
        self.stats.requests += 1
        started = time.perf_counter()
        try:
            raw = await self.link.read(self.unit, block.function, block.start, block.count)
        except ExceptionReply as exc:
            self.stats.record_rtt(time.perf_counter() - started)
            if exc.code == ILLEGAL_DATA_ADDRESS and len(block.points) > 1:
                return await self._isolate(group, block, decoder)
            self.stats.record_error(Reason.EXCEPTION)
            return self._bad(decoder.keys, Reason.EXCEPTION, str(exc))
        except BadReply as exc:  # this block is bad, the link was reset; the other blocks go on
            self.stats.failures += 1
            self.stats.record_error(Reason.BAD_REPLY)
            self._note_bad_reply(group, block, exc)
            return self._bad(decoder.keys, Reason.BAD_REPLY, str(exc))
        self._bad_replies.discard((group.name, block.start, block.function))
        self.stats.record_rtt(time.perf_counter() - started)
        if self.raw_observer is not None:
            self.raw_observer(block, raw)
        timestamp = self._wall_clock()
        try:
            decoded = decoder.decode(raw)
        except ValueError as exc:  # a reply of the wrong length: this block is bad, the rest goes on
            self.stats.record_error(Reason.DECODE_ERROR)
            return self._bad(decoder.keys, Reason.DECODE_ERROR, str(exc))
        self._data_replies += 1
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
        point = self.point(tag)
        block = ReadBlock(point.function, point.address, point.count, (point,))
        self.stats.requests += 1
        raw = await self.link.read(self.unit, point.function, point.address, point.count)
        return self._sample(tag, BlockDecoder(block, [tag]).decode(raw)[tag], self._wall_clock())

    def prepare_write(self, tag: str, value: float) -> PreparedWrite:
        """Encode a checked value into the tag's registers, register bit or coil state."""
        point = self.point(tag)
        requested: float | bool = bool(value) if point.is_boolean else value
        try:
            return PreparedWrite(tag, requested, encode_write(point, requested))
        except ValueError as exc:
            raise Unrepresentable(f"not representable in the register: {exc}") from None

    async def write(self, prepared: PreparedWrite) -> None:
        """Put a prepared value on the wire (only the write queue calls this)."""
        point = self.point(prepared.tag)
        wire = prepared.wire
        self.stats.requests += 1
        # The table written is the tag's own: a coil write for a register bit would change
        # another object, one nobody declared writable.
        if point.function is Function.COIL and isinstance(wire, bool):
            await self.link.write_coil(self.unit, point.address, wire)
        elif point.function is Function.HOLDING and isinstance(wire, MaskWrite):
            await self.link.write_mask(self.unit, point.address, wire.and_mask, wire.or_mask)
        elif point.function is Function.HOLDING and isinstance(wire, list) and len(wire) == point.count:
            await self.link.write_registers(self.unit, point.address, wire)
        else:  # prepare_write never makes this; refuse rather than guess where it should go
            raise TypeError(f"{prepared.tag}: {type(wire).__name__} cannot be written to a {point.function.name} point")

    async def _isolate(self, group: _Group, block: ReadBlock, decoder: BlockDecoder) -> list[Sample]:
        """Split a refused block, remember the split in the plan, and read the parts now."""
        parts = split_block(block)
        if len(parts) == 1:
            return self._bad(decoder.keys, Reason.EXCEPTION, str(ExceptionReply(ILLEGAL_DATA_ADDRESS)))
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

    def _bad(self, tags: Iterable[str], reason: Reason, detail: str = "") -> list[Sample]:
        now = self._wall_clock()
        text = f"{reason.value}: {detail}" if detail else reason.value
        return [Sample(tag, None, now, Quality.BAD, text) for tag in tags]

    async def _mark_lost(self, reason: Reason, detail: str) -> None:
        """Publish every tag BAD and the device offline, once per loss rather than once per retry."""
        if self.online is False:
            return
        for group in self._groups:
            await self.bus.publish(SampleBatch(self.name, group.name, tuple(self._bad(group.tags(), reason, detail))))
        await self._declare_lost(f"{reason.value}: {detail}")

    async def _mark_lost_while_answering(self, reason: str) -> None:
        """The device is lost though it answers: its values already went out bad with their own
        reasons (one block refused, another a reply that cannot be believed), so only the status
        changes."""
        if self.online is not False:
            await self._declare_lost(reason)

    async def _declare_lost(self, reason: str) -> None:
        self.online = False
        self._all_bad_logged = False  # the loss says it now; "device online" will say the recovery
        log.warning("device lost", extra=kv(device=self.name, link=self.link.describe(), reason=reason))
        await self.bus.publish(DeviceStatus(self.name, False, self._wall_clock(), reason))

    async def _mark_online(self) -> None:
        if self.online is True:
            return
        self.online = True
        log.info("device online", extra=kv(device=self.name, link=self.link.describe()))
        await self.bus.publish(DeviceStatus(self.name, True, self._wall_clock()))


def _commonest(reasons: Iterable[str]) -> str:
    """The reason most values share (one reason for a log line or a status)."""
    counted = Counter(reasons).most_common(1)
    return counted[0][0] if counted else ""
