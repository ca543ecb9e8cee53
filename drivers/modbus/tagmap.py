"""Map the station configuration's Modbus tags onto the driver's points and links.

The driver knows registers; the configuration knows tags. This is the one place that translates,
so neither side has to learn the other's vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable

from drivers.modbus.link import ModbusLink, SerialEndpoint, TcpEndpoint
from drivers.modbus.points import ByteOrder, DataType, Function, Point, WordOrder
from drivers.modbus.config import ModbusDeviceBase, ModbusRtuDevice, ModbusTcpDevice, TagConfig

_FUNCTIONS = {
    "holding": Function.HOLDING,
    "input": Function.INPUT,
    "coil": Function.COIL,
    "discrete": Function.DISCRETE,
}


def to_point(name: str, tag: TagConfig, device: ModbusDeviceBase, shared: dict[Point, Point] | None = None) -> Point:
    """The driver point for a configured tag; word/byte order default to the device's.

    With ``shared``, an equal point made before is returned instead of a new one (and a new one is
    added): devices of one kind then hold one point per tag of the kind, not one each."""
    point = Point(
        key=name,
        function=_FUNCTIONS[tag.function],
        address=tag.address,
        data_type=DataType(tag.data_type),
        word_order=WordOrder(tag.word_order or device.word_order),
        byte_order=ByteOrder(tag.byte_order or device.byte_order),
        scale=tag.scale,
        offset=tag.offset,
        bit=tag.bit,
        no_value_raw=tag.no_value,
    )
    return point if shared is None else shared.setdefault(point, point)


def point_labels(device_name: str, tags: Iterable[str]) -> dict[str, str]:
    """The key each tag's point gets: the tag's name without its device's name in front, so the
    points of ``s001_supply_temp`` and ``s002_supply_temp`` (one template, or one PLC model
    written out twice) are equal and can be shared. Where that would give two tags of the device
    one key, the tags' own names are kept."""
    names = list(tags)
    labels = {tag: tag.removeprefix(f"{device_name}_") or tag for tag in names}
    return labels if len(set(labels.values())) == len(names) else {tag: tag for tag in names}


def link_key(device: ModbusTcpDevice | ModbusRtuDevice, device_name: str) -> tuple[str, ...]:
    """Devices with the same key share one link.

    Every TCP device gets its own connection, so a slow PLC never delays the meter next to it.
    Devices on one serial port must share it: an RS-485 line carries one request at a time.
    """
    if isinstance(device, ModbusTcpDevice):
        return ("tcp", device_name)
    return ("rtu", device.serial_port)


def make_link(device: ModbusTcpDevice | ModbusRtuDevice) -> ModbusLink:
    """A link for the device's transport, with its timeout and retries."""
    endpoint: TcpEndpoint | SerialEndpoint
    if isinstance(device, ModbusTcpDevice):
        endpoint = TcpEndpoint(device.host, device.port)
    else:
        endpoint = SerialEndpoint(device.serial_port, device.baudrate, device.parity, device.stopbits)
    return ModbusLink(endpoint, timeout_s=device.timeout_s, retries=device.retries)
