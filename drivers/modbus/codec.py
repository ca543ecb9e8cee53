"""Decode whole read blocks with ``struct``, and encode single values for writes.

Byte and word order (see ``drivers.modbus.points`` for the full convention): registers arrive
big-endian; ``byte_order=LITTLE`` swaps the two bytes inside each register; for 32/64-bit values
``word_order=BIG`` puts the most significant register first (ABCD), ``LITTLE`` the least
significant first (CDAB).

A poller decodes the same blocks every cycle, so everything about a block's shape is worked out
once, when it is planned, in a ``_Layout`` shared by every block of that shape: one
``struct.Struct`` whose single ``unpack`` yields every point's raw number, and per point the one
conversion it needs (none for an unscaled integer; scale and offset, the finiteness check, BCD
digits, a status-word bit or the "no value" sentinel only where the point has them). When the
points lie in address order in big-endian registers the format reads the block's wire bytes
directly (pad bytes over the gaps); otherwise a precomputed gather puts each point's registers in
most-significant-first order (word order) from the wire registers or their byte-swapped copies
(byte order), and the format reads those. No numpy: its 20 MB of shared libraries were the
largest single part of a running gateway's memory, and for blocks of at most 125 registers a few
C-level ``struct`` calls cost no more than numpy's per-call overhead.

A bad point never spoils the block: each point gets a ``Decoded`` with either a value or a
``Fault``. Only block-level contract violations (a response of the wrong length) raise.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from enum import Enum
from numbers import Integral, Real
from operator import itemgetter

from drivers.modbus.planner import ReadBlock
from drivers.modbus.points import ByteOrder, DataType, Function, Point, WordOrder

Value = float | int | bool


class Fault(Enum):
    """Why a point has no value in this read."""

    NO_VALUE = "no_value"  # the device sent the point's no_value_raw sentinel
    BAD_BCD = "bad_bcd"  # a BCD nibble above 9
    NOT_FINITE = "not_finite"  # NaN or infinity (a float register, or scaling overflowed)


@dataclass(frozen=True, slots=True)
class Decoded:
    """One point's outcome: ``value`` when ``fault`` is None, else ``value`` is None."""

    value: Value | None
    fault: Fault | None = None

    @property
    def ok(self) -> bool:
        """True when the point has a usable value."""
        return self.fault is None


# ``struct`` code of each register type's value once its bytes are most-significant-first.
_CODES: dict[DataType, str] = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
    DataType.BCD16: "H",
    DataType.BCD32: "I",
}
_STRUCT_FORMATS = {data_type: ">" + code for data_type, code in _CODES.items()}
_PATTERN_CODES = {1: "H", 2: "I", 4: "Q"}
"""The unsigned code of a value's width in registers: its raw bit pattern, as sentinels are given."""
_BCD_TYPES = frozenset({DataType.BCD16, DataType.BCD32})
_FAULTS = {fault: Decoded(None, fault) for fault in Fault}
_BITS = {False: Decoded(False), True: Decoded(True)}
"""Outcomes are frozen, so every bit shares one of two rather than allocating its own."""
_FLOAT32_MAX: float = struct.unpack(">f", bytes.fromhex("7f7fffff"))[0]
_RANGES: dict[DataType, tuple[float, float]] = {
    DataType.INT16: (-(1 << 15), (1 << 15) - 1),
    DataType.UINT16: (0, (1 << 16) - 1),
    DataType.INT32: (-(1 << 31), (1 << 31) - 1),
    DataType.UINT32: (0, (1 << 32) - 1),
    DataType.BCD16: (0, 9999),
    DataType.BCD32: (0, 99_999_999),
    DataType.FLOAT32: (-_FLOAT32_MAX, _FLOAT32_MAX),
}


def engineering_range(data_type: DataType, scale: float, offset: float) -> tuple[float, float]:
    """The lowest and highest engineering values a point of ``data_type`` can hold, with its scaling
    (``raw * scale + offset``); infinite for float64."""
    low, high = _RANGES.get(data_type, (-math.inf, math.inf))
    ends = sorted((low * scale + offset, high * scale + offset))
    return ends[0], ends[1]


Converter = Callable[[Value], Decoded]
"""From the number a block's format unpacked for a point to the point's outcome."""


