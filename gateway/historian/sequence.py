"""Gap and duplicate accounting from the stations' sequence numbers: pure, clock passed in.

Each station numbers its durable messages (telemetry, controller state, alarm and event
transitions: one sequence across topics) 1, 2, 3, ... for its whole life. A number seen twice is
a duplicate (QoS 1 redelivery, store-and-forward replay); a number not seen is a hole.

A hole is not a loss: the station keeps every message until a historian confirms it
(``delivered``), so a hole that stays open for ``grace_s`` is asked for again (``due``, which the
bridge turns into ``cmd/replay`` requests, repeated every ``retry_s`` while it stays open). Only
the station's answer that its outbox cap dropped those numbers makes them lost (``resolve``): a
gap, counted in ``missing`` exactly once, with that reason. A station that answers it has none of
them and dropped none of them had them confirmed earlier (by a bridge whose state was lost): they
are filled without being counted.

Why it is built this way:

* **Several bridges share one station's messages.** A shared subscription hands each message to
  one bridge, so a single bridge sees 1, 3, 4, 7, ... and would call every hole a gap. Bridges
  therefore tell each other which numbers they have written (``merge``), and a hole is only asked
  for when it has stayed open for ``grace_s`` after a later number arrived. Every bridge reads the
  station's answers, so every bridge reaches the same verdict and reports the fleet-wide count
  (take the max across bridges, not the sum).
* **Late is not lost.** A number that arrives after its hole was declared a gap (a slow peer, a
  long outage) fills the gap again: ``missing`` goes down, ``late`` goes up, ``gaps`` (events)
  stays, so an alert on ``missing`` clears by itself.
* **Starting late is not a blind spot.** A bridge that starts tracking a station (fresh, or
  joining a running fleet) takes the first number it sees as the floor, but for ``grace_s`` after
  that, lower numbers (its peers' reports, redeliveries) still lower the floor, so a gap just
  before it joined is seen by every bridge, not only by the one that was there first.
* **Bounded memory.** Per station: a watermark below which everything is settled, the seen spans
  above it (few: holes are rare), and the last few declared gaps (to recognise late arrivals).
* **Survives a restart** through ``snapshot``/``restore`` (a small JSON file in the state
  directory). Without it a bridge restarting across a loss would start counting after the hole
  and never report it, which is exactly when a broker that lost its queue needs reporting.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

MAX_SPANS = 10_000
"""Open spans per station before the oldest holes are given up as lost without an answer: the one
loss counted without the station's word, to keep memory bounded (logged with that reason)."""
REQUESTS_PER_ROUND = 8
"""Replay requests per station per round: a station with many holes is asked for the oldest first."""
TOO_MANY_HOLES = "too many holes to keep waiting for"
DECLARED_KEPT = 64
"""Declared gaps remembered per station so that late arrivals can fill them."""


class Verdict(Enum):
    """What one observed sequence number means."""

    NEW = "new"
    DUPLICATE = "duplicate"
    LATE = "late"
    """Its number had been declared missing; it fills (part of) a gap."""
    BEFORE = "before"
    """Older than the first number ever tracked for the station: neither gap nor duplicate."""


@dataclass(frozen=True, slots=True)
class Gap:
    """Sequence numbers ``first..last`` of ``station`` declared missing."""

    station: str
    first: int
    last: int
    reason: str = ""

    @property
    def size(self) -> int:
        return self.last - self.first + 1


@dataclass(slots=True)
class StationSequence:
    """One station's accounting. Spans are ``[first, last, since]``, sorted, disjoint, above ``done``."""

    floor: int
    done: int
    started: float
    spans: list[list[float]] = field(default_factory=list)
    declared: deque[list[int]] = field(default_factory=lambda: deque(maxlen=DECLARED_KEPT))
    gaps: int = 0
    missing: int = 0
    duplicates: int = 0
    late: int = 0
    asked: float = float("-inf")
    """When the station was last asked to replay its holes (not persisted: a restart asks again)."""


