"""Turn a list of points into the fewest Modbus read requests.

Every request costs a round trip (on RS-485 at 9600 baud, tens of milliseconds), so the planner
minimises the number of requests first and, among plans with that many requests, the number of
registers (or bits) read. Constraints:

* a block holds one function code and at most ``max_registers`` registers (protocol limit 125)
  or ``max_bits`` bits (protocol limit 2000);
* a point is never split across blocks;
* a block never bridges a *gap* (a run of addresses that no point occupies) longer than
  ``max_gap``: many devices answer "illegal data address" for unmapped registers, and those are
  configured with ``max_gap=0``.

Why the dynamic programme below is optimal
------------------------------------------
A plan is a set of blocks; each block reads the hull of the points assigned to it. If one block's
range contained another's, the inner block could be dropped, so an optimal plan has blocks whose
starts and ends are both strictly increasing. Then a point ``[a, b)`` that fits in any block also
fits in the *last block starting at or before a* (that block ends no earlier). Assigning every
point to that block gives each block a run of consecutive point start addresses, without changing
any block's range. Hence an optimal plan is a partition of the distinct start addresses, in order,
into consecutive groups, which the dynamic programme enumerates exactly: ``O(starts x window)``.
Gaps longer than ``max_gap`` can never be inside a block, so they cut the problem into
independent segments first.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby

from drivers.modbus.points import Function, Point

MAX_READ_REGISTERS = 125  # Modbus application protocol, functions 3 and 4
MAX_READ_BITS = 2000  # functions 1 and 2
DEFAULT_MAX_GAP = 16  # ~35 ms of extra data at 9600 baud: about what a saved round trip costs


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: ``count`` registers (or bits) from ``start``, and the points inside."""

    function: Function
    start: int
    count: int
    points: tuple[Point, ...]

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"block count must be positive, got {self.count}")
        keys = [point.key for point in self.points]
        if len(set(keys)) != len(keys):
            raise ValueError("points in a block must have distinct keys")
        for point in self.points:
            if point.function is not self.function:
                raise ValueError(f"{point.key}: {point.function.name} point in a {self.function.name} block")
            if point.address < self.start or point.end > self.end:
                raise ValueError(f"{point.key}: outside block [{self.start}, {self.end})")

    @property
    def end(self) -> int:
        """First address after the block."""
        return self.start + self.count


def plan_reads(
    points: Iterable[Point],
    max_registers: int = MAX_READ_REGISTERS,
    max_bits: int = MAX_READ_BITS,
    max_gap: int = DEFAULT_MAX_GAP,
) -> list[ReadBlock]:
    """Cover every point with the fewest requests, then the fewest registers/bits read.

    Blocks come out ordered by function code, then address. Points equal in every field are read
    once; two different points with the same key are a configuration error (``ValueError``), as is
    a point longer than the request limit.
    """
    _check_limits(max_registers, max_bits, max_gap)
    unique = _deduplicate(points)
    blocks: list[ReadBlock] = []
    for function in sorted({point.function for point in unique}, key=lambda f: f.value):
        same_function = sorted((p for p in unique if p.function is function), key=lambda p: p.address)
        limit = max_bits if function.is_bit else max_registers
        for segment in _segments(same_function, max_gap):
            blocks.extend(_optimal_blocks(function, segment, limit))
    return blocks


def split_block(block: ReadBlock) -> list[ReadBlock]:
    """Halve a block the device refused ("illegal data address") so the culprit can be isolated.

    The points are cut into two halves at a boundary between groups of overlapping points
    (points sharing a register cannot be separated usefully), and each half reads only its own
    hull, so gap registers are dropped on the first split. Repeating on whichever half still
    fails isolates one register group in ``log2(points)`` rounds. A block that cannot be split
    (one group of overlapping points) is returned unchanged as the only element.
    """
    clusters = _overlap_clusters(sorted(block.points, key=lambda p: p.address))
    if len(clusters) < 2:
        return [block]
    middle = len(clusters) // 2
    halves = ([p for c in clusters[:middle] for p in c], [p for c in clusters[middle:] for p in c])
    return [_hull_block(block.function, half) for half in halves]


