"""Read planning: request limits, gaps, overlaps, and optimality against a brute-force search."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

import pytest

from drivers.modbus.planner import ReadBlock, plan_reads, split_block
from drivers.modbus.points import DataType, Function, Point

H = Function.HOLDING


def reg(key: str, address: int, data_type: DataType = DataType.INT16, function: Function = H, **kwargs) -> Point:
    return Point(key, function, address, data_type, **kwargs)


def coil(key: str, address: int) -> Point:
    return Point(key, Function.COIL, address, DataType.BOOL)


def spans(blocks: Sequence[ReadBlock]) -> list[tuple[str, int, int]]:
    return [(block.function.name, block.start, block.count) for block in blocks]


def cost(blocks: Sequence[ReadBlock]) -> tuple[int, int]:
    return len(blocks), sum(block.count for block in blocks)


def assert_valid_plan(
    points: Sequence[Point], blocks: Sequence[ReadBlock], max_registers: int, max_bits: int, max_gap: int
) -> None:
    """Every point read exactly once, whole, inside limits, with no gap longer than allowed."""
    planned = [point for block in blocks for point in block.points]
    assert sorted(p.key for p in planned) == sorted({p.key for p in points})
    for block in blocks:
        limit = max_bits if block.function.is_bit else max_registers
        assert block.count <= limit
        assert block.start == min(p.address for p in block.points)
        assert block.end == max(p.end for p in block.points)
        assert longest_gap(block.function, block.start, block.end, points) <= max_gap


def longest_gap(function: Function, start: int, end: int, points: Sequence[Point]) -> int:
    """Longest run of addresses in [start, end) that no point of ``function`` occupies."""
    mapped = {a for p in points if p.function is function for a in range(p.address, p.end)}
    longest = run = 0
    for address in range(start, end):
        run = 0 if address in mapped else run + 1
        longest = max(longest, run)
    return longest


# --- point validation (what the planner and codec may rely on) ------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"data_type": DataType.FLOAT32, "bit": 1}, "only valid with BOOL, INT16 or UINT16"),
        ({"data_type": DataType.UINT16, "bit": 16}, "bit must be an int in 0..15"),
        ({"data_type": DataType.BOOL}, "needs bit=0..15"),
        ({"function": Function.COIL, "data_type": DataType.INT16}, "use BOOL"),
        ({"function": Function.COIL, "data_type": DataType.BOOL, "bit": 0}, "already one bit"),
        ({"scale": 0.0}, "non-zero"),
        ({"scale": math.nan}, "finite"),
        ({"offset": math.inf}, "finite"),
        ({"data_type": DataType.BOOL, "bit": 0, "scale": 2.0}, "cannot be scaled"),
        ({"data_type": DataType.UINT16, "bit": 0, "no_value_raw": 0}, "sentinel"),
        ({"no_value_raw": 0x10000}, "does not fit in 16 bits"),
        ({"no_value_raw": -32769}, "does not fit in 16 bits"),
        ({"address": -1}, "address"),
        ({"address": True}, "address"),
        ({"address": 0xFFFF, "data_type": DataType.FLOAT32}, "past 65535"),
        ({"key": ""}, "non-empty"),
    ],
)
def test_invalid_points_are_rejected(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"key": "p", "function": H, "address": 0, "data_type": DataType.INT16, **kwargs}
    with pytest.raises(ValueError, match=message):
        Point(**fields)  # type: ignore[arg-type]


def test_point_counts_and_sentinel_patterns() -> None:
    assert reg("d", 0, DataType.FLOAT64).count == 4
    assert reg("b", 0, DataType.BCD32).count == 2
    assert reg("s", 0, DataType.BOOL, bit=3).count == 1
    assert coil("c", 0).count == 1
    assert reg("n", 0, no_value_raw=-32768).no_value_pattern == 0x8000
    assert reg("n", 0, DataType.UINT32, no_value_raw=-1).no_value_pattern == 0xFFFFFFFF


# --- basic shapes ---------------------------------------------------------------------------


def test_no_points_no_requests() -> None:
    assert plan_reads([]) == []


def test_contiguous_points_share_one_request() -> None:
    points = [reg("a", 0, DataType.FLOAT32), reg("b", 2), reg("c", 3, DataType.FLOAT64)]
    assert spans(plan_reads(points)) == [("HOLDING", 0, 7)]


def test_gap_within_max_gap_is_bridged_and_longer_gap_is_not() -> None:
    points = [reg("a", 0), reg("b", 4), reg("c", 20)]
    assert spans(plan_reads(points, max_gap=3)) == [("HOLDING", 0, 5), ("HOLDING", 20, 1)]
    assert spans(plan_reads(points, max_gap=15)) == [("HOLDING", 0, 21)]


def test_max_gap_zero_never_reads_unmapped_registers() -> None:
    points = [reg("a", 0), reg("b", 1, DataType.UINT32), reg("c", 4)]
    assert spans(plan_reads(points, max_gap=0)) == [("HOLDING", 0, 3), ("HOLDING", 4, 1)]


def test_functions_are_planned_separately_in_function_code_order() -> None:
    points = [reg("h", 0), reg("i", 0, function=Function.INPUT), coil("c", 0), reg("h2", 1)]
    assert spans(plan_reads(points)) == [("COIL", 0, 1), ("HOLDING", 0, 2), ("INPUT", 0, 1)]


# --- limits ---------------------------------------------------------------------------------


def test_limit_exactly_hit_is_one_request() -> None:
    points = [reg(f"r{a}", a) for a in range(125)]
    assert spans(plan_reads(points)) == [("HOLDING", 0, 125)]
    assert len(plan_reads([*points, reg("r125", 125)])) == 2


def test_multi_register_point_ending_on_the_limit_stays_in_the_block() -> None:
    points = [reg(f"r{a}", a) for a in range(123)] + [reg("f", 123, DataType.FLOAT32)]
    assert spans(plan_reads(points)) == [("HOLDING", 0, 125)]


def test_multi_register_point_crossing_the_limit_moves_whole_to_the_next_block() -> None:
    points = [reg(f"r{a}", a) for a in range(124)] + [reg("f", 124, DataType.FLOAT32)]
    blocks = plan_reads(points)
    assert cost(blocks) == (2, 126)
    assert_valid_plan(points, blocks, 125, 2000, 16)


def test_point_longer_than_the_limit_is_rejected() -> None:
    with pytest.raises(ValueError, match="exceed the request limit"):
        plan_reads([reg("d", 0, DataType.FLOAT64)], max_registers=3)


def test_bit_limit_is_2000() -> None:
    assert spans(plan_reads([coil("a", 0), coil("b", 1999)], max_gap=2000)) == [("COIL", 0, 2000)]
    assert len(plan_reads([coil("a", 0), coil("b", 2000)], max_gap=2000)) == 2


@pytest.mark.parametrize(
    "kwargs", [{"max_registers": 0}, {"max_registers": 126}, {"max_bits": 2001}, {"max_gap": -1}]
)
def test_limits_outside_the_protocol_are_rejected(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        plan_reads([reg("a", 0)], **kwargs)


# --- overlaps, duplicates, long points ------------------------------------------------------


def test_bits_of_a_status_word_and_the_word_itself_read_one_register() -> None:
    points = [reg(f"bit{b}", 10, DataType.BOOL, bit=b) for b in range(16)] + [reg("word", 10, DataType.UINT16)]
    (block,) = plan_reads(points)
    assert (block.start, block.count, len(block.points)) == (10, 1, 17)


def test_exact_duplicates_are_read_once() -> None:
    point = reg("a", 5, DataType.FLOAT32)
    (block,) = plan_reads([point, point])
    assert block.points == (point,)


def test_same_key_for_different_points_is_rejected() -> None:
    with pytest.raises(ValueError, match="share the key"):
        plan_reads([reg("a", 5), reg("a", 6)])


def test_different_keys_for_the_same_register_are_both_kept() -> None:
    (block,) = plan_reads([reg("raw", 5, DataType.UINT16), reg("signed", 5)])
    assert {p.key for p in block.points} == {"raw", "signed"}


def test_gap_is_measured_from_the_furthest_end_not_the_previous_point() -> None:
    # "inner" ends at 2 but the float64 covers up to 4: the real gap before "next" is 1, not 3.
    points = [reg("d", 0, DataType.FLOAT64), reg("inner", 1), reg("next", 5)]
    assert spans(plan_reads(points, max_gap=1)) == [("HOLDING", 0, 6)]


def test_overlapping_points_that_cannot_share_a_block_get_overlapping_blocks() -> None:
    points = [reg("a", 0, DataType.FLOAT32), reg("b", 1, DataType.FLOAT32)]
    assert spans(plan_reads(points, max_registers=2)) == [("HOLDING", 0, 2), ("HOLDING", 1, 2)]


def test_among_fewest_requests_the_fewest_registers_win() -> None:
    # Packing the first block greedily ({0, 9} then {11, 12}) reads 12 registers; {0} and
    # {9, 11, 12} is also two requests but reads only 5.
    points = [reg("a", 0), reg("b", 9), reg("c", 11), reg("d", 12)]
    blocks = plan_reads(points, max_registers=10, max_gap=10)
    assert spans(blocks) == [("HOLDING", 0, 1), ("HOLDING", 9, 4)]


# --- optimality against brute force ---------------------------------------------------------


def set_partitions(items: list[int]) -> Iterator[list[list[int]]]:
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in set_partitions(rest):
        yield [[first], *partition]
        for index in range(len(partition)):
            yield [*partition[:index], [first, *partition[index]], *partition[index + 1 :]]


def brute_force_cost(points: list[Point], max_registers: int, max_bits: int, max_gap: int) -> tuple[int, int]:
    """Cheapest (requests, addresses) over every assignment of points to blocks."""
    best = (math.inf, math.inf)
    for partition in set_partitions(list(range(len(points)))):
        total = (len(partition), 0)
        for part in partition:
            members = [points[i] for i in part]
            function = members[0].function
            start, end = min(p.address for p in members), max(p.end for p in members)
            limit = max_bits if function.is_bit else max_registers
            if any(p.function is not function for p in members) or end - start > limit:
                break
            if longest_gap(function, start, end, points) > max_gap:
                break
            total = (total[0], total[1] + end - start)
        else:
            best = min(best, total)
    return best


def random_map(rng: random.Random, size: int) -> list[Point]:
    shapes = [
        (H, DataType.INT16, None),
        (H, DataType.UINT32, None),
        (H, DataType.FLOAT64, None),
        (H, DataType.BOOL, 3),
        (Function.INPUT, DataType.FLOAT32, None),
        (Function.COIL, DataType.BOOL, None),
    ]
    points = []
    for index in range(size):
        function, data_type, bit = rng.choice(shapes)
        points.append(Point(f"p{index}", function, rng.randrange(12), data_type, bit=bit))
    return points


@pytest.mark.parametrize("seed", range(300))
def test_plan_matches_brute_force_optimum(seed: int) -> None:
    rng = random.Random(seed)
    points = random_map(rng, rng.randint(1, 7))
    max_registers, max_bits, max_gap = rng.randint(4, 9), rng.randint(1, 6), rng.randint(0, 3)
    blocks = plan_reads(points, max_registers=max_registers, max_bits=max_bits, max_gap=max_gap)
    assert_valid_plan(points, blocks, max_registers, max_bits, max_gap)
    assert cost(blocks) == brute_force_cost(points, max_registers, max_bits, max_gap)


def test_brute_force_sees_all_partitions() -> None:
    assert [sum(1 for _ in set_partitions(list(range(n)))) for n in range(1, 8)] == [1, 2, 5, 15, 52, 203, 877]


# --- splitting refused blocks ---------------------------------------------------------------


def test_split_halves_by_points_and_drops_the_gap() -> None:
    (block,) = plan_reads([reg("a", 0), reg("b", 1), reg("c", 10), reg("d", 11, DataType.FLOAT32)], max_gap=20)
    low, high = split_block(block)
    assert spans([low, high]) == [("HOLDING", 0, 2), ("HOLDING", 10, 3)]
    assert [p.key for p in low.points + high.points] == ["a", "b", "c", "d"]


def test_split_never_separates_points_sharing_a_register() -> None:
    points = [reg("d", 0, DataType.FLOAT64), reg("in", 2), reg("w", 4, DataType.UINT16)]
    points += [reg(f"b{b}", 4, DataType.BOOL, bit=b) for b in range(3)]
    (block,) = plan_reads(points)
    low, high = split_block(block)
    assert {p.key for p in low.points} == {"d", "in"}
    assert {p.key for p in high.points} == {"w", "b0", "b1", "b2"}


def test_unsplittable_block_comes_back_unchanged() -> None:
    (block,) = plan_reads([reg("w", 4, DataType.UINT16), reg("b", 4, DataType.BOOL, bit=1)])
    assert split_block(block) == [block]


def test_repeated_splitting_isolates_a_refused_register_in_log_rounds() -> None:
    points = [reg(f"r{a}", a) for a in range(0, 100, 3)]
    (block,) = plan_reads(points, max_gap=2)
    refused = 42  # the device rejects any read touching this register
    failing, rounds = [block], 0
    while any(len(b.points) > 1 for b in failing):
        failing = [half for b in failing for half in split_block(b) if half.start <= refused < half.end]
        rounds += 1
    assert [p.key for b in failing for p in b.points] == ["r42"]
    assert rounds <= math.ceil(math.log2(len(points)))
