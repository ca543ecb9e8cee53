"""Outdoor temperature profiles: callables of POSIX time (s, UTC) -> degC.

Three kinds, all deterministic for a given seed and cheap enough to call every simulation step:

* ``ConstantProfile`` - a fixed temperature, for tests (e.g. the design outdoor temperature);
* ``SyntheticProfile`` - a constant mean plus a daily cycle plus weather fronts;
* ``SeasonProfile`` - the same cycle and fronts on a smooth annual curve through a city's
  monthly means (Beijing by default), for whole-season runs (``heating_season`` gives the dates).

The daily cycle is an asymmetric cosine with its minimum at 05:00 and maximum at 14:00 local
solar-ish time (a 9 h rise, 15 h fall, like a clear winter day). Fronts are a sum of three
slow sinusoids with periods of 3-9 days and seeded random phases: a cheap, smooth stand-in for
the multi-day swings of passing highs and lows, whose monthly mean stays near zero.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np

OutdoorProfile = Callable[[float], float]

BEIJING_MONTHLY_MEANS_C: tuple[float, ...] = (-4.0, -1.0, 6.0, 14.0, 20.0, 25.0, 27.0, 26.0, 21.0, 13.0, 4.0, -2.0)
"""Beijing monthly mean air temperatures Jan..Dec, degC (climate normals, rounded to 1 K)."""

_DAY_S = 86400.0
_YEAR_DAYS = 365.2425
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MIN_HOUR = 5.0
_MAX_HOUR = 14.0
_FRONT_PERIODS_D = (3.3, 5.1, 8.7)


def daily_shape(local_hour: float) -> float:
    """Daily temperature shape in [-1, 1]: -1 at 05:00, +1 at 14:00, smooth, zero mean over a day."""
    h = local_hour % 24.0
    rise = _MAX_HOUR - _MIN_HOUR
    if _MIN_HOUR <= h < _MAX_HOUR:
        return -math.cos(math.pi * (h - _MIN_HOUR) / rise)
    since_max = (h - _MAX_HOUR) % 24.0
    return math.cos(math.pi * since_max / (24.0 - rise))


@dataclass(frozen=True, slots=True)
class ConstantProfile:
    """The same outdoor temperature at every instant."""

    temperature_c: float

    def __call__(self, t: float) -> float:
        return self.temperature_c


@dataclass(frozen=True, slots=True)
class _Fronts:
    """Sum of slow sinusoids with seeded phases; standard deviation ``std_k`` over a long run."""

    omegas: tuple[float, ...]
    phases: tuple[float, ...]
    amplitude_k: float

    @classmethod
    def seeded(cls, seed: int, std_k: float) -> _Fronts:
        rng = np.random.default_rng([seed, 0x57EA])
        phases = tuple(float(p) for p in rng.uniform(0.0, 2.0 * math.pi, len(_FRONT_PERIODS_D)))
        omegas = tuple(2.0 * math.pi / (p * _DAY_S) for p in _FRONT_PERIODS_D)
        amplitude = std_k * math.sqrt(2.0 / len(_FRONT_PERIODS_D))
        return cls(omegas, phases, amplitude)

    def __call__(self, t: float) -> float:
        return self.amplitude_k * sum(math.sin(w * t + p) for w, p in zip(self.omegas, self.phases, strict=True))


@dataclass(frozen=True)
class SyntheticProfile:
    """Constant mean + daily cycle + seeded fronts (e.g. a cold week around the design temperature)."""

    mean_c: float
    daily_amplitude_k: float = 4.5
    front_std_k: float = 3.0
    seed: int = 0
    utc_offset_h: float = 8.0
    _fronts: _Fronts = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_fronts", _Fronts.seeded(self.seed, self.front_std_k))

    def __call__(self, t: float) -> float:
        local_hour = (t / 3600.0 + self.utc_offset_h) % 24.0
        return self.mean_c + self.daily_amplitude_k * daily_shape(local_hour) + self._fronts(t)


@dataclass(frozen=True)
class SeasonProfile:
    """Annual curve through monthly means + daily cycle + seeded fronts.

    The monthly means sit at mid-month and a periodic Catmull-Rom spline joins them, so the
    curve is smooth across months and years (a month's mean of the curve is within a few tenths
    of a K of its table value; January, a minimum, comes out slightly warmer). The day of the
    year is taken as local time modulo the mean Gregorian year counted from 1970, which drifts
    at most ~0.75 day against the calendar and keeps each call to a few float operations.
    """

    seed: int = 0
    monthly_means_c: Sequence[float] = BEIJING_MONTHLY_MEANS_C
    daily_amplitude_k: float = 4.5
    front_std_k: float = 3.0
    utc_offset_h: float = 8.0
    _fronts: _Fronts = field(init=False, repr=False)
    _mid_days: tuple[float, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.monthly_means_c) != 12:
            raise ValueError("monthly_means_c needs 12 values, January first")
        object.__setattr__(self, "_fronts", _Fronts.seeded(self.seed, self.front_std_k))
        starts = np.cumsum((0, *_MONTH_DAYS[:-1]))
        object.__setattr__(
            self, "_mid_days", tuple(float(s + d / 2.0) for s, d in zip(starts, _MONTH_DAYS, strict=True))
        )

    def seasonal_mean_c(self, t: float) -> float:
        """The smooth annual curve alone (no daily cycle, no fronts) at POSIX time ``t``."""
        day = ((t / 3600.0 + self.utc_offset_h) / 24.0) % _YEAR_DAYS
        mids = self._mid_days
        i = bisect.bisect_right(mids, day) - 1  # -1 before mid-January
        d0 = mids[i] if i >= 0 else mids[-1] - _YEAR_DAYS
        d1 = mids[i + 1] if i + 1 < 12 else mids[0] + _YEAR_DAYS
        frac = (day - d0) / (d1 - d0)
        y = self.monthly_means_c
        p0, p1, p2, p3 = (y[(i + k) % 12] for k in (-1, 0, 1, 2))
        return _catmull_rom(p0, p1, p2, p3, frac)

    def __call__(self, t: float) -> float:
        local_hour = (t / 3600.0 + self.utc_offset_h) % 24.0
        return self.seasonal_mean_c(t) + self.daily_amplitude_k * daily_shape(local_hour) + self._fronts(t)


def _catmull_rom(p0: float, p1: float, p2: float, p3: float, f: float) -> float:
    """Uniform Catmull-Rom segment between p1 (f = 0) and p2 (f = 1)."""
    return 0.5 * (
        2.0 * p1
        + (p2 - p0) * f
        + (2.0 * p0 - 5.0 * p1 + 4.0 * p2 - p3) * f * f
        + (3.0 * p1 - p0 - 3.0 * p2 + p3) * f * f * f
    )


@dataclass(frozen=True, slots=True)
class SeasonDates:
    """A city's heating season as (month, day) pairs: from ``heating_from`` (autumn) to ``heating_until``."""

    heating_from: tuple[int, int] = (11, 15)
    heating_until: tuple[int, int] = (3, 15)


