"""Block decoding and write encoding: orders, scaling, sentinels, BCD, bits, and a slow reference."""

from __future__ import annotations

import itertools
import math
import random
import struct

import numpy as np
import pytest

from drivers.modbus.codec import BlockDecoder, Decoded, Fault, MaskWrite, decode_block, encode_write
from drivers.modbus.planner import ReadBlock, plan_reads
from drivers.modbus.points import ByteOrder, DataType, Function, Point, WordOrder

H = Function.HOLDING
ORDERS = list(itertools.product(WordOrder, ByteOrder))
EXTREMES: dict[DataType, list[float]] = {
    DataType.INT16: [-32768, -1, 0, 1, 32767],
    DataType.UINT16: [0, 1, 0x8000, 65535],
    DataType.INT32: [-(1 << 31), -70000, 0, 70000, (1 << 31) - 1],
    DataType.UINT32: [0, 65536, 0x12345678, (1 << 32) - 1],
    DataType.FLOAT32: [0.0, -1.5, 21.25, 3.4e38, -1e-30],
    DataType.FLOAT64: [0.0, -1.5, math.pi, 1e300, -5e-324],
    DataType.BCD16: [0, 7, 1234, 9999],
    DataType.BCD32: [0, 10, 12345678, 99999999],
}


def single(point: Point) -> ReadBlock:
    return ReadBlock(point.function, point.address, point.count, (point,))


def decode_one(point: Point, registers: list[int]) -> Decoded:
    return decode_block(single(point), registers)[point.key]


def layout(pattern: int, point: Point) -> list[int]:
    """Registers carrying a raw big-endian ``pattern`` in the point's word and byte order."""
    words = [(pattern >> (16 * i)) & 0xFFFF for i in reversed(range(point.count))]
    if point.word_order is WordOrder.LITTLE:
        words.reverse()
    if point.byte_order is ByteOrder.LITTLE:
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    return words


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("word_order, byte_order", ORDERS)
@pytest.mark.parametrize("data_type", list(EXTREMES))
def test_round_trip_every_type_and_order(data_type: DataType, word_order: WordOrder, byte_order: ByteOrder) -> None:
    point = Point("p", H, 7, data_type, word_order=word_order, byte_order=byte_order)
    for value in EXTREMES[data_type]:
        decoded = decode_one(point, encode_write(point, value))
        expected = float(np.float32(value)) if data_type is DataType.FLOAT32 else value
        assert decoded == Decoded(expected)
        assert type(decoded.value) is type(expected)


@pytest.mark.parametrize("word_order, byte_order", ORDERS)
@pytest.mark.parametrize("data_type", [DataType.INT16, DataType.UINT32, DataType.BCD32, DataType.FLOAT32])
def test_scaled_round_trip_is_within_half_a_step(
    data_type: DataType, word_order: WordOrder, byte_order: ByteOrder
) -> None:
    point = Point("t", H, 0, data_type, word_order, byte_order, scale=0.1, offset=40.0)
    for value in (40.0, 55.55, 63.04, 120.0):
        decoded = decode_one(point, encode_write(point, value))
        assert isinstance(decoded.value, float)
        assert abs(decoded.value - value) <= 0.05 + 1e-9


def test_a_coil_is_written_as_a_coil_state() -> None:
    assert encode_write(Point("c", Function.COIL, 3, DataType.BOOL), True) is True


def test_a_register_bit_is_written_as_a_mask_write_never_as_a_coil() -> None:
    assert encode_write(Point("b", H, 3, DataType.BOOL, bit=4), False) == MaskWrite(and_mask=0xFFEF, or_mask=0)
    assert encode_write(Point("b", H, 3, DataType.BOOL, bit=15), True) == MaskWrite(and_mask=0x7FFF, or_mask=0x8000)