def _converter(point: Point) -> Converter | None:
    """The one step a point's unpacked number needs; None when the number is the value as it is
    (an integer count read without scaling, the commonest point, which so costs nothing more)."""
    if point.bit is not None:
        mask = 1 << point.bit
        return lambda word: _BITS[word & mask != 0]
    convert = _bcd(point) if point.data_type in _BCD_TYPES else _number(point)
    if point.no_value_pattern is None:
        return convert
    return _sentinel(point, convert)


def _number(point: Point) -> Converter | None:
    if point.data_type.is_integer and point.scale == 1.0 and point.offset == 0.0:
        return None
    return _scaled(point.scale, point.offset)


def _scaled(scale: float, offset: float) -> Converter:
    """``raw * scale + offset`` in float64, as the device's counts become engineering units; every
    float goes through it too (unscaled: ``* 1.0 + 0.0``), since a NaN or infinity is a fault."""
    isfinite = math.isfinite

    def convert(raw: Value) -> Decoded:
        value = raw * scale + offset
        return Decoded(value) if isfinite(value) else _FAULTS[Fault.NOT_FINITE]

    return convert


def _bcd(point: Point) -> Converter:
    """One decimal digit per nibble, read as the pattern's hexadecimal digits; a nibble above 9 is
    a fault of this point only."""
    scaled = None if point.scale == 1.0 and point.offset == 0.0 else _scaled(point.scale, point.offset)

    def convert(pattern: Value) -> Decoded:
        digits = f"{pattern:x}"
        if not digits.isdigit():
            return _FAULTS[Fault.BAD_BCD]
        return Decoded(int(digits)) if scaled is None else scaled(int(digits))

    return convert


def _sentinel(point: Point, then: Converter | None) -> Converter:
    """A point with a "no value" sentinel is unpacked as its raw bit pattern (the sentinel is one),
    compared, then read as its type; the sentinel so wins over bad BCD and over NaN."""
    sentinel = point.no_value_pattern
    code, pattern_code = _CODES[point.data_type], _PATTERN_CODES[point.count]
    typed: Callable[[Value], Value] | None = None
    if code != pattern_code:  # signed and float types: the same bytes read another way
        as_type, as_pattern = struct.Struct(">" + code), struct.Struct(">" + pattern_code)
        typed = lambda pattern: as_type.unpack(as_pattern.pack(pattern))[0]  # noqa: E731

    def convert(pattern: Value) -> Decoded:
        if pattern == sentinel:
            return _FAULTS[Fault.NO_VALUE]
        raw = pattern if typed is None else typed(pattern)
        return Decoded(raw) if then is None else then(raw)

    return convert


def _code(point: Point) -> str:
    """What the block's format unpacks for a point: its register for a bit, its pattern when it
    has a sentinel, else its typed value."""
    if point.bit is not None:
        return "H"
    if point.no_value_pattern is not None:
        return _PATTERN_CODES[point.count]
    return _CODES[point.data_type]


def _in_wire_order(points: Sequence[Point]) -> bool:
    """Whether one format can read the points straight from the wire bytes: big-endian registers,
    most significant register first, in address order without overlaps."""
    end = 0
    for point in points:
        if point.address < end or point.byte_order is ByteOrder.LITTLE or (
                point.count > 1 and point.word_order is WordOrder.LITTLE):
            return False
        end = point.end
    return True


def _register_indices(point: Point, block: ReadBlock) -> list[int]:
    """The point's registers most significant first, numbered in the wire registers followed by
    their byte-swapped copies (a byte-swapped point reads the copies)."""
    first = point.address - block.start + (block.count if point.byte_order is ByteOrder.LITTLE else 0)
    indices = list(range(first, first + point.count))
    return indices[::-1] if point.word_order is WordOrder.LITTLE else indices


