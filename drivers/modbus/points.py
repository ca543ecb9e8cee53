"""The Modbus driver's own description of what to read: typed, validated, protocol-only.

A ``Point`` says where a value lives (function, address), how it is encoded (data type, word and
byte order, BCD, a bit of a status word) and how raw counts become engineering units
(``value * scale + offset``). It knows nothing about heating: the gateway maps its tags onto
points, never the other way round, so this module never imports ``gateway``.

Byte and word order conventions
-------------------------------
Modbus transmits every 16-bit register big-endian (high byte first).

* ``byte_order=BIG`` is the normal case. ``byte_order=LITTLE`` is for "byte-swapped" devices that
  put the low byte of each register first; the two bytes are swapped *within each register*
  before anything else is interpreted (including the bit numbering of status words).
* ``word_order`` only matters for 32- and 64-bit values. ``BIG`` means the most significant
  register comes first (ABCD for 32 bits, ABCDEFGH for 64 bits); ``LITTLE`` means the least
  significant register comes first (CDAB for 32 bits, GHEFCDAB for 64 bits). Combining
  ``word_order=LITTLE`` with ``byte_order=LITTLE`` gives a fully little-endian value (DCBA).

Bits are numbered from the least significant bit of the (byte-order corrected) register:
``bit=0`` is the value ``0x0001``, ``bit=15`` is ``0x8000``.

``no_value_raw`` is the raw bit pattern a device sends when a sensor has no reading (32767,
0x8000, 0xFFFF, a NaN pattern...). It is compared with the point's registers *before* scaling or
BCD decoding, so an invalid-BCD sentinel such as 0xFFFF still reads as "no value". Negative
numbers are taken as two's complement, so ``-32768`` and ``0x8000`` mean the same for a 16-bit
point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class Function(Enum):
    """The table a point lives in; the value is the Modbus read function code."""

    COIL = 1
    DISCRETE = 2
    HOLDING = 3
    INPUT = 4

    @property
    def is_bit(self) -> bool:
        """Coils and discrete inputs are addressed in bits, registers in 16-bit words."""
        return self in (Function.COIL, Function.DISCRETE)


class DataType(Enum):
    """How a point's registers (or bit) encode its value."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    BOOL = "bool"
    BCD16 = "bcd16"  # 4 decimal digits in one register, one digit per nibble
    BCD32 = "bcd32"  # 8 decimal digits in two registers

    @property
    def registers(self) -> int:
        """Registers occupied when the point lives in a register table (BOOL needs a bit)."""
        return _REGISTERS[self]

    @property
    def is_integer(self) -> bool:
        """Types whose raw value is an integer count (scaled to float unless scaling is identity)."""
        return self in _INTEGER_TYPES


_REGISTERS: dict[DataType, int] = {
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.FLOAT32: 2,
    DataType.FLOAT64: 4,
    DataType.BOOL: 1,
    DataType.BCD16: 1,
    DataType.BCD32: 2,
}
_INTEGER_TYPES = frozenset(
    {DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32, DataType.BCD16, DataType.BCD32}
)
_BIT_CARRIERS = frozenset({DataType.BOOL, DataType.INT16, DataType.UINT16})
MAX_ADDRESS = 0xFFFF


class WordOrder(Enum):
    """Register order of 32/64-bit values: BIG = most significant register first."""

    BIG = "big"
    LITTLE = "little"


class ByteOrder(Enum):
    """Byte order inside each register: BIG is the Modbus norm, LITTLE is "byte-swapped"."""

    BIG = "big"
    LITTLE = "little"