class SequenceTracker:
    """Per-station sequence accounting for one bridge, merged with its peers' reports."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.stations: dict[str, StationSequence] = {}

    def observe(self, station: str, seq: int, now: float) -> Verdict:
        """Account for a message this bridge received."""
        state = self.stations.get(station)
        if state is None:
            self.stations[station] = StationSequence(floor=seq, done=seq, started=now)
            return Verdict.NEW
        if seq < state.floor:
            if now - state.started > self.grace_s:
                return Verdict.BEFORE
            _lower_floor(state, seq, now)
        if seq <= state.done:
            if _fill_declared(state, seq, seq):
                return Verdict.LATE
            state.duplicates += 1
            return Verdict.DUPLICATE
        if _insert(state, seq, seq, now) == 0:
            state.duplicates += 1
            return Verdict.DUPLICATE
        _advance(state)
        return Verdict.NEW

    def merge(self, station: str, first: int, last: int, now: float) -> None:
        """Account for ``first..last`` written by a peer. Never counts duplicates: the bridge that
        received the second copy counts it, so the fleet counts each duplicate once at most."""
        state = self.stations.get(station)
        if state is None:
            self.stations[station] = StationSequence(floor=first, done=last, started=now)
            return
        if first < state.floor and now - state.started <= self.grace_s:
            _lower_floor(state, first, now)
        first = max(first, state.floor)
        if first > last:
            return
        if first <= state.done:
            _fill_declared(state, first, min(last, state.done))
            first = state.done + 1
        if first <= last:
            _insert(state, first, last, now)
            _advance(state)

    def due(self, now: float, retry_s: float, chunk: int) -> list[Gap]:
        """The holes to ask the stations for now: open longer than the grace time, and not asked
        for in the last ``retry_s``; at most ``REQUESTS_PER_ROUND`` pieces of ``chunk`` numbers per
        station, oldest first. Holes beyond ``MAX_SPANS`` are given up at once (returned with a
        reason: they are lost)."""
        found: list[Gap] = []
        for name, state in self.stations.items():
            while len(state.spans) > MAX_SPANS:
                first, last, _ = state.spans.pop(0)
                found.append(_declare(state, name, state.done + 1, int(first) - 1, TOO_MANY_HOLES))
                state.done = int(last)
                _advance(state)
            if now < state.asked + retry_s:
                continue
            asks: list[Gap] = []
            low = state.done + 1
            for first, last, since in state.spans:
                if len(asks) >= REQUESTS_PER_ROUND:
                    break
                if since > now - self.grace_s:  # not open long enough yet
                    low = int(last) + 1
                    continue
                for start in range(low, int(first), chunk):
                    asks.append(Gap(name, start, min(start + chunk, int(first)) - 1))
                low = int(last) + 1
            if asks:
                state.asked = now
                found.extend(asks[:REQUESTS_PER_ROUND])
        return found

    def resolve(self, station: str, first: int, last: int, dropped: tuple[int, int] | None, resent: int,
                reason: str, now: float) -> tuple[list[Gap], int]:
        """Take a station's answer to a replay request for ``first..last``.

        The ``dropped`` numbers still missing become a gap, with ``reason``: counted once, since
        a second answer finds them settled. When nothing was resent, the rest of the request that
        is still missing was confirmed earlier (the station deleted it on a confirmation): filled
        without being counted. Returns (gaps declared, numbers filled as confirmed earlier).
        """
        state = self.stations.get(station)
        if state is None:
            return [], 0
        gaps = []
        if dropped is not None:
            for low, high in _holes(state, *dropped):
                gaps.append(_declare(state, station, low, high, reason))
                _insert(state, low, high, now)
        confirmed = 0
        if resent == 0:
            for low, high in _holes(state, first, last):
                confirmed += high - low + 1
                _insert(state, low, high, now)
        _advance(state)
        return gaps, confirmed

    def delivered(self, station: str, limit: int) -> tuple[int, list[tuple[int, int]]]:
        """What this bridge holds of ``station``: the watermark, and up to ``limit`` spans above it."""
        state = self.stations[station]
        return state.done, [(int(first), int(last)) for first, last, _ in state.spans[:limit]]

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to carry on after a restart, as JSON-able data."""
        return {
            name: {"floor": s.floor, "done": s.done, "started": s.started, "spans": s.spans, "declared": list(s.declared),
                   "gaps": s.gaps, "missing": s.missing, "duplicates": s.duplicates, "late": s.late}
            for name, s in self.stations.items()
        }

    @classmethod
    def restore(cls, data: dict[str, Any], grace_s: float) -> SequenceTracker:
        """Inverse of ``snapshot``."""
        tracker = cls(grace_s)
        for name, s in data.items():
            tracker.stations[name] = StationSequence(
                floor=int(s["floor"]), done=int(s["done"]), started=float(s["started"]), spans=[list(span) for span in s["spans"]],
                declared=deque((list(gap) for gap in s["declared"]), maxlen=DECLARED_KEPT),
                gaps=int(s["gaps"]), missing=int(s["missing"]), duplicates=int(s["duplicates"]), late=int(s["late"]),
            )
        return tracker


