"""The comfort floor and the optimum start: coast through the night, then boost just in time.

By day (06:00-21:00) the coldest room is held at the day target. At night it may fall to the
night floor, and how much heat that saves depends on how low the rooms really get: heat use
follows the rooms' mean temperature. So the night is run the way an energy-optimal controller
runs it: the supply is cut (the rooms coast down on their own inertia) and, at the last moment
that still brings every measured room back by the day start, the supply goes to the circuit's
maximum (the boost) until the rooms are back at the day target. A gentle ramp of the target
instead (start early, warm slowly) keeps the rooms warmer all night for the same morning.

"The last moment" is planned per room: each measuring point warms at its own rate under the
boost (a top-floor corner room with an undersized radiator is slow, a light building fast),
predicted as ``factor x headroom / building time constant`` (the first-order picture, with the
curve's headroom between the supply needed and the maximum supply expressed in room kelvin).
Each room's factor is learned from every boost: the rate it actually warmed at, against the
rate predicted. The plan is the slowest room's time to the target, plus the time the ramp needs
to bring the supply up, plus a safety lead.

The factor alone is not safe to plan with: the rate a room really reaches under the boost moves
far less with the headroom than the first-order picture says (on the mixed station the corner
room warmed at 0.8-2.5 K/h on mornings whose predicted rates spanned 0.4-3 K/h), so a factor
learned on one morning, applied to a night with more headroom, promises a rate the room has not
shown, and the boost starts hours late. So a room's planned rate is also bounded by the slowest
rate it actually reached in its last ``RATE_MEMORY`` boosts: the plan never counts on a room
warming faster than it has lately.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.control.settings import ComfortSettings
from gateway.curves import Curve

_DAY_S = 86_400.0
_LEARN_UP_MAX = 1.25
"""A single morning may raise a room's factor by at most this ratio (greedy slowly: a boost that
went well says the room can warm faster, and a factor raised too far at once makes the next
morning late) ..."""
_LEARN_DOWN_MIN = 0.5
"""... and lower it by at most this one in one go (careful fast: a late morning is a refund)."""
_MIN_RISE_K = 0.5
"""A boost that raised a room by less than this says too little about its rate to learn from."""
RATE_MEMORY = 7
"""How many of a room's latest achieved boost rates bound its planned rate: a week of mornings,
so the slowest recent one (a colder night, a limiter, a lower trim) is still counted."""


@dataclass(frozen=True, slots=True)
class ComfortFloor:
    """The floor now: aim (contract + margin), the contract itself and the phase."""

    floor_c: float  # what the trim aims the coldest room at
    contract_c: float  # what the contract requires at this moment (no margin)
    phase: str  # "day", "night" or "preheat"


def _seconds(t: dt.time) -> float:
    return t.hour * 3600.0 + t.minute * 60.0 + t.second


def is_day(local: dt.datetime, settings: ComfortSettings) -> bool:
    """Inside the comfort hours (day_start <= now < day_end)?"""
    return _seconds(settings.day_start) <= _seconds(local.time()) < _seconds(settings.day_end)


def hours_to_day_start(local: dt.datetime, settings: ComfortSettings) -> float:
    """Hours until the next day start (0 at the day start itself)."""
    return ((_seconds(settings.day_start) - _seconds(local.time())) % _DAY_S) / 3600.0


def comfort_floor(local: dt.datetime, settings: ComfortSettings, *, setback: bool, preheating: bool,
                  night_margin_k: float = 0.0, day_margin_k: float = 0.0) -> ComfortFloor:
    """The comfort floor at local time ``local``.

    ``setback``: may the rooms fall to the night floor tonight? Not when the building could not
    be warmed back (no valid room to plan with, no trustworthy weather). ``preheating``: the
    optimum start has begun the boost, so the floor is the day target already.
    ``night_margin_k``: how far the room held on the night floor may fall before the controller
    can see it (see ``night_margin_k``); the night floor keeps at least that above ``night_c``,
    and at least ``margin_k``. ``day_margin_k``: the same for the day target (see
    ``day_margin_k``), at least ``margin_k``.
    """
    margin = settings.margin_k
    night = settings.night_c + max(margin, night_margin_k)
    day = settings.day_c + max(margin, day_margin_k)
    if is_day(local, settings):
        return ComfortFloor(day, settings.day_c, "day")
    if not settings.optimum_start.enabled:
        return ComfortFloor(night, settings.night_c, "night")
    if not setback:
        return ComfortFloor(day, settings.night_c, "night")
    if preheating:
        return ComfortFloor(day, settings.night_c, "preheat")
    return ComfortFloor(night, settings.night_c, "night")


def headroom_k(curve: Curve, outdoor_c: float, room_c: float, ceiling_c: float | None = None) -> float:
    """How much warmer a room (K) the curve could serve now before it reaches its maximum supply,
    or ``ceiling_c`` if the limiters will hold the boost lower than that.

    On a design day there is little left above the supply the rooms need, on a mild one a lot:
    this is what limits how fast a building can be warmed back after a setback. Measured against
    the curve's maximum while a return limiter holds the boost several kelvin lower, it promises
    a morning the station cannot deliver.
    """
    top = curve.max_supply_c if ceiling_c is None else min(curve.max_supply_c, ceiling_c)
    needed = float(curve.supply_for_room(outdoor_c, room_c))
    per_k = float(curve.supply_for_room(outdoor_c, room_c + 1.0)) - needed
    if per_k <= 0.0:
        return 0.0
    return max(0.0, top - needed) / per_k


def heatup_rate(headroom: float, time_constant_h: float, factor: float, max_k_per_h: float) -> float:
    """How fast a room warms under the boost, K/h: a first-order room driven ``headroom`` above
    its equilibrium warms at ``headroom / time constant``, scaled by the room's learned ``factor``."""
    return min(max_k_per_h, factor * headroom / time_constant_h)


