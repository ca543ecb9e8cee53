"""``heatgw read``: one poll of a device, shown the way a commissioning engineer checks it.

What a driver returns for each tag (where it is, what came over the wire, what that decodes to,
with the quality the gateway would publish) and for each device (did it answer at all). The
driver fills these in its own terms (``holding 2-3``, ``0x44b9 0xa666``); the CLI only prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.base import Quality


@dataclass(frozen=True, slots=True)
class TagReading:
    """One tag in one poll: ``value`` with the quality and reason the gateway would publish, and a
    ``hint`` when the value looks like a configuration mistake rather than a measurement."""

    tag: str
    where: str
    raw: str
    value: float | int | bool | None
    unit: str
    quality: Quality
    reason: str = ""
    hint: str = ""


@dataclass(frozen=True, slots=True)
class DeviceReading:
    """One device in one poll; ``answered`` is False when it did not answer at all (``reason`` says
    why: no connection, or silence), and its tags then have no values."""

    device: str
    link: str
    answered: bool
    reason: str = ""
    tags: list[TagReading] = field(default_factory=list)
    hint: str = ""  # about the device as a whole (most of its values look swapped)
