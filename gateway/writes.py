"""The only way anything in the gateway writes to a field device.

Every write request, whatever its origin (controller, dispatch command, operator CLI), goes
through one queue and the same checks *before* it reaches the wire: the tag must be declared
writable, the value must be a finite number inside the tag's limits, no larger a step than allowed
from the device's current value, not sooner than the tag's minimum interval, and representable in
the device (its register type, its node's type). Then the value is written and read back, and
compared within the tag's resolution. Only the encoding, the wire and the read are the device's. Each request and its outcome is logged
with its origin, refusals included, so "who changed the setpoint at 02:14" has an answer.

A refused or failed write is not retried here: the requester decides with fresh data. This is
what keeps a PLC that was unreachable for an hour from receiving an hour of stale setpoints.

One wait is allowed: a write to a device that a reload is restarting (``serve(restarting=...)``)
waits for the device to be back, as long as its requester waits and ``RESTART_WAIT_S`` at most,
then goes through every check as usual. Refusing it as an unknown tag would tell the dispatcher
something false, and the restart takes a connection and a first poll: a second or two.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from drivers.base import DeviceBadReply, DeviceError, Quality, Reason
from gateway.acquisition.device import Device, PreparedWrite, Unrepresentable
from gateway.logs import kv
from gateway.samples import Value

log = logging.getLogger(__name__)

RESTART_WAIT_S = 10.0
"""The longest a write waits for a device a reload restarts (its requester may give up sooner).
Writes are serial, so this also bounds how long a reload can hold the writes queued behind it."""
RESTART_POLL_S = 0.05
RESTARTING = "device restarting after a reload, try again"


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What happened to one write request; ``reason`` says why it was refused or failed."""

    tag: str
    requested: Value
    origin: str
    accepted: bool
    reason: str = ""
    readback: Value = None


class WriteRefused(Exception):
    """A request failed a check before reaching the wire."""


@dataclass(frozen=True, slots=True)
class _Request:
    tag: str
    value: Value
    origin: str
    done: asyncio.Future[WriteResult]