@pytest.mark.parametrize("byte_order", list(ByteOrder))
@pytest.mark.parametrize("bit", [0, 7, 8, 15])
def test_a_mask_write_changes_exactly_its_bit_as_the_decoder_numbers_it(byte_order: ByteOrder, bit: int) -> None:
    neighbours = [Point(f"b{n}", H, 0, DataType.BOOL, byte_order=byte_order, bit=n) for n in range(16)]
    block = plan_reads(neighbours)[0]
    for register in (0x0000, 0xFFFF, 0xA55A):
        before = decode_block(block, [register])
        for value in (True, False):
            mask = encode_write(neighbours[bit], value)
            assert isinstance(mask, MaskWrite)
            # What the device does with Mask Write Register (Modbus spec 6.16).
            after = decode_block(block, [(register & mask.and_mask) | (mask.or_mask & ~mask.and_mask)])
            assert after[f"b{bit}"].value is value
            assert {k: v for k, v in after.items() if k != f"b{bit}"} == \
                {k: v for k, v in before.items() if k != f"b{bit}"}


# --- wire layouts (the documented conventions) ----------------------------------------------


@pytest.mark.parametrize(
    "word_order, byte_order, registers",
    [
        (WordOrder.BIG, ByteOrder.BIG, [0x0102, 0x0304]),  # ABCD
        (WordOrder.LITTLE, ByteOrder.BIG, [0x0304, 0x0102]),  # CDAB
        (WordOrder.BIG, ByteOrder.LITTLE, [0x0201, 0x0403]),  # BADC
        (WordOrder.LITTLE, ByteOrder.LITTLE, [0x0403, 0x0201]),  # DCBA
    ],
)
def test_32_bit_layouts(word_order: WordOrder, byte_order: ByteOrder, registers: list[int]) -> None:
    point = Point("u", H, 0, DataType.UINT32, word_order, byte_order)
    assert encode_write(point, 0x01020304) == registers
    assert decode_one(point, registers).value == 0x01020304


def test_float_layouts() -> None:
    assert encode_write(Point("f", H, 0, DataType.FLOAT32), 1.0) == [0x3F80, 0x0000]
    little = Point("d", H, 0, DataType.FLOAT64, word_order=WordOrder.LITTLE)
    assert encode_write(little, 1.0) == [0, 0, 0, 0x3FF0]


def test_int_results_unless_scaled() -> None:
    assert decode_one(Point("i", H, 0, DataType.INT16), [0xFFFE]) == Decoded(-2)
    assert decode_one(Point("i", H, 0, DataType.INT16, scale=0.5), [0xFFFE]) == Decoded(-1.0)
    assert decode_one(Point("i", H, 0, DataType.INT16, offset=-273.15), [300]).value == pytest.approx(26.85)


# --- sentinels, BCD, non-finite -------------------------------------------------------------


@pytest.mark.parametrize("sentinel", [-32768, 0x8000])
def test_no_value_sentinel_in_either_notation(sentinel: int) -> None:
    point = Point("t", H, 0, DataType.INT16, scale=0.1, no_value_raw=sentinel)
    assert decode_one(point, [0x8000]) == Decoded(None, Fault.NO_VALUE)
    assert decode_one(point, [0x8001]).value == pytest.approx(-3276.7)


def test_sentinel_is_compared_after_word_and_byte_order() -> None:
    point = Point("e", H, 0, DataType.UINT32, WordOrder.LITTLE, ByteOrder.LITTLE, no_value_raw=0x7FFFFFFF)
    assert layout(0x7FFFFFFF, point) == [0xFFFF, 0xFF7F]
    assert decode_one(point, [0xFFFF, 0xFF7F]) == Decoded(None, Fault.NO_VALUE)
    assert decode_one(point, [0xFF7F, 0xFFFF]) == Decoded(0xFFFF7FFF)


def test_sentinel_wins_over_bad_bcd() -> None:
    point = Point("m", H, 0, DataType.BCD16, no_value_raw=0xFFFF)
    assert decode_one(point, [0xFFFF]) == Decoded(None, Fault.NO_VALUE)
    assert decode_one(point, [0xFFFE]) == Decoded(None, Fault.BAD_BCD)


