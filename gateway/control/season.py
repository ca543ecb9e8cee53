"""The heating calendar, the cut-out and frost protection: whether a circuit heats at all.

The calendar follows the domain brief: cold circulation from ~1 Nov, hot commissioning 8-14 Nov,
the contract season 15 Nov-15 Mar, and a cold-weather rule that starts early or extends (daily
mean outdoor temperature at or below 5 C for 3 days), with a manual override above everything.
Within heating, the summer/heating cut-out (Siemens ECO) stops heating on a warm damped outdoor
temperature with a switching differential, and frost protection guards a circuit that is off.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from dataclasses import dataclass

from gateway.control.settings import Cutout, FrostSettings, SeasonMode, SeasonSettings, season_day

HEATING_MODES = (SeasonMode.COMMISSIONING, SeasonMode.HEATING, SeasonMode.EXTENSION)


def season_mode(day: dt.date, recent_means_c: list[float], settings: SeasonSettings) -> tuple[SeasonMode, str]:
    """The mode for a local calendar day, given the daily mean outdoor temperatures before it.

    ``recent_means_c`` holds complete days, oldest first (the cold-weather rule looks at the last
    ``early_start.days`` of them). Returns the mode and the reason, for the published state.
    """
    if settings.override is not None:
        return settings.override, "manual override"
    today = season_day(day.strftime("%m-%d"))
    rule = settings.early_start
    window = recent_means_c[-rule.days:] if len(recent_means_c) >= rule.days else []
    if season_day(settings.heating_from) <= today <= season_day(settings.heating_until):
        return SeasonMode.HEATING, "heating season"
    if rule.enabled and window:
        if season_day(rule.early_from) <= today < season_day(settings.heating_from) and max(window) <= rule.daily_mean_c:
            return SeasonMode.HEATING, f"early start: {rule.days} days at or below {rule.daily_mean_c:g} C"
        after_end = season_day(settings.heating_until) < today <= season_day(rule.extension_until)
        if after_end and sum(window) / len(window) <= rule.daily_mean_c:
            return SeasonMode.EXTENSION, f"extension: {rule.days}-day mean at or below {rule.daily_mean_c:g} C"
    if season_day(settings.commissioning_from) <= today < season_day(settings.heating_from):
        return SeasonMode.COMMISSIONING, "hot commissioning"
    if season_day(settings.cold_circulation_from) <= today < season_day(settings.commissioning_from):
        return SeasonMode.COLD_CIRCULATION, "cold circulation"
    return SeasonMode.OFF, "outside the heating season"


class DailyMeans:
    """Time-weighted daily means of the outdoor temperature, per local calendar day.

    The cold-weather rule needs "the last N days"; a day counts once it is complete and at least
    half covered by samples (a gateway restarted at 23:00 does not get to call that day cold).
    """

    def __init__(self, keep_days: int = 14) -> None:
        self._means: deque[tuple[dt.date, float]] = deque(maxlen=keep_days)
        self._day: dt.date | None = None
        self._sum = 0.0
        self._seconds = 0.0

    def add(self, day: dt.date, value_c: float, dt_s: float) -> None:
        """Account ``value_c`` held for ``dt_s`` seconds on local ``day``."""
        if self._day != day:
            if self._day is not None and self._seconds >= 43_200:
                self._means.append((self._day, self._sum / self._seconds))
            self._day, self._sum, self._seconds = day, 0.0, 0.0
        self._sum += value_c * dt_s
        self._seconds += dt_s

    @property
    def complete(self) -> list[float]:
        """Means of the complete days, oldest first."""
        return [mean for _, mean in self._means]

    @property
    def days(self) -> list[tuple[dt.date, float]]:
        """The complete days with their means, oldest first (what the controller memory saves)."""
        return list(self._means)

    def restore(self, days: list[tuple[dt.date, float]]) -> None:
        """Take saved complete days (after a restart), before any day counted since."""
        known = {day for day, _ in self._means}
        earlier = [(day, mean) for day, mean in days if day not in known and day != self._day]
        kept = sorted(earlier + list(self._means))
        self._means.clear()
        self._means.extend(kept)


@dataclass
class CutoutSwitch:
    """Heating limit with a switching differential: off at the limit, on again one differential below."""

    cut_out: bool = False

    def update(self, damped_outdoor_c: float, settings: Cutout) -> bool:
        if not settings.enabled:
            self.cut_out = False
        elif damped_outdoor_c >= settings.heating_limit_c:
            self.cut_out = True
        elif damped_outdoor_c <= settings.heating_limit_c - settings.differential_k:
            self.cut_out = False
        return self.cut_out


@dataclass
class FrostGuard:
    """Frost protection for a circuit that is not heating: on when the water or the weather is cold.

    On when the secondary supply drops below ``supply_on_below_c`` or the damped outdoor
    temperature below ``outdoor_on_below_c``; off once the supply is back above
    ``supply_off_above_c`` and the weather is no longer frosty. Without a supply reading only the
    weather can start it, which is why the outdoor threshold exists at all.
    """

    active: bool = False

    def update(self, supply_c: float | None, damped_outdoor_c: float, settings: FrostSettings) -> bool:
        frosty = damped_outdoor_c < settings.outdoor_on_below_c
        if frosty or (supply_c is not None and supply_c < settings.supply_on_below_c):
            self.active = True
        elif supply_c is None or supply_c > settings.supply_off_above_c:
            self.active = False
        return self.active
