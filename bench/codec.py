"""Decode throughput of one full 125-register block of mixed types (not run by the tests).

Run: ``.venv/bin/python bench/codec.py``. Reports points per second for a reused
``BlockDecoder`` (what a poller does) and for one-shot ``decode_block`` (decoder rebuilt each time).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from drivers.modbus.codec import BlockDecoder, decode_block
from drivers.modbus.planner import ReadBlock, plan_reads
from drivers.modbus.points import ByteOrder, DataType, Function, Point, WordOrder

_LAYOUT = [DataType.FLOAT32, DataType.INT16, DataType.UINT32, DataType.BCD16, DataType.UINT16, DataType.FLOAT64]


def mixed_block() -> ReadBlock:
    """Points packed into 125 registers, cycling through types and orders, plus status-word bits."""
    points: list[Point] = []
    address = 0
    while True:
        data_type = _LAYOUT[len(points) % len(_LAYOUT)]
        if address + data_type.registers > 120:
            break
        order = WordOrder.LITTLE if len(points) % 2 else WordOrder.BIG
        points.append(
            Point(f"p{len(points)}", Function.HOLDING, address, data_type, word_order=order, scale=0.1)
        )
        address += data_type.registers
    status = address
    points += [Point(f"s{bit}", Function.HOLDING, status, DataType.BOOL, bit=bit) for bit in range(16)]
    points.append(Point("tail", Function.HOLDING, 124, DataType.INT16, byte_order=ByteOrder.LITTLE))
    (block,) = plan_reads(points, max_gap=125)
    return block


def rate(block: ReadBlock, decode: Callable[[list[int]], object], seconds: float = 1.0) -> float:
    """Points decoded per second over roughly ``seconds`` of repeated decodes."""
    registers = np.random.default_rng(1).integers(0, 1 << 16, block.count).tolist()
    calls = 0
    began = time.perf_counter()
    while (elapsed := time.perf_counter() - began) < seconds:
        for _ in range(100):
            decode(registers)
        calls += 100
    return calls * len(block.points) / elapsed


def main() -> None:
    block = mixed_block()
    decoder = BlockDecoder(block)
    reused = rate(block, decoder.decode)
    one_shot = rate(block, lambda registers: decode_block(block, registers))
    print(f"{block.count} registers, {len(block.points)} points")
    print(f"reused BlockDecoder: {reused:,.0f} points/s ({1e6 * len(block.points) / reused:.0f} us/block)")
    print(f"one-shot decode_block: {one_shot:,.0f} points/s ({1e6 * len(block.points) / one_shot:.0f} us/block)")


if __name__ == "__main__":
    main()