class WriteQueue:
    """Serialises writes, checks them against the configuration, writes, and reads back."""

    def __init__(
        self,
        devices: Mapping[str, Device],
        *,
        maxsize: int = 64,
        clock: Callable[[], float] = time.monotonic,
        restart_wait_s: float = RESTART_WAIT_S,
    ) -> None:
        self._devices: Mapping[str, Device] = {}
        self._writable: dict[str, Device] = {}
        self._restarting: frozenset[str] = frozenset()
        self._last_write: dict[str, float] = {}
        self.serve(devices)
        self._queue: asyncio.Queue[_Request] = asyncio.Queue(maxsize)
        self._clock = clock
        self._restart_wait_s = restart_wait_s

    def serve(self, devices: Mapping[str, Device], restarting: Collection[str] = ()) -> None:
        """Write to ``devices`` from now on (a reload): a tag none of them declares is refused at
        once, also one whose request is already queued, unless it is one of ``restarting`` (the
        tags of devices the reload restarts): a write to one of those waits for a later ``serve``
        that brings its device back. The minimum interval of a tag that stays keeps counting from
        its last write."""
        # Only the writable tags are indexed: a concentrator's hundred thousand read-only tags would
        # cost a 4 MB map for the refusal message alone, which a scan of the devices gives as well.
        self._devices = devices
        self._writable = {tag: device for device in devices.values()
                          for tag, cfg in device.tags.items() if cfg.writable is not None}
        self._restarting = frozenset(restarting) - self._writable.keys()
        self._last_write = {tag: at for tag, at in self._last_write.items()
                            if tag in self._writable or tag in self._restarting}

    async def write(self, tag: str, value: Value, origin: str) -> WriteResult:
        """Queue a write and wait for its outcome."""
        done: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(tag, value, origin, done))
        return await done

    async def run(self) -> None:
        """Process requests one at a time, forever (until cancelled).

        Nothing a device sends or a driver raises may end this task: the controller and dispatch
        would go on asking and nothing would ever be written again. Every request is answered,
        also when the task is cancelled with requests still waiting.
        """
        request: _Request | None = None
        try:
            while True:
                request = await self._queue.get()
                if request.done.done():  # its requester gave up waiting (a bounded await timed out)
                    log.warning("write dropped: its requester stopped waiting", extra=kv(
                        tag=request.tag, value=request.value, origin=request.origin))
                    continue
                try:
                    result = await self._execute(request)
                except Exception as exc:  # noqa: BLE001 - a driver's surprise fails one write, not the queue
                    log.exception("write failed on an unexpected error", extra=kv(
                        tag=request.tag, value=request.value, origin=request.origin))
                    result = WriteResult(request.tag, request.value, request.origin, False,
                                         f"write failed: internal error {type(exc).__name__}: {exc}")
                else:
                    self._log_outcome(request, result)
                if not request.done.done():
                    request.done.set_result(result)
                request = None
        finally:
            self._answer_waiting(request)

    def _answer_waiting(self, current: _Request | None) -> None:
        """On the way out, tell every requester still waiting that its write was not made."""
        waiting = [current] if current is not None else []
        while not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for request in waiting:
            if not request.done.done():
                request.done.set_result(WriteResult(request.tag, request.value, request.origin, False,
                                                    "write queue stopped"))

    @staticmethod
    def _log_outcome(request: _Request, result: WriteResult) -> None:
        if result.accepted:
            log.info("write done", extra=kv(tag=request.tag, value=request.value, origin=request.origin,
                                            readback=result.readback))
        else:
            log.warning("write refused", extra=kv(tag=request.tag, value=request.value, origin=request.origin,
                                                  reason=result.reason))

    async def _execute(self, request: _Request) -> WriteResult:
        def failed(reason: str, readback: Value = None) -> WriteResult:
            return WriteResult(request.tag, request.value, request.origin, False, reason, readback)

        if request.tag in self._restarting and not await self._until_back(request):
            return failed(RESTARTING)
        try:
            device, prepared = await self._check(request.tag, request.value)
        except WriteRefused as exc:
            return failed(str(exc))
        except DeviceBadReply as exc:
            return failed(f"current value unreadable: {Reason.BAD_REPLY.value}: {exc}")
        except DeviceError as exc:
            return failed(f"device unreachable: {exc}")
        try:
            await device.write(prepared)
        except DeviceBadReply as exc:
            return failed(f"write failed: {Reason.BAD_REPLY.value}: {exc}")
        except DeviceError as exc:
            return failed(f"write failed: {exc}")
        self._last_write[request.tag] = self._clock()
        try:
            readback = await device.read_tag(request.tag)
        except DeviceBadReply as exc:
            return failed(f"read-back failed: {Reason.BAD_REPLY.value}: {exc}")
        except DeviceError as exc:
            return failed(f"read-back failed: {exc}")
        if readback.quality is not Quality.GOOD or not _same(readback.value, request.value,
                                                             device.tags[request.tag].resolution()):
            return failed(f"read-back mismatch: device holds {readback.value!r}", readback.value)
        return WriteResult(request.tag, request.value, request.origin, True, "", readback.value)

    async def _until_back(self, request: _Request) -> bool:
        """Wait until the reload brought the device of ``request.tag`` back and its first attempt
        told whether it answers (then the usual checks say what they say); False if it is not back
        within the wait, or the requester stopped waiting."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._restart_wait_s
        while not request.done.done() and loop.time() < deadline:
            device = self._writable.get(request.tag)
            if request.tag not in self._restarting and (device is None or device.online is not None):
                return True
            await asyncio.sleep(RESTART_POLL_S)
        return False

    async def _check(self, tag: str, value: Value) -> tuple[Device, PreparedWrite]:
        """Every check that can refuse a write, in the order a person would ask them."""
        device = self._writable.get(tag)
        if device is None:
            if any(tag in known.tags for known in self._devices.values()):
                raise WriteRefused(f"tag {tag!r} is not writable")
            raise WriteRefused(f"unknown tag {tag!r}")
        limits = device.tags[tag].writable
        assert limits is not None  # indexed only if writable
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise WriteRefused(f"value {value!r} is not a finite number")
        if not limits.min <= value <= limits.max:
            raise WriteRefused(f"value {value} outside the limits [{limits.min}, {limits.max}]")
        last = self._last_write.get(tag)
        if last is not None and self._clock() - last < limits.min_interval_s:
            raise WriteRefused(f"too soon: at least {limits.min_interval_s} s between writes")
        try:
            prepared = device.prepare_write(tag, value)
        except Unrepresentable as exc:
            raise WriteRefused(str(exc)) from None
        if not device.online:
            raise WriteRefused(f"device {device.name!r} is offline")
        if limits.max_step is not None:
            current = await device.read_tag(tag)
            if current.quality is not Quality.GOOD or not isinstance(current.value, int | float):
                raise WriteRefused("current value unknown, cannot check max_step")
            if abs(value - current.value) > limits.max_step + 1e-9:
                raise WriteRefused(f"step {value - current.value:+g} from {current.value:g} exceeds max_step {limits.max_step:g}")
        return device, prepared


def _same(readback: Value, requested: Value, resolution: float) -> bool:
    """Equal within half a step of the tag's resolution (a count of a scaled register)."""
    if readback is None or requested is None:
        return False
    return abs(float(readback) - float(requested)) <= resolution / 2 + 1e-9
