"""Decode whole read blocks with numpy, and encode single values for writes.

Byte and word order (see ``drivers.modbus.points`` for the full convention): registers arrive
big-endian; ``byte_order=LITTLE`` swaps the two bytes inside each register; for 32/64-bit values
``word_order=BIG`` puts the most significant register first (ABCD), ``LITTLE`` the least
significant first (CDAB).

Decoding is vectorised because a poller decodes the same blocks every cycle: every ordering is a
permutation of the block's bytes, so a ``BlockDecoder`` precomputes, once per block, one byte
index matrix per data type that puts each point's bytes in big-endian order. Decoding is then a
gather and a dtype view per data type (a handful of numpy calls for a 125-register block,
whatever the number of points), plus the vectorised sentinel, BCD, finiteness and scaling steps.

A bad point never spoils the block: each point gets a ``Decoded`` with either a value or a
``Fault``. Only block-level contract violations (a response of the wrong length) raise.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import Enum

import numpy as np

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


# Big-endian numpy dtype of each register type's bytes once put in most-significant-first order.
_DTYPES: dict[DataType, str] = {
    DataType.INT16: ">i2",
    DataType.UINT16: ">u2",
    DataType.INT32: ">i4",
    DataType.UINT32: ">u4",
    DataType.FLOAT32: ">f4",
    DataType.FLOAT64: ">f8",
    DataType.BCD16: ">u2",
    DataType.BCD32: ">u4",
}
_BCD_DIGITS = {DataType.BCD16: 4, DataType.BCD32: 8}
_FAULTS = {fault: Decoded(None, fault) for fault in Fault}
_STRUCT_FORMATS: dict[DataType, str] = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.FLOAT32: ">f",
    DataType.FLOAT64: ">d",
    DataType.BCD16: ">H",
    DataType.BCD32: ">I",
}
_RANGES: dict[DataType, tuple[float, float]] = {
    DataType.INT16: (-(1 << 15), (1 << 15) - 1),
    DataType.UINT16: (0, (1 << 16) - 1),
    DataType.INT32: (-(1 << 31), (1 << 31) - 1),
    DataType.UINT32: (0, (1 << 32) - 1),
    DataType.BCD16: (0, 9999),
    DataType.BCD32: (0, 99_999_999),
    DataType.FLOAT32: (-float(np.finfo(np.float32).max), float(np.finfo(np.float32).max)),
}


def engineering_range(data_type: DataType, scale: float, offset: float) -> tuple[float, float]:
    """The lowest and highest engineering values a point of ``data_type`` can hold, with its scaling
    (``raw * scale + offset``); infinite for float64."""
    low, high = _RANGES.get(data_type, (-math.inf, math.inf))
    ends = sorted((low * scale + offset, high * scale + offset))
    return ends[0], ends[1]


class _BitGroup:
    """Register bits (status words) of one block: gather each register, shift, mask."""

    def __init__(self, points: list[Point], positions: list[int], block_start: int) -> None:
        self.positions = positions
        self.byte_index = _byte_index(points, block_start)
        self.bits = np.array([p.bit for p in points], dtype=np.uint16)

    def decode(self, payload: np.ndarray) -> list[Decoded]:
        registers = payload[self.byte_index].view(">u2")[:, 0]
        return [Decoded(value) for value in ((registers >> self.bits) & 1).astype(bool).tolist()]


class _ValueGroup:
    """Points of one numeric data type in one block, with everything decode needs precomputed."""

    def __init__(self, data_type: DataType, points: list[Point], positions: list[int], block_start: int) -> None:
        self.positions = positions
        self.byte_index = _byte_index(points, block_start)
        self.dtype = _DTYPES[data_type]
        self.pattern_dtype = f">u{2 * data_type.registers}"
        self.bcd_digits = _BCD_DIGITS.get(data_type)
        self.scale = np.array([p.scale for p in points], dtype=np.float64)
        self.offset = np.array([p.offset for p in points], dtype=np.float64)
        # Integer counts read without scaling stay exact Python ints; everything else is a float.
        self.as_int = [data_type.is_integer and p.scale == 1.0 and p.offset == 0.0 for p in points]
        self.any_int = any(self.as_int)
        sentinels = [p.no_value_pattern for p in points]
        self.has_sentinel = np.array([s is not None for s in sentinels], dtype=bool)
        self.sentinel = np.array([s or 0 for s in sentinels], dtype=np.uint64)
        self.any_sentinel = bool(self.has_sentinel.any())

    def decode(self, payload: np.ndarray) -> list[Decoded]:
        gathered = payload[self.byte_index]  # fancy indexing copies: C-contiguous, safe to view
        pattern = gathered.view(self.pattern_dtype)[:, 0]
        bad_bcd = None
        if self.bcd_digits is None:
            raw = gathered.view(self.dtype)[:, 0]
        else:
            raw, bad_bcd = _bcd(pattern, self.bcd_digits)
        with np.errstate(all="ignore"):  # signalling NaNs and overflow are reported per point
            scaled = raw.astype(np.float64) * self.scale + self.offset
        values = self._values(raw, scaled)
        faults = self._faults(pattern, bad_bcd, scaled)
        if faults is None:
            return [Decoded(value) for value in values]
        return [Decoded(value) if fault is None else _FAULTS[fault] for value, fault in zip(values, faults)]

    def _values(self, raw: np.ndarray, scaled: np.ndarray) -> list[Value]:
        floats: list[Value] = scaled.tolist()
        if not self.any_int:
            return floats
        return [i if as_int else f for i, f, as_int in zip(raw.tolist(), floats, self.as_int)]

    def _faults(
        self, pattern: np.ndarray, bad_bcd: np.ndarray | None, scaled: np.ndarray
    ) -> list[Fault | None] | None:
        """Per-point faults, or None when every point is fine (the common case, kept cheap).

        Later masks overwrite earlier ones, so a sentinel wins over bad BCD, which wins over NaN.
        """
        no_value = None
        if self.any_sentinel:
            no_value = self.has_sentinel & (pattern.astype(np.uint64) == self.sentinel)
        faults: list[Fault | None] | None = None
        masks = ((~np.isfinite(scaled), Fault.NOT_FINITE), (bad_bcd, Fault.BAD_BCD), (no_value, Fault.NO_VALUE))
        for mask, fault in masks:
            if mask is not None and mask.any():
                faults = faults or [None] * len(scaled)
                for index in np.flatnonzero(mask).tolist():
                    faults[index] = fault
        return faults


class _Layout:
    """What decoding a block needs apart from its points' names: the same for every block of one
    shape, so every device of one register map (a template, a fleet of one PLC model) shares one."""

    __slots__ = ("bit_offsets", "groups", "from_flat")

    def __init__(self, block: ReadBlock) -> None:
        is_bit = block.function.is_bit
        self.bit_offsets = np.array([p.address - block.start for p in block.points], dtype=np.intp) if is_bit else None
        self.groups = [] if is_bit else _register_groups(block)
        # Groups decode in their own order; this maps each block position to its flat result.
        flat_positions = [position for group in self.groups for position in group.positions]
        self.from_flat = sorted(range(len(flat_positions)), key=flat_positions.__getitem__)


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
    Only the names are the decoder's own; the rest is the shared layout of the block's shape."""

    def __init__(self, block: ReadBlock) -> None:
        self.block = block
        self._keys = [point.key for point in block.points]
        layout = _layout(block)
        self._bit_offsets, self._groups, self._from_flat = layout.bit_offsets, layout.groups, layout.from_flat

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
        bits = np.asarray(raw[: self.block.count], dtype=bool)
        values = bits[self._bit_offsets].tolist()
        return {key: Decoded(value) for key, value in zip(self._keys, values)}

    def _decode_registers(self, raw: Sequence[int] | Sequence[bool]) -> dict[str, Decoded]:
        payload = _register_bytes(raw, self.block.count)
        flat = [result for group in self._groups for result in group.decode(payload)]
        return {key: flat[index] for key, index in zip(self._keys, self._from_flat)}


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
        if not isinstance(value, bool | np.bool_):
            raise ValueError(f"{point.key}: boolean point needs a bool, got {value!r}")
        if point.bit is None:
            return bool(value)
        return _mask_write(point, bool(value))
    raw = _unscale(point, value)
    if point.data_type in _BCD_DIGITS:
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