class _Layout:
    """What decoding a block needs apart from its points' names: the same for every block of one
    shape, so every device of one register map (a template, a fleet of one PLC model) shares one."""

    __slots__ = ("wire", "swapped", "gather", "words", "values", "converters", "plain", "bit_offsets")

    def __init__(self, block: ReadBlock) -> None:
        points = block.points
        self.bit_offsets = tuple(p.address - block.start for p in points) if block.function.is_bit else ()
        self.wire = struct.Struct(f">{block.count}H")
        self.swapped: struct.Struct | None = None  # reads the wire bytes as byte-swapped registers
        self.gather: Callable[[Sequence[int]], tuple[int, ...]] | None = None
        self.words: struct.Struct | None = None
        self.converters = tuple(_converter(p) for p in points)
        self.plain = all(c is None for c in self.converters)
        if block.function.is_bit:
            self.values = self.wire
        elif _in_wire_order(points):
            fmt, cursor = [">"], block.start
            for point in points:
                fmt += [f"{2 * (point.address - cursor)}x", _code(point)]
                cursor = point.end
            fmt.append(f"{2 * (block.start + block.count - cursor)}x")
            self.values = struct.Struct("".join(fmt))
        else:
            indices = [index for point in points for index in _register_indices(point, block)]
            if any(point.byte_order is ByteOrder.LITTLE for point in points):
                self.swapped = struct.Struct(f"<{block.count}H")
            self.gather = itemgetter(*indices) if len(indices) > 1 else lambda registers: (registers[indices[0]],)
            self.words = struct.Struct(f">{len(indices)}H")
            self.values = struct.Struct(">" + "".join(_code(point) for point in points))

    def numbers(self, raw: Sequence[int]) -> tuple[Value, ...]:
        """Each point's unpacked number, in the block's point order."""
        try:
            wire = self.wire.pack(*raw)
        except struct.error:
            raise ValueError("register values must be in 0..65535") from None
        if self.gather is None:
            return self.values.unpack(wire)
        assert self.words is not None
        registers = raw if self.swapped is None else (*raw, *self.swapped.unpack(wire))
        return self.values.unpack(self.words.pack(*self.gather(registers)))


_SHAPE_FIELDS = tuple(field.name for field in fields(Point) if field.name != "key")
MAX_LAYOUTS = 4096
"""Distinct block shapes remembered; a station has a few per register map (and a few more when
refused blocks are split), so the bound only matters to a process that plans without end."""
_LAYOUTS: dict[tuple[object, ...], _Layout] = {}


def _layout(block: ReadBlock) -> _Layout:
    shape = (block.function, block.start, block.count,
             tuple(tuple(getattr(point, name) for name in _SHAPE_FIELDS) for point in block.points))
    layout = _LAYOUTS.get(shape)
    if layout is None:
        if len(_LAYOUTS) >= MAX_LAYOUTS:
            _LAYOUTS.clear()
        layout = _LAYOUTS[shape] = _Layout(block)
    return layout


class BlockDecoder:
    """Decodes responses to one ``ReadBlock``; build once per block, call ``decode`` every poll.
    Only the names are the decoder's own; the rest is the shared layout of the block's shape.

    ``keys`` name the block's points in the results, in the block's order; by default the points'
    own keys. A poller gives its tags' names: its points may be shared with other devices of the
    same kind (see ``DevicePoller``), whose tags have other names.
    """

    def __init__(self, block: ReadBlock, keys: Sequence[str] | None = None) -> None:
        self.block = block
        self.keys = [point.key for point in block.points] if keys is None else list(keys)
        if len(self.keys) != len(block.points):
            raise ValueError(f"{len(self.keys)} keys for {len(block.points)} points")
        self._groups = _layout(block)  # the shape's shared decoding steps

    def decode(self, raw: Sequence[int] | Sequence[bool]) -> dict[str, Decoded]:
        """Decode a response (``registers`` or ``bits`` as the client returns them) per point key.

        Bit responses may carry padding up to a whole byte; register responses must match the
        block exactly, because anything else means the answer belongs to another request.
        """
        if self.block.function.is_bit:
            return self._decode_bits(raw)
        return self._decode_registers(raw)

    def _decode_bits(self, raw: Sequence[int] | Sequence[bool]) -> dict[str, Decoded]:
        if len(raw) < self.block.count:
            raise ValueError(f"expected {self.block.count} bits, got {len(raw)}")
        return {key: _BITS[bool(raw[offset])] for key, offset in zip(self.keys, self._groups.bit_offsets)}

    def _decode_registers(self, raw: Sequence[int] | Sequence[bool]) -> dict[str, Decoded]:
        if len(raw) != self.block.count:
            raise ValueError(f"expected {self.block.count} registers, got {len(raw)}")
        layout = self._groups
        numbers = layout.numbers(raw)
        if layout.plain:
            return dict(zip(self.keys, map(Decoded, numbers)))
        return {key: Decoded(number) if convert is None else convert(number)
                for key, convert, number in zip(self.keys, layout.converters, numbers)}


