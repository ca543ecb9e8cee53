"""The registry of protocols: every driver the gateway can run, keyed by the YAML's ``protocol:``.

This is the one module of the core that names drivers. Adding a protocol is adding its folder
under ``drivers/`` and one line to ``DRIVERS``; the configuration's ``devices`` union, the checks
across devices and the building of running devices all follow from that line.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from drivers.modbus.driver import DRIVER as MODBUS
from drivers.opcua.driver import DRIVER as OPCUA
from gateway.acquisition.device import Device
from gateway.acquisition.driver import Driver, Problems
from gateway.acquisition.models import DeviceConfigBase, PollGroup
from gateway.acquisition.reading import DeviceReading
from gateway.bus import Bus

DRIVERS: tuple[Driver[Any], ...] = (MODBUS, OPCUA)

BY_PROTOCOL: dict[str, Driver[Any]] = {key: driver for driver in DRIVERS for key in driver.protocols()}

if TYPE_CHECKING:
    DeviceConfig = DeviceConfigBase
else:
    DeviceConfig = Annotated[Union[tuple(model for driver in DRIVERS for model in driver.models)],
                             Field(discriminator="protocol")]
    """One device of ``station.yaml``: the model whose ``protocol`` matches."""


def _of(driver: Driver[Any], devices: Mapping[str, DeviceConfigBase]) -> dict[str, DeviceConfigBase]:
    served = driver.protocols()
    return {name: device for name, device in devices.items() if device.protocol in served}


def device_problems(devices: Mapping[str, DeviceConfigBase]) -> Problems:
    """Every driver's checks across its own devices."""
    return [problem for driver in DRIVERS for problem in driver.problems(_of(driver, devices))]


def shared_key(name: str, device: DeviceConfigBase) -> Hashable:
    """What ``device`` shares with other devices (its driver's ``shares``): one key, one unit to
    build, stop and start (``gateway.reload``)."""
    return (device.protocol, BY_PROTOCOL[device.protocol].shares(name, device))


def build_devices(devices: Mapping[str, DeviceConfigBase], groups: Mapping[str, PollGroup], bus: Bus, *,
                  state_dir: Path | None = None) -> dict[str, Device]:
    """The running devices, in the configuration's order, each built by its protocol's driver."""
    built: dict[str, Device] = {}
    for driver in DRIVERS:
        if mine := _of(driver, devices):
            built.update(driver.build(mine, groups, bus, state_dir=state_dir))
    return {name: built[name] for name in devices}


async def read_devices(devices: Mapping[str, DeviceConfigBase], groups: Mapping[str, PollGroup]) -> list[DeviceReading]:
    """One poll of every device (``heatgw read``), in the configuration's order."""
    readings: dict[str, DeviceReading] = {}
    for driver in DRIVERS:
        if mine := _of(driver, devices):
            if driver.read is None:
                readings.update({name: DeviceReading(name, device.protocol, False, "this protocol cannot be read "
                                                     "this way yet") for name, device in mine.items()})
            else:
                readings.update({reading.device: reading for reading in await driver.read(mine, groups)})
    return [readings[name] for name in devices]
