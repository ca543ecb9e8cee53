"""The comfort floor: what the coldest room must be kept at, now, including the optimum start.

By day (06:00-21:00) the floor is the day target; at night it may fall to the night floor, but
only as far as the building can be warmed back by the day start: the floor is the higher of the
night floor and a line that rises at the building's heat-up rate to reach the day target exactly
at the day start. So the optimum start is not a separate timer that can disagree with the room
trim: it *is* the trim's target, and the same PI that holds 18 C by day brings the rooms up in
the morning. The heat-up rate is learned from how the mornings actually went.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from gateway.control.settings import ComfortSettings
from gateway.curves import Curve

_DAY_S = 86_400.0
_MORNING_CHECK_S = 4 * 3600.0
_SLOWER = 0.8
_FASTER = 1.05


@dataclass(frozen=True, slots=True)
class ComfortFloor:
    """The floor now: aim (contract + margin), the contract itself, the phase and its slope."""

    floor_c: float  # what the trim aims the coldest room at
    contract_c: float  # what the contract requires at this moment (no margin)
    phase: str  # "day", "night" or "preheat"
    slope_k_per_h: float  # how fast the floor rises now (preheat), else 0


def _seconds(t: dt.time) -> float:
    return t.hour * 3600.0 + t.minute * 60.0 + t.second


def comfort_floor(local: dt.datetime, settings: ComfortSettings, heatup_k_per_h: float) -> ComfortFloor:
    """The comfort floor at local time ``local`` for a building that warms at ``heatup_k_per_h``."""
    now_s = local.hour * 3600.0 + local.minute * 60.0 + local.second
    start_s, end_s = _seconds(settings.day_start), _seconds(settings.day_end)
    margin = settings.margin_k
    if start_s <= now_s < end_s:
        return ComfortFloor(settings.day_c + margin, settings.day_c, "day", 0.0)
    if not settings.optimum_start.enabled:
        return ComfortFloor(settings.night_c + margin, settings.night_c, "night", 0.0)
    if heatup_k_per_h <= 0.0:
        # No way to warm the building back (no headroom, or no trustworthy weather): no setback.
        return ComfortFloor(settings.day_c + margin, settings.night_c, "night", 0.0)
    hours_to_start = ((start_s - now_s) % _DAY_S) / 3600.0
    rising = settings.day_c - heatup_k_per_h * hours_to_start
    if rising <= settings.night_c:
        return ComfortFloor(settings.night_c + margin, settings.night_c, "night", 0.0)
    return ComfortFloor(rising + margin, settings.night_c, "preheat", heatup_k_per_h)


def headroom_k(curve: Curve, outdoor_c: float, room_c: float) -> float:
    """How much warmer a room (K) the curve could serve now before it reaches its maximum supply.

    On a design day there is little left above the supply the rooms need, on a mild one a lot:
    this is what limits how fast a building can be warmed back after a setback.
    """
    needed = float(curve.supply_for_room(outdoor_c, room_c))
    per_k = float(curve.supply_for_room(outdoor_c, room_c + 1.0)) - needed
    if per_k <= 0.0:
        return 0.0
    return max(0.0, curve.max_supply_c - needed) / per_k


def heatup_rate(headroom: float, time_constant_h: float, factor: float, max_k_per_h: float) -> float:
    """How fast the building can be warmed now, K/h: a first-order room driven ``headroom`` above
    its equilibrium warms at ``headroom / time constant``, scaled by the learned ``factor``."""
    return min(max_k_per_h, factor * headroom / time_constant_h)


@dataclass
class HeatupLearner:
    """Learns the heat-up factor from each morning: was the day target met in the first four hours?

    Four, not one: after a setback the walls are still cold when the air is back at the target,
    and a room that dips at 10:00 was let down by the night as much as one that is late at 06:00.

    A morning whose coldest room fell short of the day target (no margin) makes the next preheat
    start earlier (factor x 0.8); a morning met with the margin to spare lets it start a little
    later (x 1.05). Careful fast, greedy slowly: a missed morning is a refund, a late start only
    a few kWh.
    """

    factor: float
    _day: dt.date | None = None
    _lowest: float | None = None
    missed_today: bool = False

    def observe(self, local: dt.datetime, room_c: float | None, settings: ComfortSettings) -> None:
        """Feed the coldest room now; adapts once per morning, after the check window."""
        now_s = local.hour * 3600.0 + local.minute * 60.0 + local.second
        start_s = _seconds(settings.day_start)
        if local.date() != self._day:
            self._day, self._lowest, self.missed_today = local.date(), None, False
        if start_s <= now_s < start_s + _MORNING_CHECK_S:
            if room_c is not None:
                self._lowest = room_c if self._lowest is None else min(self._lowest, room_c)
            return
        if now_s < start_s or self._lowest is None:
            return
        lowest, self._lowest = self._lowest, None
        opt = settings.optimum_start
        if lowest < settings.day_c:
            self.missed_today = True
            if opt.learn:
                self.factor = max(opt.min_factor, self.factor * _SLOWER)
        elif opt.learn and lowest >= settings.day_c + settings.margin_k:
            self.factor = min(opt.max_factor, self.factor * _FASTER)
