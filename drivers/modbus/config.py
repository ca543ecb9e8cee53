"""The Modbus devices and tags of ``station.yaml`` (``protocol: modbus_tcp`` and ``modbus_rtu``).

A tag here says where its value is (function and address), how its registers decode (type, word
and byte order, scale, offset, bit, the "no reading" sentinel); what it means is ``TagBase``'s.
The checks that need the register layout (a writable input, limits a register cannot hold, two
tags writing one register) live here too, reported at the field a person must change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, model_validator

from drivers.modbus.codec import engineering_range
from drivers.modbus.points import DataType
from gateway.acquisition.models import DeviceConfigBase, TagBase, decimals
from gateway.config_base import Name, plain_fields
from gateway.acquisition.driver import Problems

FunctionName = Literal["holding", "input", "coil", "discrete"]
TypeName = Literal["int16", "uint16", "int32", "uint32", "float32", "float64", "bool", "bcd16", "bcd32"]
Order = Literal["big", "little"]

REGISTER_FUNCTIONS = ("holding", "input")
BIT_FUNCTIONS = ("coil", "discrete")
WRITABLE_FUNCTIONS = ("holding", "coil")
SIGNIFICANT_DIGITS = {"float32": 7, "float64": 15}  # what the IEEE format really carries


class TagConfig(TagBase):
    """One value on a device: where it is, how to decode it, and what it means."""

    function: FunctionName
    address: int = Field(ge=0, le=65_535)
    type: TypeName | None = None  # default: uint16 for registers, bool for coils/discretes
    word_order: Order | None = None  # default: the device's
    byte_order: Order | None = None  # default: the device's
    scale: float = 1.0
    offset: float = 0.0
    bit: int | None = Field(default=None, ge=0, le=15)
    no_value: int | None = Field(default=None, description="raw value meaning 'sensor has no reading'")

    @property
    def data_type(self) -> TypeName:
        """The effective type: the given one, else the natural one for the function."""
        if self.type is not None:
            return self.type
        return "bool" if self.function in BIT_FUNCTIONS else "uint16"

    def resolution(self) -> float:
        """One count of the register: the scale."""
        return abs(self.scale)

    def telemetry_digits(self) -> int:
        """Decimal places of the scale and offset for scaled integers (the register's own
        resolution), what the IEEE format carries for floating-point registers."""
        digits = SIGNIFICANT_DIGITS.get(self.data_type)
        if digits is not None:
            return -digits
        return max(decimals(self.scale), decimals(self.offset))

    def problems(self) -> Problems:
        """Writable limits the tag's register cannot hold (3300..3630 on an int16 scaled by 0.1)."""
        if self.writable is None or self.bit is not None or self.function not in REGISTER_FUNCTIONS:
            return []
        low, high = engineering_range(DataType(self.data_type), self.scale, self.offset)
        if low <= self.writable.min and self.writable.max <= high:
            return []
        return [(("writable",), f"limits [{self.writable.min:g}, {self.writable.max:g}] do not fit the register: "
                                f"{self.data_type} with scale {self.scale:g} and offset {self.offset:g} holds "
                                f"{low:g} to {high:g}")]

    @model_validator(mode="after")
    def _consistent(self) -> TagConfig:
        kind = self.data_type
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.function in BIT_FUNCTIONS and kind != "bool":
            raise ValueError(f"{self.function} tags are single bits: type must be bool, not {kind}")
        if self.bit is not None and kind not in ("int16", "uint16", "bool"):
            raise ValueError("bit selects one bit of a 16-bit register: use type uint16 or bool")
        if kind == "bool" and self.function in REGISTER_FUNCTIONS and self.bit is None:
            raise ValueError("a bool in a register needs bit: 0..15")
        if self.writable is not None and self.function not in WRITABLE_FUNCTIONS:
            raise ValueError(f"{self.function} values are read-only in Modbus: only holding and coil tags are writable")
        return self


class ModbusDeviceBase(DeviceConfigBase):
    """Settings every Modbus device has, whatever the transport."""

    _plain = plain_fields("unit_id", "timeout_s", "retries", "max_registers", "max_bits", "max_gap", "high_addresses",
                          "word_order", "byte_order", "host", "port", "serial_port", "baudrate", "parity", "stopbits")

    unit_id: int = Field(default=1, ge=0, le=255)
    timeout_s: float = Field(default=1.0, gt=0, le=60)
    retries: int = Field(default=1, ge=0, le=5)
    max_registers: int = Field(default=125, ge=1, le=125, description="registers per read request")
    max_bits: int = Field(default=2000, ge=1, le=2000, description="coils/discretes per read request")
    max_gap: int = Field(default=16, ge=0, le=124, description="unused registers a read may span")
    high_addresses: bool = Field(default=False, description="the map really uses addresses 10001 and up (SunSpec): "
                                                            "no 4xxxx-reference hint")
    word_order: Order = "big"
    byte_order: Order = "big"
    tags: dict[Name, TagConfig] = Field(min_length=1)

    def answer_budget_s(self) -> float:
        """``timeout_s`` x (1 + ``retries``)."""
        return self.timeout_s * (1 + self.retries)


class ModbusTcpDevice(ModbusDeviceBase):
    """A PLC or meter on Ethernet (or behind a serial-to-Ethernet converter)."""

    protocol: Literal["modbus_tcp"]
    host: str
    port: int = Field(default=502, ge=1, le=65_535)


class ModbusRtuDevice(ModbusDeviceBase):
    """A meter on an RS-485 line, as most heat meters are."""

    protocol: Literal["modbus_rtu"]
    serial_port: str
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    unit_id: int = Field(default=1, ge=1, le=247)


ModbusDevice = ModbusTcpDevice | ModbusRtuDevice


def overlapping_writes(devices: Mapping[str, ModbusDevice]) -> Problems:
    """A register (or coil) written by two tags: the second tag's limits would let a write bypass
    the first one's. Counted per physical device (same host and port, or serial line, and unit
    id) and over every register a multi-register value occupies; bits of one status word may be
    written by one tag each."""
    found: Problems = []
    writers: dict[tuple[object, ...], tuple[str, int | None]] = {}
    for device_name, device in devices.items():
        where = ((device.host, device.port) if isinstance(device, ModbusTcpDevice) else (device.serial_port,))
        for tag_name, tag in device.tags.items():
            if tag.writable is None:
                continue
            width = 1 if tag.bit is not None or tag.function in BIT_FUNCTIONS else DataType(tag.data_type).registers
            for address in range(tag.address, tag.address + width):
                key = (*where, device.unit_id, tag.function, address)
                other = writers.get(key)
                if other is not None and (other[1] is None or tag.bit is None or other[1] == tag.bit):
                    found.append((("devices", device_name, "tags", tag_name, "address"),
                                  f"{tag.function} {address} is already written by tag {other[0]!r}, within its "
                                  "own limits: one writable tag per register"))
                    break
                writers.setdefault(key, (tag_name, tag.bit))
    return found
