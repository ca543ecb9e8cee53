"""The word-order hint: a swapped 32-bit value is flagged with the order that reads plausibly, a right one never."""

from __future__ import annotations

import struct

import pytest

from drivers.modbus.plausibility import decode_point, word_order_hint
from drivers.modbus.points import DataType, Function, Point, WordOrder


def registers(fmt: str, value: float, swapped: bool = False) -> list[int]:
    """``value`` packed big-endian into registers, high word first (or last, when ``swapped``)."""
    packed = struct.pack(fmt, value)
    words = [int.from_bytes(packed[i:i + 2], "big") for i in range(0, len(packed), 2)]
    return words[::-1] if swapped else words


METER_POWER = Point("power", Function.HOLDING, 2, DataType.FLOAT32)


@pytest.mark.parametrize("value", [1485.3, -12.5, 4.26e6, 1e-3, 0.0, 85.25])
def test_a_float32_read_in_its_own_word_order_is_never_flagged(value: float) -> None:
    assert word_order_hint(METER_POWER, registers(">f", value)) is None


@pytest.mark.parametrize("value", [1485.3, -12.5, 4.26e6, 1e-3, 85.25])
def test_a_float32_with_its_words_swapped_is_flagged_with_the_other_order(value: float) -> None:
    swapped = registers(">f", value, swapped=True)
    assert word_order_hint(METER_POWER, swapped) == "looks like word_order: little"
    little = Point("power", Function.HOLDING, 2, DataType.FLOAT32, word_order=WordOrder.LITTLE)
    assert decode_point(little, swapped).value == pytest.approx(value, rel=1e-6)
    assert word_order_hint(little, swapped) is None


def test_a_float64_swapped_word_for_word_is_flagged() -> None:
    point = Point("energy", Function.HOLDING, 0, DataType.FLOAT64)
    assert word_order_hint(point, registers(">d", 123456.789, swapped=True)) == "looks like word_order: little"
    assert word_order_hint(point, registers(">d", 123456.789)) is None


def test_a_small_counter_with_its_words_swapped_is_flagged_a_large_one_is_not() -> None:
    counter = Point("energy", Function.INPUT, 0, DataType.UINT32, scale=0.01)
    assert word_order_hint(counter, registers(">I", 1234, swapped=True)) == "looks like word_order: little"
    assert word_order_hint(counter, registers(">I", 1234)) is None
    assert word_order_hint(counter, registers(">I", 700_000)) is None


def test_the_tags_range_decides_when_it_is_given() -> None:
    # 1e9 is a magnitude a float may have, but not a supply temperature in [0, 150].
    temperature = Point("t", Function.INPUT, 0, DataType.FLOAT32)
    words = [0x4E6E, 0x6B28]  # 1e9 high word first
    assert word_order_hint(temperature, words) is None
    assert word_order_hint(temperature, words, plausible=(0.0, 150.0)) is None  # neither order is a temperature
    warm = registers(">f", 72.5, swapped=True)
    assert word_order_hint(temperature, warm, plausible=(0.0, 150.0)) == "looks like word_order: little"


def test_sixteen_bit_values_bits_and_bcd_get_no_hint() -> None:
    for point in (Point("a", Function.HOLDING, 0, DataType.INT16), Point("b", Function.HOLDING, 0, DataType.BCD32),
                  Point("c", Function.HOLDING, 0, DataType.UINT16, bit=3)):
        assert word_order_hint(point, [0, 1]) is None
