"""What the station shows, turned into the margins that keep a night setback safe.

The night setback is only as safe as the controller's picture of the rooms, and that picture is
late and coarse: a wireless sensor reports every 5-15 minutes (longer when reports are lost) in
steps of 0.1 K, and a top-floor corner room of a poorly insulated block in a -25 C night cools
2-3 K an hour once the supply is cut. Constants fitted to one station (a fixed coast band, a fixed
night cooling) put rooms below the 16 C legal floor on a colder one. So the margins are computed,
each cycle and per room, from what this station has shown:

* how fast each room cools with the supply cut, learned from every coast as a coefficient per
  kelvin of room-outdoor difference (so a colder night predicts a faster fall), quick to rise,
  slow to fall: a room that cooled faster than believed is believed at once;
* how long each sensor goes between reports (the longest interval seen lately) and how old its
  reading is: the room has been cooling since it was measured, and will be until the next report;
* the sensor's resolution (the smallest step it has reported);
* the highest supply the boost really gets: the limiters (primary return, power, flow) may hold
  it far below the curve's maximum, and a boost that cannot reach the curve's maximum cannot undo
  the setback the plan assumed.

Everything here is plain arithmetic on explicit state (no clock), like ``gateway.control.loops``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.control.model import Reading

DEFAULT_RESOLUTION_K = 0.1
"""Until a sensor has shown its step, assume the register's 0.1 K."""
_COOLING_DOWN_WEIGHT = 0.3
"""A coast that cooled slower than believed moves the belief this share of the way down."""
_MIN_COAST_H = 0.5
"""A coast shorter than this (or a fall of less than two steps) says too little about the rate."""
_INTERVAL_DECAY = 0.1
"""The longest report interval seen decays this share of the way toward each new interval."""
_TREND_H = 2.0
"""A room's trend is smoothed over about this long: a sensor reports in 0.1 K steps every 5-15
minutes, so one report's step says nothing, a couple of hours of them say where the room goes."""
_CEILING_MEMORY_S = 86_400.0
"""A boost ceiling the limiters set is remembered for a day (a night later the weather, the
network and the return temperatures have changed). Not less: a return limiter acts a quarter of
an hour after the boost has passed its ceiling, so a boost running freely for a while says
nothing, and a ceiling that comes and goes within a night would teach the heat-up factors one
headroom and plan the next boost with another."""


def coast_band_k(rate_k_per_h: float, report_h: float, ramp_h: float, resolution_k: float) -> float:
    """How far above the night floor the coast must end for the room not to fall through it.

    Once the coast ends the room keeps cooling until the supply is back up (``ramp_h``) and, since
    the controller only sees it at its next report, for up to a report interval more
    (``report_h``); the reading itself may be up to one step (``resolution_k``) above the room.
    """
    return resolution_k + max(0.0, rate_k_per_h) * (report_h + ramp_h)


def night_margin_k(rate_k_per_h: float, report_h: float, resolution_k: float) -> float:
    """How far above the 16 C floor the room held on it must be aimed: between two reports the
    controller is blind, and a room that cools ``rate_k_per_h`` with too little supply (a colder
    hour, a limiter, a slow trim) falls that much times the interval before it can react; the
    reading itself may be a step above the room."""
    return resolution_k + max(0.0, rate_k_per_h) * report_h


def day_margin_k(margin_k: float, resolution_k: float) -> float:
    """How far above the day target the trim must aim the coldest room: the reading is rounded to
    the sensor's step, so a room read exactly at the target may be half a step below it, and the
    trim holds the reading, not the room; on top of the configured ``margin_k``."""
    return margin_k + 0.5 * resolution_k


def room_now(value_c: float, age_h: float, rate_k_per_h: float) -> float:
    """The room now, from a reading ``age_h`` old, while it cools at ``rate_k_per_h``."""
    return value_c - max(0.0, rate_k_per_h) * age_h


