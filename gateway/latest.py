"""The last known value of every tag, and whether it is still fresh.

Consumers that act on the present (the controller, a live view, the alarm engine) need "what is
the supply temperature now?", not a stream. A value that was good but has not been refreshed
within its group's interval (twice, plus the device timeout) is reported STALE, so a frozen
poller or a stuck bus can never pass an old value off as current.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from drivers.base import Quality, Reason
from gateway.config import GatewayConfig
from gateway.samples import BusItem, DeviceStatus, Sample, SampleBatch


class LatestValues:
    """Keeps the newest sample per tag; feed it bus items with ``update``."""

    def __init__(self, config: GatewayConfig, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._samples: dict[str, Sample] = {}
        self._traits = config.tag_traits()
        self.device_online: dict[str, bool] = {}

    def update(self, item: BusItem) -> None:
        if isinstance(item, SampleBatch):
            for sample in item.samples:
                self._samples[sample.tag] = sample
        elif isinstance(item, DeviceStatus):
            self.device_online[item.device] = item.online

    def reconfigure(self, config: GatewayConfig) -> None:
        """After a reload: tags and devices the station no longer has are forgotten, the others keep
        their value and are judged by their new interval."""
        self._traits = config.tag_traits()
        self._samples = {tag: sample for tag, sample in self._samples.items() if tag in self._traits}
        self.device_online = {device: online for device, online in self.device_online.items() if device in config.devices}

    def get(self, tag: str) -> Sample | None:
        """The newest sample of ``tag`` (None if never seen), STALE if it is too old to trust."""
        sample = self._samples.get(tag)
        if sample is None or sample.quality is not Quality.GOOD:
            return sample
        traits = self._traits.get(tag)
        if traits is None:  # a tag a reload removed, polled before it was: not current any more
            return replace(sample, quality=Quality.STALE, reason=Reason.NOT_REFRESHED.value)
        if self._clock() - sample.timestamp > traits.max_silence_s:
            return replace(sample, quality=Quality.STALE, reason=Reason.NOT_REFRESHED.value)
        return sample
