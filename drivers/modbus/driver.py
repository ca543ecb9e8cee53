"""The Modbus driver's entry in the protocol registry (``gateway.protocols``)."""

from __future__ import annotations

from collections.abc import Mapping

from drivers.modbus.config import ModbusDevice, ModbusRtuDevice, ModbusTcpDevice, overlapping_writes
from drivers.modbus.link import ModbusLink
from drivers.modbus.poller import DevicePoller
from drivers.modbus.tagmap import link_key, make_link
from gateway.acquisition.device import Device
from gateway.acquisition.driver import Driver
from gateway.acquisition.models import PollGroup
from gateway.bus import Bus


def build(devices: Mapping[str, ModbusDevice], groups: Mapping[str, PollGroup], bus: Bus) -> dict[str, Device]:
    """One poller per device; devices on one serial line share its link (see ``link_key``)."""
    links: dict[tuple[str, ...], ModbusLink] = {}
    pollers: dict[str, Device] = {}
    for name, device in devices.items():
        key = link_key(device, name)
        if key not in links:
            links[key] = make_link(device)
        pollers[name] = DevicePoller(name, device, groups, links[key], bus)
    return pollers


DRIVER: Driver[ModbusDevice] = Driver(models=(ModbusTcpDevice, ModbusRtuDevice), build=build, problems=overlapping_writes)