def _insert(state: StationSequence, first: int, last: int, now: float) -> int:
    """Add ``first..last`` (all above ``done``) to the spans; return how many numbers were new.

    A merged span keeps the earliest ``since``: the hole below it has been open since the first
    number above it arrived.
    """
    spans = state.spans
    index = bisect.bisect_left(spans, first, key=lambda span: span[1])
    new = last - first + 1
    since = now
    start = index
    while index < len(spans) and spans[index][0] <= last + 1:
        span = spans[index]
        overlap = min(last, span[1]) - max(first, span[0]) + 1
        new -= max(0, int(overlap))
        first, last, since = min(first, int(span[0])), max(last, int(span[1])), min(since, span[2])
        index += 1
    if start > 0 and spans[start - 1][1] + 1 >= first:
        start -= 1
        span = spans[start]
        overlap = min(last, span[1]) - max(first, span[0]) + 1
        new -= max(0, int(overlap))
        first, last, since = min(first, int(span[0])), max(last, int(span[1])), min(since, span[2])
    spans[start:index] = [[first, last, since]]
    return new


def _declare(state: StationSequence, station: str, first: int, last: int, reason: str) -> Gap:
    """Count ``first..last`` as lost (remembered, so a late arrival can still fill it)."""
    gap = Gap(station, first, last, reason)
    state.gaps += 1
    state.missing += gap.size
    state.declared.append([first, last])
    return gap


def _holes(state: StationSequence, first: int, last: int) -> list[tuple[int, int]]:
    """The parts of ``first..last`` above the watermark that no span covers."""
    found = []
    low = max(first, state.done + 1)
    for span_first, span_last, _ in state.spans:
        if low > last:
            break
        if span_first > low:
            found.append((low, min(last, int(span_first) - 1)))
        low = max(low, int(span_last) + 1)
    if low <= last:
        found.append((low, last))
    return found


def _lower_floor(state: StationSequence, first: int, now: float) -> None:
    """Start accounting at ``first`` instead: what was settled becomes a seen span above a new hole."""
    state.spans.insert(0, [state.floor, state.done, now])
    state.floor = first
    state.done = first - 1


def _advance(state: StationSequence) -> None:
    """Fold spans that now continue the watermark into it."""
    while state.spans and state.spans[0][0] == state.done + 1:
        state.done = int(state.spans.pop(0)[1])


def _fill_declared(state: StationSequence, first: int, last: int) -> bool:
    """Remove ``first..last`` from the declared gaps; return whether any number was filled."""
    filled = 0
    kept: list[list[int]] = []
    for low, high in state.declared:
        a, b = max(low, first), min(high, last)
        if a > b:
            kept.append([low, high])
            continue
        filled += b - a + 1
        if low < a:
            kept.append([low, a - 1])
        if b < high:
            kept.append([b + 1, high])
    if filled:
        state.declared = deque(kept, maxlen=DECLARED_KEPT)
        state.missing -= filled
        state.late += filled
    return filled > 0
