"""The Modbus driver's entry in the protocol registry (``gateway.protocols``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from drivers.modbus.checks import modbus_problems
from drivers.modbus.config import ModbusDevice, ModbusRtuDevice, ModbusTcpDevice
from drivers.modbus.link import ModbusLink
from drivers.modbus.points import Point
from drivers.modbus.poller import DevicePoller
from drivers.modbus.reading import read_devices
from drivers.modbus.tagmap import link_key, make_link
from gateway.acquisition.device import Device
from gateway.acquisition.driver import Driver
from gateway.acquisition.models import PollGroup
from gateway.acquisition.reading import DeviceReading
from gateway.bus import Bus


def build(devices: Mapping[str, ModbusDevice], groups: Mapping[str, PollGroup], bus: Bus, *,
          state_dir: Path | None = None) -> dict[str, Device]:
    """One poller per device; devices on one serial line share its link (see ``link_key``).
    Modbus keeps nothing on disk, so ``state_dir`` is not used."""
    return dict(_pollers(devices, groups, bus))


async def read(devices: Mapping[str, ModbusDevice], groups: Mapping[str, PollGroup]) -> list[DeviceReading]:
    """``heatgw read``: the same pollers, each polled once (see ``drivers.modbus.reading``)."""
    return await read_devices(_pollers(devices, groups, Bus()))


def _pollers(devices: Mapping[str, ModbusDevice], groups: Mapping[str, PollGroup], bus: Bus) -> dict[str, DevicePoller]:
    links: dict[tuple[str, ...], ModbusLink] = {}
    pollers: dict[str, DevicePoller] = {}
    points: dict[Point, Point] = {}  # equal points of devices of one kind, made once
    for name, device in devices.items():
        key = link_key(device, name)
        if key not in links:
            links[key] = make_link(device)
        pollers[name] = DevicePoller(name, device, groups, links[key], bus, shared_points=points)
    return pollers


def shares(name: str, device: ModbusDevice) -> tuple[str, ...]:
    """Devices on one serial port share its link, so a reload restarts them together."""
    return link_key(device, name)


DRIVER: Driver[ModbusDevice] = Driver(models=(ModbusTcpDevice, ModbusRtuDevice), build=build, problems=modbus_problems,
                                      read=read, shares=shares)