@dataclass(frozen=True, slots=True)
class PreheatPlan:
    """Tonight's plan as of now: how long the boost needs, and whether it must start."""

    needed_h: float  # boost time the slowest room needs (without the lead)
    rate_k_per_h: float  # that room's predicted heat-up rate (0: nothing to plan with)
    room: str  # the room that sets the start ("" if none is below the target)
    start: bool


@dataclass
class OptimumStart:
    """Plans the boost each night and learns every room's heat-up factor from each boost.

    State across cycles: the learned factor of each room, whether tonight's boost has begun
    (latched until the day start, so a room that reports warm for a moment cannot switch it off
    and on; only ``release`` ends it early), and what each room stood at when it began, to
    measure the rate it achieved.
    """

    default_factor: float
    factors: dict[str, float] = field(default_factory=dict)
    achieved: dict[str, list[float]] = field(default_factory=dict)  # room -> its latest boost rates, K/h
    active: bool = False
    missed_today: bool = False
    _began_h: float = 0.0  # hours to the day start when the boost began
    _ramp_h: float = 0.0  # the part of the boost's lead that the ramp took
    _start_c: dict[str, float] = field(default_factory=dict)
    _predicted: dict[str, float] = field(default_factory=dict)
    _learned: set[str] = field(default_factory=set)
    _day: dt.date | None = None

    def factor(self, room: str) -> float:
        return self.factors.get(room, self.default_factor)

    def rate(self, room: str, headroom: float, time_constant_h: float, max_k_per_h: float) -> float:
        """The heat-up rate to plan ``room``'s boost with: the learned factor's prediction, but no
        faster than the slowest rate the room reached in its latest boosts."""
        predicted = heatup_rate(headroom, time_constant_h, self.factor(room), max_k_per_h)
        return min([predicted, *self.achieved.get(room, ())])

    def plan(self, rooms: Mapping[str, float], target_c: float, headroom: float, time_constant_h: float,
             max_k_per_h: float, hours_left: float, lead_h: float,
             falls_k: Mapping[str, float] | None = None) -> PreheatPlan:
        """The slowest room's boost time to ``target_c``; start when that plus ``lead_h`` is all that is left.

        ``falls_k``: how much further each room falls before the boost reaches it (the emitters'
        lag; nothing for radiators), added to the climb it has to make.
        """
        needed, rate, which = 0.0, 0.0, ""
        for name, value in rooms.items():
            if value >= target_c:
                continue
            room_rate = self.rate(name, headroom, time_constant_h, max_k_per_h)
            climb = target_c - value + (falls_k or {}).get(name, 0.0)
            hours = math.inf if room_rate <= 0.0 else climb / room_rate
            if hours > needed or not which:
                needed, rate, which = hours, room_rate, name
        return PreheatPlan(needed, rate, which, bool(which) and hours_left <= needed + lead_h)

    def begin(self, rooms: Mapping[str, float], hours_left: float, headroom: float, time_constant_h: float,
              max_k_per_h: float, ramp_h: float) -> None:
        """The boost starts now: remember each room's temperature and predicted rate.

        ``ramp_h`` is the time the plan allowed for the ramp to bring the supply up; the rooms'
        rates are learned net of it, as the plan uses them.
        """
        self.active = True
        self._began_h = hours_left
        self._ramp_h = ramp_h
        self._start_c = dict(rooms)
        self._predicted = {name: heatup_rate(headroom, time_constant_h, self.factor(name), max_k_per_h)
                           for name in rooms}  # the factor's prediction: what the factor is learned against
        self._learned = set()

    def release(self) -> None:
        """End tonight's boost early: every room is back with hours to spare, so they may coast
        again and the boost is planned anew (what was learned from this one is kept)."""
        self.active = False

    def observe(self, local: dt.datetime, rooms: Mapping[str, float], settings: ComfortSettings) -> None:
        """Learn from the boost in progress, and close it at the day start.

        A room learns once per boost: when it first reaches the day target (day_c + margin), from
        the rate it actually warmed at; a room still short of it at the day start learns then,
        from the rate it managed, which is what made the morning late.
        """
        if local.date() != self._day and is_day(local, settings):
            self._day, self.missed_today = local.date(), False
        if not self.active:
            return
        target = settings.day_c + settings.margin_k
        day = is_day(local, settings)
        elapsed_h = self._began_h - (0.0 if day else hours_to_day_start(local, settings)) - self._ramp_h
        for name, value in rooms.items():
            if name in self._learned or name not in self._start_c:
                continue
            if value >= target or day:
                self._learn(name, value, elapsed_h, settings)
        if day:
            self.missed_today = any(value < settings.day_c for value in rooms.values())
            self.active = False

    def _learn(self, name: str, value: float, elapsed_h: float, settings: ComfortSettings) -> None:
        self._learned.add(name)
        rise = value - self._start_c[name]
        predicted = self._predicted.get(name, 0.0)
        if not settings.optimum_start.learn or elapsed_h <= 0.0 or predicted <= 0.0 or rise < _MIN_RISE_K:
            return
        self.achieved[name] = [*self.achieved.get(name, ())[-(RATE_MEMORY - 1):], rise / elapsed_h]
        ratio = (rise / elapsed_h) / predicted
        opt = settings.optimum_start
        ratio = min(_LEARN_UP_MAX, ratio) if ratio >= 1.0 else max(_LEARN_DOWN_MIN, ratio)
        self.factors[name] = min(opt.max_factor, max(opt.min_factor, self.factor(name) * ratio))
