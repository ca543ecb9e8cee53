"""Map the station configuration's Modbus tags onto the driver's points and links.

The driver knows registers; the configuration knows tags. This is the one place that translates,
so neither side has to learn the other's vocabulary.
"""

from __future__ import annotations

from drivers.modbus.link import ModbusLink, SerialEndpoint, TcpEndpoint
from drivers.modbus.points import ByteOrder, DataType, Function, Point, WordOrder
from drivers.modbus.config import ModbusDeviceBase, ModbusRtuDevice, ModbusTcpDevice, TagConfig

_FUNCTIONS = {
    "holding": Function.HOLDING,
    "input": Function.INPUT,
    "coil": Function.COIL,
    "discrete": Function.DISCRETE,
}


def to_point(name: str, tag: TagConfig, device: ModbusDeviceBase) -> Point:
    """The driver point for a configured tag; word/byte order default to the device's."""
    return Point(
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