def _register_groups(block: ReadBlock) -> list[_BitGroup | _ValueGroup]:
    """Bucket the block's points by decode kind: one bucket per data type, one for register bits."""
    buckets: dict[DataType | None, tuple[list[Point], list[int]]] = {}
    for position, point in enumerate(block.points):
        kind = None if point.bit is not None else point.data_type
        points, positions = buckets.setdefault(kind, ([], []))
        points.append(point)
        positions.append(position)
    return [
        _BitGroup(points, positions, block.start)
        if kind is None
        else _ValueGroup(kind, points, positions, block.start)
        for kind, (points, positions) in buckets.items()
    ]


def _byte_index(points: list[Point], block_start: int) -> np.ndarray:
    """Per point, the block byte offsets of its value in big-endian (most significant first) order.

    Word order reverses the register sequence; byte order swaps the pair inside each register.
    """
    width = points[0].count
    first = np.array([p.address - block_start for p in points], dtype=np.intp)
    word_little = np.array([p.word_order is WordOrder.LITTLE for p in points])
    byte_little = np.array([p.byte_order is ByteOrder.LITTLE for p in points])
    ascending = np.arange(width)
    registers = first[:, None] + np.where(word_little[:, None], ascending[::-1], ascending)
    within = np.where(byte_little[:, None], [1, 0], [0, 1])
    return (2 * registers[:, :, None] + within[:, None, :]).reshape(len(points), 2 * width)


def _register_bytes(raw: Sequence[int] | Sequence[bool], count: int) -> np.ndarray:
    """The response as a flat uint8 array of wire bytes (each register big-endian)."""
    if len(raw) != count:
        raise ValueError(f"expected {count} registers, got {len(raw)}")
    registers = np.asarray(raw, dtype=np.int64)
    if ((registers < 0) | (registers > 0xFFFF)).any():
        raise ValueError("register values must be in 0..65535")
    return registers.astype(">u2").view(np.uint8)


def _bcd(pattern: np.ndarray, digits: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode BCD patterns; also return which points hold a nibble above 9."""
    shifts = np.arange(0, 4 * digits, 4, dtype=np.uint64)
    nibbles = (pattern.astype(np.uint64)[:, None] >> shifts) & np.uint64(0xF)
    bad = (nibbles > 9).any(axis=1)
    value = nibbles.astype(np.int64) @ (10 ** np.arange(digits, dtype=np.int64))
    return value, bad


def _unscale(point: Point, value: Value) -> int | float:
    """Engineering value -> raw number of the point's data type, range checked."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{point.key}: needs a number, got {value!r}")
    integer = point.data_type.is_integer
    if integer and point.scale == 1.0 and point.offset == 0.0 and isinstance(value, int | np.integer):
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
