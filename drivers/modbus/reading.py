"""``heatgw read`` for Modbus: poll each device once through its real poller and show the wire.

The values come from the same poller, plan, decoder and quality rules the gateway runs, so what
this shows is what the gateway would publish; the poller's raw observer adds the registers each
value was decoded from, and ``plausibility`` adds a hint where a 32/64-bit value reads like its
words are swapped. Devices are read one after the other (a serial line carries one request at a
time anyway), each once connected, and a device that does not answer costs its own timeout only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from drivers.modbus.errors import LinkDown, LinkTimeout
from drivers.modbus.planner import ReadBlock
from drivers.modbus.plausibility import word_order_hint
from drivers.modbus.points import DataType, Point
from drivers.modbus.poller import DevicePoller
from gateway.acquisition.reading import DeviceReading, TagReading
from gateway.samples import Sample

NOBODY_BEHIND_THE_GATEWAY = ("exception: exception 10 ", "exception: exception 11 ")
"""What a Modbus TCP gateway answers for a unit behind it that is not there (or not reachable): no
answer from the device itself, whatever the gateway in front of it says."""


async def read_devices(pollers: Mapping[str, DevicePoller]) -> list[DeviceReading]:
    """One poll of each device, in order; the links are closed again before returning."""
    try:
        return [await _read_one(name, poller) for name, poller in pollers.items()]
    finally:
        for poller in pollers.values():
            poller.link.close()


async def _read_one(name: str, poller: DevicePoller) -> DeviceReading:
    link = f"{poller.link.describe()} unit {poller.unit}"
    answers: list[tuple[ReadBlock, list[int] | list[bool]]] = []
    poller.raw_observer = lambda block, raw: answers.append((block, raw))
    try:
        await poller.link.connect()
        batches = await poller.poll_once()
    except LinkTimeout as exc:
        return DeviceReading(name, link, False, f"timeout: {exc}")
    except LinkDown as exc:
        return DeviceReading(name, link, False, f"connection_lost: {exc}")
    finally:
        poller.raw_observer = None
    samples = {sample.tag: sample for batch in batches for sample in batch.samples}
    tags = [_tag(poller, tag, samples[tag], answers) for tag in poller.tags if tag in samples]
    if tags and all(reading.reason.startswith(NOBODY_BEHIND_THE_GATEWAY) for reading in tags):
        return DeviceReading(name, link, False, tags[0].reason, tags)
    return DeviceReading(name, link, True, tags=tags, hint=_device_hint(poller, tags))


def _device_hint(poller: DevicePoller, tags: Sequence[TagReading]) -> str:
    """How many of the device's multi-register values look swapped: one swapped value can read
    plausibly, so when others are flagged the engineer should check them all."""
    wide = [t for t in tags if (point := poller.point(t.tag)).count > 1 and point.data_type is not DataType.BCD32]
    flagged = [t for t in wide if t.hint]
    if not flagged:
        return ""
    return (f"{len(flagged)} of {len(wide)} 32/64-bit values {flagged[0].hint.replace('looks like', 'look like')}: "
            "check them all (the device's word_order sets every value without its own)")


def _tag(poller: DevicePoller, tag: str, sample: Sample, answers: Sequence[tuple[ReadBlock, list[int] | list[bool]]]
         ) -> TagReading:
    point, config = poller.point(tag), poller.tags[tag]
    raw = _raw_of(point, answers)
    hint = ""
    if raw is not None and all(isinstance(word, int) and not isinstance(word, bool) for word in raw):
        hint = word_order_hint(point, raw, config.range) or ""  # type: ignore[arg-type] - ints, checked above
    return TagReading(tag=tag, where=_where(point), raw=_hex(raw), value=sample.value, unit=config.unit,
                      quality=sample.quality, reason=sample.reason or "", hint=hint)


def _raw_of(point: Point, answers: Sequence[tuple[ReadBlock, list[int] | list[bool]]]) -> list[int] | list[bool] | None:
    """The registers (or bit) ``point`` was decoded from: the last answer whose block holds it."""
    for block, raw in reversed(answers):
        if block.function is point.function and block.start <= point.address and point.end <= block.end:
            offset = point.address - block.start
            return raw[offset:offset + point.count]  # type: ignore[return-value]
    return None


def _where(point: Point) -> str:
    table = point.function.name.lower()
    span = str(point.address) if point.count == 1 else f"{point.address}-{point.end - 1}"
    return f"{table} {span}" + (f" bit {point.bit}" if point.bit is not None else "")


def _hex(raw: Sequence[int] | Sequence[bool] | None) -> str:
    if raw is None:
        return "-"
    return " ".join(str(int(word)) if isinstance(word, bool) else f"0x{word:04x}" for word in raw)
