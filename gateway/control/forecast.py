"""The outdoor temperature a slow emitter's rooms will feel when a supply change reaches them.

A floor slab passes a supply change on to its rooms hours later (``emitter_lag_h``). A curve
read at the outdoor temperature now therefore heats the rooms for the weather of hours ago: the
supply asked for in the cold small hours arrives in the milder late morning, the one asked for
in the mild afternoon arrives in the cold evening. The room trim cannot make up for both with one
integral: it learns the afternoon's surplus away and the cold morning is left short. So a lagged
circuit reads its curve at the value expected when the change arrives: the value now (today's
level, fronts included) plus how the daily cycle moved over the same hours on the last days,
when that is colder (the controller takes the colder of the two, see ``CircuitController.step``).

How far ahead: a first-order lag of time constant tau delays a daily cycle by atan(w tau) / w
(w = 2 pi / 24 h), about tau for a short lag and never more than a quarter day for a long one.
It also flattens the cycle, which no reading ahead can undo; the trim keeps that part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DAY_H = 24.0
CYCLE_DAYS = 3
"""Days of the daily cycle averaged for the forecast: one day alone would repeat yesterday's front."""


def cycle_delay_h(lag_h: float) -> float:
    """How many hours a first-order lag of time constant ``lag_h`` delays the weather's daily cycle."""
    omega = 2.0 * math.pi / DAY_H
    return math.atan(omega * lag_h) / omega


@dataclass
class DailyCycle:
    """Hourly means of one outdoor value over the last days, to tell how it moves over the next hours."""

    hours: dict[int, tuple[float, int]] = field(default_factory=dict)  # hour -> (sum, samples)

    def add(self, now: float, value_c: float) -> None:
        """Record ``value_c`` at POSIX time ``now``."""
        hour = int(now // 3600)
        total, count = self.hours.get(hour, (0.0, 0))
        self.hours[hour] = (total + value_c, count + 1)
        for old in [h for h in self.hours if h < hour - CYCLE_DAYS * DAY_H - 2]:
            del self.hours[old]

    def expected(self, now: float, value_c: float, ahead_h: float) -> float:
        """The value expected ``ahead_h`` hours after ``now``, when it is ``value_c`` now: ``value_c``
        plus the mean change over the same hours of the last ``CYCLE_DAYS`` days (``value_c``
        itself until a day has been recorded)."""
        if ahead_h <= 0.0:
            return value_c
        changes = []
        for days in range(1, CYCLE_DAYS + 1):
            then = now - days * DAY_H * 3600.0
            start, end = self._at(then), self._at(then + ahead_h * 3600.0)
            if start is not None and end is not None:
                changes.append(end - start)
        return value_c + (sum(changes) / len(changes) if changes else 0.0)

    def _at(self, moment: float) -> float | None:
        """The recorded value at ``moment``, interpolated between the hourly means (at mid-hour)."""
        position = moment / 3600.0 - 0.5
        hour = math.floor(position)
        low, high = self.hours.get(hour), self.hours.get(hour + 1)
        if low is None or high is None:
            return None
        share = position - hour
        return (1.0 - share) * low[0] / low[1] + share * high[0] / high[1]
