"""Is a 32/64-bit value decoded in the right word order? A commissioning engineer's first question.

A heat meter whose manual does not say which register of a float comes first decodes either to
its value or to nonsense, and the nonsense is a perfectly valid number (``-1.485e-20 kW``,
``4.26e+33 GJ``) that the gateway would publish with quality good. Nothing on the wire says which
is right; what can be said is that one order gives a number no heating station measures and the
other gives one it does. That is a hint for a person (``heatgw read``), never a correction the
gateway makes on its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from drivers.modbus.codec import Decoded, decode_block
from drivers.modbus.planner import ReadBlock
from drivers.modbus.points import DataType, Point, WordOrder

FLOAT_MAGNITUDES = (1e-10, 1e10)
"""Non-zero floats outside this are not measurements (a word-swapped float lands there nearly
always: its exponent comes from the other word's mantissa bits)."""
WORD = 65_536


def decode_point(point: Point, registers: Sequence[int]) -> Decoded:
    """``point`` decoded from its own registers (``registers`` starts at its address)."""
    block = ReadBlock(point.function, point.address, point.count, (point,))
    return decode_block(block, list(registers[:point.count]))[point.key]


def word_order_hint(point: Point, registers: Sequence[int], plausible: tuple[float, float] | None = None) -> str | None:
    """``looks like word_order: little`` when ``point`` decodes implausibly from ``registers`` in
    its own word order and plausibly in the other; else None.

    ``plausible`` is the tag's configured range, when it has one: a value outside it is implausible.
    So is a float that is non-finite or of a magnitude outside ``FLOAT_MAGNITUDES`` (a denormal
    lies inside any range around 0), and an integer when it is a non-zero whole multiple of 65,536 (a small
    counter or reading with its words swapped, whose other order then gives the small value).
    """
    if point.is_boolean or point.data_type.registers < 2 or point.data_type is DataType.BCD32:
        return None
    other = replace(point, word_order=WordOrder.LITTLE if point.word_order is WordOrder.BIG else WordOrder.BIG)
    if _plausible(point, registers, plausible) or not _plausible(other, registers, plausible):
        return None
    return f"looks like word_order: {other.word_order.value}"


def _plausible(point: Point, registers: Sequence[int], plausible: tuple[float, float] | None) -> bool:
    decoded = decode_point(point, registers)
    value = decoded.value
    if not decoded.ok or value is None or isinstance(value, bool):
        return False
    if plausible is not None and not plausible[0] <= value <= plausible[1]:
        return False
    if point.data_type.is_integer:
        raw = round((value - point.offset) / point.scale)
        return raw == 0 or raw % WORD != 0  # k x 65,536: a small value with its words swapped
    return math.isfinite(value) and (value == 0 or FLOAT_MAGNITUDES[0] <= abs(value) <= FLOAT_MAGNITUDES[1])