@dataclass(frozen=True, slots=True)
class Point:
    """One value to read from (or write to) a Modbus device.

    ``key`` identifies the point in decode results; it is whatever the caller maps back to its
    own tags. ``address`` is the zero-based protocol address (not the 40001-style number).
    """

    key: str
    function: Function
    address: int
    data_type: DataType
    word_order: WordOrder = WordOrder.BIG
    byte_order: ByteOrder = ByteOrder.BIG
    scale: float = 1.0
    offset: float = 0.0
    bit: int | None = None
    no_value_raw: int | None = None

    def __post_init__(self) -> None:
        _check_identity(self)
        _check_scaling(self)
        if self.function.is_bit:
            _check_bit_table_point(self)
        else:
            _check_register_point(self)
        _check_span(self)

    @property
    def count(self) -> int:
        """Addresses occupied: bits for coils/discretes, registers otherwise."""
        if self.function.is_bit or self.bit is not None:
            return 1
        return self.data_type.registers

    @property
    def end(self) -> int:
        """First address after the point (half-open interval ``[address, end)``)."""
        return self.address + self.count

    @property
    def is_boolean(self) -> bool:
        """Whether the point decodes to a bool (a coil, a discrete input or a register bit)."""
        return self.function.is_bit or self.bit is not None

    @property
    def no_value_pattern(self) -> int | None:
        """``no_value_raw`` as an unsigned bit pattern of the point's width (two's complement)."""
        if self.no_value_raw is None:
            return None
        return self.no_value_raw & ((1 << (16 * self.count)) - 1)


def _check_identity(point: Point) -> None:
    if not isinstance(point.key, str) or not point.key:
        raise ValueError(f"point key must be a non-empty string, got {point.key!r}")
    for name, enum in (
        ("function", Function),
        ("data_type", DataType),
        ("word_order", WordOrder),
        ("byte_order", ByteOrder),
    ):
        if not isinstance(getattr(point, name), enum):
            raise ValueError(f"{point.key}: {name} must be a {enum.__name__}")
    if not _is_int(point.address) or not 0 <= point.address <= MAX_ADDRESS:
        raise ValueError(f"{point.key}: address must be an int in 0..{MAX_ADDRESS}, got {point.address!r}")


def _check_scaling(point: Point) -> None:
    # scale == 0 would make every reading the offset and writes impossible to invert.
    if not math.isfinite(point.scale) or point.scale == 0:
        raise ValueError(f"{point.key}: scale must be finite and non-zero, got {point.scale!r}")
    if not math.isfinite(point.offset):
        raise ValueError(f"{point.key}: offset must be finite, got {point.offset!r}")


def _check_bit_table_point(point: Point) -> None:
    if point.data_type is not DataType.BOOL:
        raise ValueError(f"{point.key}: {point.function.name} points hold single bits; use BOOL")
    if point.bit is not None:
        raise ValueError(f"{point.key}: bit selects a bit of a register; {point.function.name} is already one bit")
    _check_plain_boolean(point)


def _check_register_point(point: Point) -> None:
    if point.bit is None:
        if point.data_type is DataType.BOOL:
            raise ValueError(f"{point.key}: BOOL in a register table needs bit=0..15")
        _check_sentinel(point)
        return
    if point.data_type not in _BIT_CARRIERS:
        raise ValueError(f"{point.key}: bit is only valid with BOOL, INT16 or UINT16, not {point.data_type.name}")
    if not _is_int(point.bit) or not 0 <= point.bit <= 15:
        raise ValueError(f"{point.key}: bit must be an int in 0..15, got {point.bit!r}")
    _check_plain_boolean(point)


def _check_plain_boolean(point: Point) -> None:
    """Booleans are not scaled and have no sentinel: a bit has no spare pattern to mean "none"."""
    if point.scale != 1.0 or point.offset != 0.0:
        raise ValueError(f"{point.key}: boolean points cannot be scaled")
    if point.no_value_raw is not None:
        raise ValueError(f"{point.key}: boolean points cannot have a no_value_raw sentinel")


def _check_sentinel(point: Point) -> None:
    raw = point.no_value_raw
    if raw is None:
        return
    width = 16 * point.count
    if not _is_int(raw) or not -(1 << (width - 1)) <= raw < (1 << width):
        raise ValueError(f"{point.key}: no_value_raw {raw!r} does not fit in {width} bits")


def _check_span(point: Point) -> None:
    if point.end - 1 > MAX_ADDRESS:
        raise ValueError(f"{point.key}: occupies addresses past {MAX_ADDRESS}")


def _is_int(value: object) -> bool:
    """True for real ints; bool is excluded because ``True`` as an address is always a mistake."""
    return isinstance(value, int) and not isinstance(value, bool)