def test_float_sentinel_pattern_versus_other_nans() -> None:
    point = Point("f", H, 0, DataType.FLOAT32, no_value_raw=0x7FC00000)
    assert decode_one(point, [0x7FC0, 0x0000]) == Decoded(None, Fault.NO_VALUE)
    assert decode_one(point, [0x7FC0, 0x0001]) == Decoded(None, Fault.NOT_FINITE)
    assert decode_one(point, [0xFF80, 0x0000]) == Decoded(None, Fault.NOT_FINITE)  # -inf


def test_bad_bcd_spoils_only_its_own_point() -> None:
    points = [Point("ok", H, 0, DataType.BCD16), Point("bad", H, 1, DataType.BCD32), Point("n", H, 3, DataType.UINT16)]
    (block,) = plan_reads(points)
    result = decode_block(block, [0x1234, 0x0012, 0x3A56, 9])
    assert result == {"ok": Decoded(1234), "bad": Decoded(None, Fault.BAD_BCD), "n": Decoded(9)}


def test_scaling_overflow_is_not_finite() -> None:
    point = Point("d", H, 0, DataType.FLOAT64, scale=1e10)
    assert decode_one(point, encode_write(Point("x", H, 0, DataType.FLOAT64), 1e300)) == Decoded(None, Fault.NOT_FINITE)


# --- bits ------------------------------------------------------------------------------------


def test_bits_of_a_status_word() -> None:
    status = 0b1010_0000_0000_0101
    points = [Point(f"b{bit}", H, 20, DataType.BOOL, bit=bit) for bit in range(16)]
    points.append(Point("word", H, 20, DataType.UINT16))
    (block,) = plan_reads(points)
    result = decode_block(block, [status])
    assert [bit for bit in range(16) if result[f"b{bit}"].value is True] == [0, 2, 13, 15]
    assert all(type(result[f"b{bit}"].value) is bool for bit in range(16))
    assert result["word"] == Decoded(status)


def test_bits_of_a_byte_swapped_status_word() -> None:
    point = Point("b", H, 0, DataType.UINT16, byte_order=ByteOrder.LITTLE, bit=0)
    assert decode_one(point, [0x0100]) == Decoded(True)
    assert decode_one(point, [0x0001]) == Decoded(False)


def test_coil_block_ignores_byte_padding() -> None:
    points = [Point("a", Function.COIL, 10, DataType.BOOL), Point("b", Function.COIL, 12, DataType.BOOL)]
    (block,) = plan_reads(points)
    assert decode_block(block, [True, False, True, False, False, False, False, False]) == {
        "a": Decoded(True),
        "b": Decoded(True),
    }


# --- block-level errors ---------------------------------------------------------------------


def test_wrong_response_length_raises() -> None:
    block = single(Point("f", H, 0, DataType.FLOAT32))
    with pytest.raises(ValueError, match="expected 2 registers"):
        decode_block(block, [1])
    with pytest.raises(ValueError, match="expected 1 bits"):
        decode_block(single(Point("c", Function.COIL, 0, DataType.BOOL)), [])


def test_register_out_of_range_raises() -> None:
    with pytest.raises(ValueError, match="0..65535"):
        decode_block(single(Point("u", H, 0, DataType.UINT16)), [70000])