@dataclass
class RoomDynamics:
    """Per room: the learned cooling coefficient (1/h: K/h per K of room-outdoor difference), the
    longest report interval seen lately, the last valid reading, and the sensors' resolution.

    ``default_per_h`` (one over the building time constant) stands in until a room has coasted.
    """

    default_per_h: float
    cooling_per_h: dict[str, float] = field(default_factory=dict)
    interval_s: dict[str, float] = field(default_factory=dict)
    last: dict[str, tuple[float, float]] = field(default_factory=dict)  # room -> (value, measured at)
    resolution_k: float | None = None
    trend_k_per_h: dict[str, float] = field(default_factory=dict)  # room -> smoothed rate of change
    _anchor: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # coast start per room
    _coast: dict[str, float] = field(default_factory=dict)  # this coast's observed coefficient per room

    def coefficient(self, room: str) -> float:
        return self.cooling_per_h.get(room, self.default_per_h)

    def rate_k_per_h(self, room: str, room_c: float, outdoor_c: float) -> float:
        """How fast ``room`` cools now with the supply cut (K/h)."""
        return self.coefficient(room) * max(0.0, room_c - outdoor_c)

    def report_h(self, room: str, age_s: float) -> float:
        """How long until the controller may next hear from ``room``: the longest interval seen lately,
        at least the age of the reading it holds now."""
        return max(self.interval_s.get(room, 0.0), age_s) / 3600.0

    @property
    def resolution(self) -> float:
        return DEFAULT_RESOLUTION_K if self.resolution_k is None else self.resolution_k

    def observe(self, rooms: Mapping[str, Reading], valid: Mapping[str, float], now: float, outdoor_c: float,
                coasting: bool) -> None:
        """Take this cycle's valid readings: new reports, and the cooling of a coast in progress."""
        for name, value in valid.items():
            measured = now - rooms[name].age_s
            previous = self.last.get(name)
            if previous is not None and measured > previous[1] + 1.0:
                interval = measured - previous[1]
                longest = self.interval_s.get(name, interval)
                self.interval_s[name] = max(interval, longest - _INTERVAL_DECAY * (longest - interval))
                weight = min(1.0, interval / 3600.0 / _TREND_H)
                slope = (value - previous[0]) / (interval / 3600.0)
                trend = self.trend_k_per_h.get(name, 0.0)
                self.trend_k_per_h[name] = trend + weight * (slope - trend)
                step = abs(value - previous[0])
                if step > 1e-6:
                    self.resolution_k = step if self.resolution_k is None else min(self.resolution_k, step)
            self.last[name] = (value, measured)
            if coasting:
                self._observe_coast(name, value, measured, outdoor_c)
        if not coasting and self._anchor:
            for name, observed in self._coast.items():
                believed = self.coefficient(name)
                if observed < believed:
                    self.cooling_per_h[name] = believed + _COOLING_DOWN_WEIGHT * (observed - believed)
            self._anchor.clear()
            self._coast.clear()

    def _observe_coast(self, name: str, value: float, measured: float, outdoor_c: float) -> None:
        start_at, start_c, _ = self._anchor.setdefault(name, (measured, value, outdoor_c))
        hours = (measured - start_at) / 3600.0
        fall = start_c - value
        if hours < _MIN_COAST_H or fall < 2.0 * self.resolution:
            return
        observed = fall / hours / max(1.0, 0.5 * (start_c + value) - outdoor_c)
        self._coast[name] = observed
        if observed > self.coefficient(name):
            self.cooling_per_h[name] = observed  # faster than believed: believed at once


@dataclass
class BoostCeiling:
    """The highest supply the boost can count on: what the limiters last allowed while they held
    the setpoint down, remembered for a day."""

    value_c: float | None = None
    seen_at: float = 0.0

    def observe(self, now: float, setpoint_c: float, limiting: bool) -> None:
        if limiting:
            self.value_c, self.seen_at = setpoint_c, now
        elif self.value_c is not None and now - self.seen_at > _CEILING_MEMORY_S:
            self.value_c = None

    def ceiling(self, max_supply_c: float) -> float:
        return max_supply_c if self.value_c is None else min(max_supply_c, self.value_c)


@dataclass
class RecentLow:
    """How cold the coming night may get, from the outdoor value the curve is read at: as cold
    as the coldest hour of the last day, and colder by as much as the weather has cooled since
    the same hour yesterday (a front coming in makes each night colder than the one before)."""

    hours: dict[int, tuple[float, float]] = field(default_factory=dict)  # hour -> (first value, minimum)

    def add(self, now: float, outdoor_c: float) -> float:
        """Record ``outdoor_c`` at ``now``; return the outdoor value to plan the night's boost at."""
        hour = int(now // 3600)
        first, low = self.hours.get(hour, (outdoor_c, outdoor_c))
        self.hours[hour] = (first, min(low, outdoor_c))
        for old in [h for h in self.hours if h < hour - 24]:
            del self.hours[old]
        coldest = min(low for h, (_, low) in self.hours.items() if h > hour - 24)
        yesterday = self.hours.get(hour - 24)
        cooling = 0.0 if yesterday is None else min(0.0, outdoor_c - yesterday[0])
        return min(outdoor_c, coldest + cooling)


_HOLD_UP = 1.5
"""A morning that sagged after its boost raises the hold by this ratio (a refund is near) ..."""
_HOLD_DOWN = 0.9
"""... a morning that held lowers it by this one, never below the configured hold."""
HOLD_MAX_K = 20.0
"""The most a learned hold may grow to (``boost_hold_k``'s own bound)."""


@dataclass
class BoostHold:
    """What is left of the boost once the rooms are back (room K), learned from every morning.

    After a setback the air comes back before the walls: cut to a hold too small for this
    building, the boost leaves the rooms sliding back below the target within the hour, and
    the morning is saved only by boosting again. Each morning that needed that raises the hold
    for the next, each that did not lowers it a little, never below the configured hold.
    """

    value_k: float
    _until: float | None = None  # end of the morning being watched
    _sagged: bool = False

    def watch(self, until: float) -> None:
        """A boost has just closed at the day start: watch the morning until ``until``."""
        self._until, self._sagged = until, False

    def observe(self, now: float, reboosting: bool, configured_k: float) -> None:
        if self._until is None:
            return
        self._sagged = self._sagged or reboosting
        if now < self._until:
            return
        ratio = _HOLD_UP if self._sagged else _HOLD_DOWN
        self.value_k = min(HOLD_MAX_K, max(configured_k, self.value_k * ratio))
        self._until = None
