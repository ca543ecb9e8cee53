"""What a protocol folder gives the gateway: one ``Driver`` entry, listed in ``gateway.protocols``."""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from gateway.acquisition.device import Device
from gateway.acquisition.models import DeviceConfigBase, PollGroup
from gateway.acquisition.reading import DeviceReading
from gateway.bus import Bus
from gateway.yaml_source import Path_

ConfigT = TypeVar("ConfigT", bound=DeviceConfigBase)

Problems = list[tuple[Path_, str]]


def _none(devices: Mapping[str, DeviceConfigBase]) -> Problems:
    return []


def _own(name: str, device: DeviceConfigBase) -> Hashable:
    return ("device", name)


@dataclass(frozen=True)
class Driver(Generic[ConfigT]):
    """A protocol's device models, how to build its devices, and its checks across devices.

    ``build`` gets every device of this driver at once, so devices that must share something (one
    RS-485 line, one client) share it without the core knowing; it returns one ``Device`` per
    name. It is also given the gateway's state directory (keyword ``state_dir``, ``None`` when the
    gateway runs without one) for what a driver keeps on disk, such as its own certificate.
    ``problems`` reports what no single model can check (two tags writing one register), with
    paths from the document's root.
    """

    models: tuple[type[ConfigT], ...]
    build: Callable[..., Mapping[str, Device]]  # (devices, groups, bus, *, state_dir: Path | None)
    problems: Callable[[Mapping[str, ConfigT]], Problems] = field(default=_none)
    read: Callable[[Mapping[str, ConfigT], Mapping[str, PollGroup]], Awaitable[list[DeviceReading]]] | None = None
    """``heatgw read``: poll these devices once, with what came over the wire (optional)."""
    shares: Callable[[str, ConfigT], Hashable] = field(default=_own)
    """What a device shares with others of its driver (an RS-485 line): devices with one key are
    built together and so are stopped and started together by a reload. Default: nothing shared."""

    def protocols(self) -> tuple[str, ...]:
        """The ``protocol:`` values this driver serves, from its models' ``Literal`` discriminators."""
        return tuple(key for model in self.models for key in typing.get_args(model.model_fields["protocol"].annotation))