# --- encode errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "point, value, message",
    [
        (Point("i", H, 0, DataType.INT16), 32768, "outside INT16"),
        (Point("u", H, 0, DataType.UINT16), -1, "outside UINT16"),
        (Point("s", H, 0, DataType.INT16, scale=0.1), 3276.75, "outside INT16"),
        (Point("b", H, 0, DataType.BCD16), 10000, "outside BCD16"),
        (Point("b", H, 0, DataType.BCD32), -1, "outside BCD32"),
        (Point("f", H, 0, DataType.FLOAT32), 1e39, "outside FLOAT32"),
        (Point("f", H, 0, DataType.FLOAT64), math.nan, "not finite"),
        (Point("f", H, 0, DataType.FLOAT64), math.inf, "not finite"),
        (Point("f", H, 0, DataType.FLOAT64, scale=1e-300), 1e300, "not finite"),
        (Point("i", H, 0, DataType.UINT32), True, "needs a number"),
        (Point("i", H, 0, DataType.UINT32), "5", "needs a number"),
        (Point("c", Function.COIL, 0, DataType.BOOL), 1, "needs a bool"),
        (Point("r", Function.INPUT, 0, DataType.INT16), 1, "read-only"),
        (Point("d", Function.DISCRETE, 0, DataType.BOOL), True, "read-only"),
        (Point("n", H, 0, DataType.INT16, no_value_raw=32767), 32767, "sentinel"),
    ],
)
def test_unrepresentable_writes_raise(point: Point, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_write(point, value)  # type: ignore[arg-type]


def test_write_rounds_to_nearest_raw_count() -> None:
    point = Point("t", H, 0, DataType.INT16, scale=0.1)
    assert encode_write(point, 21.5) == [215]
    assert encode_write(point, 21.54) == [215]
    assert encode_write(point, -0.06) == [0xFFFF]


def test_large_uint32_written_exactly() -> None:
    assert encode_write(Point("u", H, 0, DataType.UINT32), (1 << 32) - 1) == [0xFFFF, 0xFFFF]


# --- a full block against a slow reference decoder ------------------------------------------


STRUCT_FORMATS = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.FLOAT32: ">f",
    DataType.FLOAT64: ">d",
}


def reference_decode(point: Point, registers: list[int], block_start: int) -> Decoded:
    """Straightforward per-point decoder with struct, independent of the numpy implementation."""
    words = registers[point.address - block_start : point.end - block_start]
    if point.byte_order is ByteOrder.LITTLE:
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    if point.bit is not None:
        return Decoded(bool((words[0] >> point.bit) & 1))
    if point.word_order is WordOrder.LITTLE:
        words = words[::-1]
    data = b"".join(struct.pack(">H", w) for w in words)
    pattern = int.from_bytes(data, "big")
    if point.no_value_raw is not None and pattern == point.no_value_raw % (1 << (8 * len(data))):
        return Decoded(None, Fault.NO_VALUE)
    if point.data_type in (DataType.BCD16, DataType.BCD32):
        digits = f"{pattern:0{2 * len(data)}x}"
        if not digits.isdigit():
            return Decoded(None, Fault.BAD_BCD)
        raw: float = int(digits)
    else:
        raw = struct.unpack(STRUCT_FORMATS[point.data_type], data)[0]
    scaled = float(raw) * point.scale + point.offset
    if not math.isfinite(scaled):
        return Decoded(None, Fault.NOT_FINITE)
    if point.data_type.is_integer and point.scale == 1.0 and point.offset == 0.0:
        return Decoded(int(raw))
    return Decoded(scaled)


def random_point(rng: random.Random, index: int, block_count: int) -> Point:
    """Any register point: bits of status words, every numeric type, order, scaling, sentinel."""
    numeric = [t for t in DataType if t is not DataType.BOOL]
    if rng.random() < 0.15:
        data_type = rng.choice([DataType.BOOL, DataType.UINT16, DataType.INT16])
        address, byte_order = rng.randrange(block_count), rng.choice(list(ByteOrder))
        return Point(f"p{index}", H, address, data_type, byte_order=byte_order, bit=rng.randrange(16))
    data_type = rng.choice(numeric)
    scale, offset = rng.choice([(1.0, 0.0), (1.0, 0.0), (0.1, 0.0), (0.01, -40.0), (2.5, 1000.0)])
    sentinel = None
    if rng.random() < 0.3:
        sentinel = rng.choice([0, 0xFFFF, 0x7FFF, -1]) if data_type.registers == 1 else rng.choice([0, -1, 0x7FC00000])
    return Point(
        f"p{index}",
        H,
        rng.randrange(block_count - data_type.registers + 1),
        data_type,
        rng.choice(list(WordOrder)),
        rng.choice(list(ByteOrder)),
        scale,
        offset,
        no_value_raw=sentinel,
    )


