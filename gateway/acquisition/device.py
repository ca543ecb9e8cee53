"""The one interface the core talks to every device through, whatever its protocol.

The gateway starts ``run()`` as a task and leaves the device to produce its samples and its
``DeviceStatus`` onto the bus; the write queue does every protocol-independent check itself
(writable, finite, limits, interval, step, online) and only then asks the device to encode, write
and read back. Failures cross this interface as ``drivers.base.DeviceError`` subclasses, never as
a protocol library's exceptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from gateway.acquisition.models import TagBase
from gateway.acquisition.stats import DeviceStats
from gateway.samples import Sample


class Unrepresentable(ValueError):
    """The device cannot hold the value (too many digits for a scaled register, out of its type's
    range): the write is refused before the wire. The message is the whole refusal reason."""


@dataclass(frozen=True, slots=True)
class PreparedWrite:
    """A checked value, encoded the device's way; only the device that made it looks at ``wire``."""

    tag: str
    value: float | bool
    wire: object


class Device(Protocol):
    """A running device: a producer on the bus, and the write path's end."""

    @property
    def name(self) -> str: ...

    @property
    def tags(self) -> Mapping[str, TagBase]: ...

    @property
    def online(self) -> bool | None:
        """True after a valid answer, False once lost, None before the first attempt tells."""

    @property
    def stats(self) -> DeviceStats: ...

    async def run(self) -> None:
        """Produce samples and statuses onto the bus until cancelled; never end on a device fault."""

    def patience_s(self) -> float:
        """The longest ``run`` may legitimately go without a step (the systemd watchdog)."""

    def stalled(self, now: float) -> bool:
        """Whether ``run`` made no step within ``patience_s`` (event-loop time ``now``)."""

    def prepare_write(self, tag: str, value: float) -> PreparedWrite:
        """Encode an already checked value for ``tag``; raise ``Unrepresentable`` if it cannot be held."""

    async def write(self, prepared: PreparedWrite) -> None:
        """Put a prepared value on the wire; raise a ``DeviceError`` if it did not get there."""

    async def read_tag(self, tag: str) -> Sample:
        """Read one tag now (read-back, current value before a step check); raise ``DeviceError``."""
