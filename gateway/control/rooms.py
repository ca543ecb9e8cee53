"""Which room temperature the trim holds at the target: the coldest valid one, or a percentile.

Representative rooms are wireless sensors: they report every few minutes, drop reports, run flat.
A room counts only while its reading is good, plausible and recent; the rest drop out and are
listed, so a dead battery shows up as a signal instead of as a cold (or warm) building.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.control.model import Reading
from gateway.control.settings import RoomTrimSettings


@dataclass(frozen=True, slots=True)
class RoomChoice:
    """The room temperature the trim acts on, and how many rooms it was chosen from."""

    value_c: float | None  # None: no valid room, the circuit runs on its curve and the learned trim
    name: str
    valid: int
    total: int
    invalid: tuple[str, ...]
    values: Mapping[str, float] = field(default_factory=dict)  # every valid room (the optimum start plans with all)


def choose_room(rooms: Mapping[str, Reading], settings: RoomTrimSettings) -> RoomChoice:
    """The coldest valid room (``percentile`` 0), or the given percentile of the valid rooms.

    A percentile above 0 lets a station ignore one chronically cold room it cannot fix from the
    station (an open window, a blocked radiator) without losing room feedback altogether; the
    reported name is the room nearest to that percentile.
    """
    low, high = settings.plausible_c
    valid: dict[str, float] = {}
    invalid: list[str] = []
    for name, reading in rooms.items():
        value = reading.usable
        if value is not None and low <= value <= high and reading.age_s <= settings.max_age_s:
            valid[name] = value
        else:
            invalid.append(name)
    if not valid:
        return RoomChoice(None, "", 0, len(rooms), tuple(invalid))
    chosen = percentile(sorted(valid.values()), settings.percentile)
    name = min(valid, key=lambda room: abs(valid[room] - chosen))
    return RoomChoice(chosen, name, len(valid), len(rooms), tuple(invalid), valid)


def percentile(ordered: list[float], percent: float) -> float:
    """The ``percent`` percentile of ascending values, linear between the neighbours: numpy's
    default method and arithmetic (``percentile(..., method="linear")``), without numpy."""
    position = (len(ordered) - 1) * (percent / 100.0)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    a, b, t = ordered[low], ordered[high], position - low
    return b - (b - a) * (1.0 - t) if t >= 0.5 else a + (b - a) * t