def random_registers(rng: random.Random, points: list[Point], count: int) -> list[int]:
    """Random words, with some points overwritten by their sentinel or a valid BCD value."""
    registers = [rng.randrange(1 << 16) for _ in range(count)]
    for point in points:
        if point.bit is not None or rng.random() < 0.5:
            continue
        if point.no_value_pattern is not None and rng.random() < 0.5:
            registers[point.address : point.end] = layout(point.no_value_pattern, point)
        elif point.data_type in (DataType.BCD16, DataType.BCD32):
            digits = rng.randrange(10 ** (4 * point.count))
            registers[point.address : point.end] = layout(int(str(digits), 16), point)
    return registers


@pytest.mark.parametrize("seed", range(20))
def test_full_block_matches_reference_decoder(seed: int) -> None:
    rng = random.Random(seed)
    points = [random_point(rng, index, 125) for index in range(70)]
    points.append(Point("last", H, 121, DataType.FLOAT64))  # a point ending exactly on the limit
    block = ReadBlock(H, 0, 125, tuple(points))
    decoder = BlockDecoder(block)
    for _ in range(5):
        registers = random_registers(rng, points, 125)
        result = decoder.decode(registers)
        assert list(result) == [p.key for p in points]
        for point in points:
            expected = reference_decode(point, registers, 0)
            assert result[point.key] == expected, point
            assert type(result[point.key].value) is type(expected.value), point


def test_reference_sees_every_outcome() -> None:
    """Guard that the randomised comparison exercises every fault and every value type."""
    outcomes: set[object] = set()
    for seed in range(20):
        rng = random.Random(seed)
        points = [random_point(rng, index, 125) for index in range(70)]
        registers = random_registers(rng, points, 125)
        for point in points:
            decoded = reference_decode(point, registers, 0)
            outcomes.add(decoded.fault or type(decoded.value))
    assert outcomes == {Fault.NO_VALUE, Fault.BAD_BCD, Fault.NOT_FINITE, int, float, bool}


def test_blocks_of_one_shape_share_their_decoding_layout_and_each_decodes_under_its_own_names() -> None:
    def device_block(prefix: str, scale: float = 0.1) -> ReadBlock:
        return ReadBlock(H, 0, 4, (Point(f"{prefix}_temp", H, 0, DataType.INT16, scale=scale),
                                   Point(f"{prefix}_energy", H, 2, DataType.UINT32)))

    first, second, other = BlockDecoder(device_block("s1")), BlockDecoder(device_block("s2")), \
        BlockDecoder(device_block("s3", scale=1.0))
    assert first._groups is second._groups and first._groups is not other._groups
    raw = [0xFF38, 0, 0x0001, 0x0002]  # -200 -> -20.0; 0x00010002 = 65538
    assert second.decode(raw) == {"s2_temp": Decoded(-20.0), "s2_energy": Decoded(65538)}
    assert other.decode(raw)["s3_temp"] == Decoded(-200)


@pytest.mark.parametrize("seed", range(10))
def test_points_in_address_order_read_straight_from_the_wire_bytes_match_the_reference(seed: int) -> None:
    # Big-endian points without overlaps are unpacked from the wire bytes with pad bytes over the
    # gaps (no register gather): the commonest register map, checked against the same reference.
    rng = random.Random(seed)
    points: list[Point] = []
    address = rng.choice([0, 2])
    while True:
        point = random_point(rng, len(points), 125)
        if point.bit is not None:
            continue
        if address + point.count > 125:
            break
        point = Point(point.key, H, address, point.data_type, scale=point.scale, offset=point.offset,
                      no_value_raw=point.no_value_raw)
        points.append(point)
        address = point.end + rng.choice([0, 0, 1, 3])
    decoder = BlockDecoder(ReadBlock(H, 0, 125, tuple(points)))
    assert decoder._groups.gather is None  # the direct path is the one under test
    for _ in range(5):
        registers = random_registers(rng, points, 125)
        result = decoder.decode(registers)
        for point in points:
            expected = reference_decode(point, registers, 0)
            assert result[point.key] == expected, point
            assert type(result[point.key].value) is type(expected.value), point