def _check_limits(max_registers: int, max_bits: int, max_gap: int) -> None:
    if not 1 <= max_registers <= MAX_READ_REGISTERS:
        raise ValueError(f"max_registers must be in 1..{MAX_READ_REGISTERS}, got {max_registers}")
    if not 1 <= max_bits <= MAX_READ_BITS:
        raise ValueError(f"max_bits must be in 1..{MAX_READ_BITS}, got {max_bits}")
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, got {max_gap}")


def _deduplicate(points: Iterable[Point]) -> list[Point]:
    """Drop exact repeats (harmless), reject different points sharing a key (ambiguous results)."""
    by_key: dict[str, Point] = {}
    for point in points:
        seen = by_key.setdefault(point.key, point)
        if seen != point:
            raise ValueError(f"two different points share the key {point.key!r}")
    return list(by_key.values())


def _segments(points: Sequence[Point], max_gap: int) -> Iterable[list[Point]]:
    """Split address-sorted points wherever the unoccupied run between them exceeds ``max_gap``."""
    segment: list[Point] = []
    reach = 0
    for point in points:
        if segment and point.address - reach > max_gap:
            yield segment
            segment = []
        segment.append(point)
        reach = max(reach, point.end)
    if segment:
        yield segment


def _optimal_blocks(function: Function, points: list[Point], limit: int) -> list[ReadBlock]:
    """Optimal partition of one gap-free segment of address-sorted points (see module docstring)."""
    groups = [list(group) for _, group in groupby(points, key=lambda p: p.address)]
    starts = [group[0].address for group in groups]
    ends = [max(p.end for p in group) for group in groups]
    for group, start, end in zip(groups, starts, ends):
        if end - start > limit:
            longest = max(group, key=lambda p: p.count)
            raise ValueError(f"{longest.key}: {longest.count} addresses exceed the request limit {limit}")
    cuts = _best_cuts(tuple(starts), tuple(ends), limit)
    return [
        _hull_block(function, [p for group in groups[first:last] for p in group])
        for first, last in zip(cuts, cuts[1:])
    ]


@functools.lru_cache(maxsize=256)
def _best_cuts(starts: tuple[int, ...], ends: tuple[int, ...], limit: int) -> list[int]:
    """Indices cutting the start groups into blocks, minimising (blocks, addresses read).

    Quadratic in the groups of a segment (milliseconds for a hundred registers), and the same
    for every device of one register map (a template, a fleet of one PLC model): remembered, so
    a concentrator of a thousand such devices plans one map, not a thousand. Callers only read
    the result.

    ``best[i]`` is the cheapest cover of groups ``0..i-1``; the last block covers ``j..i-1`` and
    spans ``[starts[j], max(ends[j:i]))``. Going down from ``j = i - 1`` the span only grows, so
    the inner loop stops as soon as it exceeds ``limit``.
    """
    best: list[tuple[int, int]] = [(0, 0)]
    parent: list[int] = [0]
    for i in range(1, len(starts) + 1):
        reach = 0
        candidate = (sys.maxsize, 0)  # beaten at j = i - 1: one group always fits (caller checks)
        chosen = i - 1
        for j in range(i - 1, -1, -1):
            reach = max(reach, ends[j])
            span = reach - starts[j]
            if span > limit:
                break
            cost = (best[j][0] + 1, best[j][1] + span)
            if cost < candidate:
                candidate, chosen = cost, j
        best.append(candidate)
        parent.append(chosen)
    cuts = [len(starts)]
    while cuts[-1] > 0:
        cuts.append(parent[cuts[-1]])
    return cuts[::-1]


def _overlap_clusters(points: Sequence[Point]) -> list[list[Point]]:
    """Group address-sorted points into runs that share at least one register transitively."""
    clusters: list[list[Point]] = []
    reach = -1
    for point in points:
        if clusters and point.address < reach:
            clusters[-1].append(point)
            reach = max(reach, point.end)
        else:
            clusters.append([point])
            reach = point.end
    return clusters


def _hull_block(function: Function, points: Sequence[Point]) -> ReadBlock:
    """The smallest block reading all ``points``, which keep their address order."""
    start = min(p.address for p in points)
    end = max(p.end for p in points)
    ordered = sorted(points, key=lambda p: p.address)
    return ReadBlock(function, start, end - start, tuple(ordered))
