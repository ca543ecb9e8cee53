"""The OPC UA entry of the protocol registry (``protocol: opcua``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from drivers.opcua.config import OpcUaDevice
from gateway.acquisition.device import Device
from gateway.acquisition.driver import Driver, Problems
from gateway.acquisition.models import PollGroup
from gateway.acquisition.reading import DeviceReading
from gateway.bus import Bus


def build(devices: Mapping[str, OpcUaDevice], groups: Mapping[str, PollGroup], bus: Bus, *,
          state_dir: Path | None = None) -> Mapping[str, Device]:
    """One session per device: OPC UA servers multiplex everything over one session anyway.

    ``state_dir`` holds the gateway's application certificate (``opcua/``) when a device is
    secured and names no certificate of its own.
    """
    # Imported here: asyncua adds some 40 MB to every process that loads the registry (``heatgw
    # check`` included), and only a station with OPC UA devices needs it.
    from drivers.opcua.device import OpcUaDeviceRunner

    return {name: OpcUaDeviceRunner(name, device, groups, bus, state_dir=state_dir) for name, device in devices.items()}


def problems(devices: Mapping[str, OpcUaDevice]) -> Problems:
    """Node ids and browse paths that do not parse or name a namespace the device does not declare,
    subscription settings for groups without tags, and one node written by two tags."""
    found: Problems = []
    writers: dict[tuple[str, str], str] = {}
    for name, device in devices.items():
        problems_at = device.address_problems()
        for tag, problem in problems_at.items():
            field = "node" if device.tags[tag].node is not None else "browse_path"
            found.append((("devices", name, "tags", tag, field), problem))
        for tag, cfg in device.tags.items():
            if cfg.writable is None or tag in problems_at:
                continue
            # A second writable tag on the same node would let a write bypass the first one's limits.
            key = (device.endpoint.rstrip("/"), _address(device, cfg.node, cfg.browse_path))
            if key in writers:
                field = "node" if cfg.node is not None else "browse_path"
                found.append((("devices", name, "tags", tag, field), f"this node is already written by tag "
                              f"{writers[key]!r}, within its own limits: one writable tag per node"))
            writers.setdefault(key, tag)
        for group in device.subscriptions:
            if not any(tag.group == group for tag in device.tags.values()):
                found.append((("devices", name, "subscriptions", group), f"no tag of this device is in group {group!r}"))
    return found


async def read(devices: Mapping[str, OpcUaDevice], groups: Mapping[str, PollGroup]) -> list[DeviceReading]:
    """``heatgw read``: every tag of each device read once (see ``drivers.opcua.reading``)."""
    from drivers.opcua.reading import read_devices  # asyncua only when it is needed, as in build

    return await read_devices(devices, groups)


def _address(device: OpcUaDevice, node: str | None, browse_path: str | None) -> str:
    """One spelling per node: its namespace URI and identifier (or its browse path's, element by element)."""
    if node is not None:
        ref = device.node_ref(node)
        return f"{ref.namespace_uri}|{ref.kind}={ref.identifier}"
    assert browse_path is not None
    return "/".join(f"{step.namespace_uri}|{step.name}" for step in device.browse_steps(browse_path))


DRIVER: Driver[OpcUaDevice] = Driver(models=(OpcUaDevice,), build=build, problems=problems, read=read)