@dataclass(frozen=True, slots=True)
class Climate:
    """What a station file says about its city's weather (see ``SeasonProfile`` for the model)."""

    design_outdoor_c: float = -7.6
    monthly_means_c: tuple[float, ...] = BEIJING_MONTHLY_MEANS_C
    daily_amplitude_k: float = 4.5
    front_std_k: float = 3.0
    seed: int = 1

    def profile(self, seed: int | None = None, utc_offset_h: float = 8.0) -> SeasonProfile:
        """The city's seeded season weather (``seed`` replaces the file's, for a second weather year)."""
        return SeasonProfile(
            seed=self.seed if seed is None else seed,
            monthly_means_c=self.monthly_means_c,
            daily_amplitude_k=self.daily_amplitude_k,
            front_std_k=self.front_std_k,
            utc_offset_h=utc_offset_h,
        )


def heating_season(
    first_year: int, utc_offset_h: float = 8.0, dates: SeasonDates = SeasonDates()
) -> tuple[datetime, datetime]:
    """The season starting in ``first_year`` (15 Nov - 15 Mar by default), site local midnights, aware."""
    tz = timezone(timedelta(hours=utc_offset_h))
    (m0, d0), (m1, d1) = dates.heating_from, dates.heating_until
    return datetime(first_year, m0, d0, tzinfo=tz), datetime(first_year + 1, m1, d1, tzinfo=tz)