def decode_block(block: ReadBlock, raw: Sequence[int] | Sequence[bool]) -> dict[str, Decoded]:
    """One-shot decode; a poller reading the same block repeatedly should keep a ``BlockDecoder``."""
    return BlockDecoder(block).decode(raw)


@dataclass(frozen=True, slots=True)
class MaskWrite:
    """One bit of a holding register, as Mask Write Register (function 22) writes it.

    The device computes ``(current AND and_mask) OR (or_mask AND NOT and_mask)`` in one step, so
    the register's other bits are never touched, even when the PLC changes them between our read
    and our write (a read-modify-write from here could put back a stale bit).
    """

    and_mask: int
    or_mask: int


def encode_write(point: Point, value: Value) -> list[int] | bool | MaskWrite:
    """What to write so that the device holds ``value``.

    A coil gets a bool; one bit of a holding register gets a ``MaskWrite`` (never a coil write at
    the register's address: that is another object, one nobody declared writable). Register values are un-scaled with
    ``(value - offset) / scale``, rounded to the nearest integer for integer and BCD types, range
    checked, and laid out in the point's word and byte order. Raises ``ValueError`` when the value
    cannot be represented, or would read back as the point's "no value" sentinel.
    """
    if point.function in (Function.DISCRETE, Function.INPUT):
        raise ValueError(f"{point.key}: {point.function.name} points are read-only")
    if point.is_boolean:
        if not isinstance(value, bool):
            raise ValueError(f"{point.key}: boolean point needs a bool, got {value!r}")
        if point.bit is None:
            return bool(value)
        return _mask_write(point, bool(value))
    raw = _unscale(point, value)
    if point.data_type in _BCD_TYPES:
        raw = int(str(raw), 16)  # decimal digits reinterpreted as nibbles: 1234 -> 0x1234
    packed = struct.pack(_STRUCT_FORMATS[point.data_type], raw)
    if point.no_value_pattern is not None and int.from_bytes(packed, "big") == point.no_value_pattern:
        raise ValueError(f"{point.key}: {value!r} encodes to the no-value sentinel")
    return _registers_from_bytes(packed, point.word_order, point.byte_order)


def _mask_write(point: Point, value: bool) -> MaskWrite:
    """Masks that set or clear the point's bit; ``bit`` counts in the byte-order corrected register,
    so on a byte-swapped device bit 0 is the wire register's bit 8."""
    assert point.bit is not None
    wire_bit = point.bit if point.byte_order is ByteOrder.BIG else (point.bit + 8) % 16
    mask = 1 << wire_bit
    return MaskWrite(and_mask=0xFFFF ^ mask, or_mask=mask if value else 0)


def _unscale(point: Point, value: Value) -> int | float:
    """Engineering value -> raw number of the point's data type, range checked."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{point.key}: needs a number, got {value!r}")
    integer = point.data_type.is_integer
    if integer and point.scale == 1.0 and point.offset == 0.0 and isinstance(value, Integral):
        raw: int | float = int(value)  # exact, even for integers a float cannot hold
    else:
        raw = _float_raw(point, value)
        if integer:
            raw = round(raw)
    low, high = _RANGES.get(point.data_type, (-math.inf, math.inf))
    if not low <= raw <= high:
        raise ValueError(f"{point.key}: {value!r} gives raw {raw}, outside {point.data_type.name} {low}..{high}")
    return raw


def _float_raw(point: Point, value: int | float) -> float:
    try:
        raw = (float(value) - point.offset) / point.scale
    except OverflowError:
        raw = math.inf
    if not math.isfinite(raw):
        raise ValueError(f"{point.key}: cannot write {value!r} (not finite once unscaled)")
    return raw


def _registers_from_bytes(packed: bytes, word_order: WordOrder, byte_order: ByteOrder) -> list[int]:
    """Big-endian value bytes -> register values in the device's word and byte order."""
    words = [packed[i : i + 2] for i in range(0, len(packed), 2)]
    if word_order is WordOrder.LITTLE:
        words.reverse()
    if byte_order is ByteOrder.LITTLE:
        words = [word[::-1] for word in words]
    return [int.from_bytes(word, "big") for word in words]
