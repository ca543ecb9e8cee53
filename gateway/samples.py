"""The unit of data inside the gateway: a sample, and the batches the bus carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from drivers.base import Quality

Value = float | int | bool | None


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one tag at one instant: ``(tag, value, timestamp, quality)``.

    ``timestamp`` is UTC POSIX seconds, taken at the source when it gives one, else at read time.
    ``value`` is None when the quality is BAD. ``reason`` explains a non-good quality.
    """

    tag: str
    value: Value
    timestamp: float
    quality: Quality = Quality.GOOD
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SampleBatch:
    """Samples read together (one poll of one group of one device): the bus's main cargo."""

    device: str
    group: str
    samples: tuple[Sample, ...]


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A device came online or was lost; the alarm engine raises communication-loss on this."""

    device: str
    online: bool
    timestamp: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StationReloaded:
    """The station file was reloaded (SIGHUP): a consumer that keeps per-tag settings (the
    telemetry filter, the latest values) switches to ``config`` when this item reaches it, so the
    switch falls exactly between the last sample polled under the old configuration and the first
    polled under the new one, whatever its queue holds. Consumers that keep none ignore it."""

    config: GatewayConfig


if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.control.model import ControllerState

BusItem = Union[SampleBatch, DeviceStatus, StationReloaded, "ControllerState"]
