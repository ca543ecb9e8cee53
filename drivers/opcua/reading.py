"""``heatgw read`` for OPC UA: connect to each server once, resolve every tag, Read them all.

The session, the resolution by namespace URI and the StatusCode-to-quality rules are the ones
the gateway runs, so what this shows is what the gateway would publish. ``where`` is the node as
the server numbers it today (``ns=3;s=...``), ``raw`` the type the node declares and the status
it answered with, which is what a commissioning engineer compares with the PLC's own tool.
"""

from __future__ import annotations

from collections.abc import Mapping

from asyncua import ua

from drivers.base import DeviceError, Quality
from drivers.opcua.config import OpcUaDevice
from drivers.opcua.session import Session
from drivers.opcua.values import sample_of, status_name
from gateway.acquisition.models import PollGroup
from gateway.acquisition.reading import DeviceReading, TagReading


async def read_devices(devices: Mapping[str, OpcUaDevice], _groups: Mapping[str, PollGroup]) -> list[DeviceReading]:
    """One Read of every tag of each device, one device after the other."""
    return [await _read_one(name, device) for name, device in devices.items()]


async def _read_one(name: str, device: OpcUaDevice) -> DeviceReading:
    session = Session(device, None, lambda _why: None)
    try:
        await session.open()
        nodes, problems = await session.resolve(device.tags)
        names = list(nodes)
        values = await session.read([nodes[tag].node_id for tag in names])
    except DeviceError as exc:
        return DeviceReading(name, device.endpoint, False, str(exc))
    finally:
        await session.close()
    readings = {tag: _reading(tag, device, nodes[tag].node_id, nodes[tag].variant, data)
                for tag, data in zip(names, values, strict=True)}
    readings.update({tag: TagReading(tag, device.tags[tag].node or device.tags[tag].browse_path or "", "", None,
                                     device.tags[tag].unit, Quality.BAD, problem) for tag, problem in problems.items()})
    return DeviceReading(name, device.endpoint, True, tags=[readings[tag] for tag in device.tags])


def _reading(tag: str, device: OpcUaDevice, node_id: ua.NodeId, variant: ua.VariantType | None,
             data: ua.DataValue) -> TagReading:
    sample = sample_of(tag, device.tags[tag], data, 0.0)
    raw = f"{variant.name if variant is not None else 'structure'} {status_name(data.StatusCode)}"
    return TagReading(tag, node_id.to_string(), raw, sample.value, device.tags[tag].unit, sample.quality, sample.reason)
