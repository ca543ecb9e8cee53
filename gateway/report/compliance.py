"""What the regulations count, from a station's recorded room temperatures and heat meter.

Pure functions over plain series, so every rule here is testable without a database:

* a **series** is a tag's good samples ``(POSIX seconds, value)`` in time order. Telemetry is sent
  by exception (a value goes out when it changes by its deadband, and at least every integrity
  interval), so a plain average of the samples would over-weight the minutes a room changed fast.
  An hourly mean is therefore **time-weighted**: each sample holds until the next one, but never
  longer than ``max_hold_s`` (the station's integrity interval, twice): past that the sensor or
  the link was silent and the hour has a hole, not a value;
* a **room-day** is one representative room on one local calendar day: the lowest hourly mean
  within the comfort window (06:00-21:00 by default), the hours of that window below the day
  target, the hours of the whole day below the night floor, and the refund tier its lowest
  daytime hour falls in (the Zibo rule: 16-18 °C 20 %, 12-16 °C 50 %, below 12 °C 100 %);
* **heat** is the sum of the meter's positive increments (a meter replaced or reset counts from
  its new reading instead of producing a negative season).
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

Series = Sequence[tuple[float, float]]
"""Samples ``(POSIX seconds, value)`` of one tag, in time order; NaN where the reading was bad."""

HOUR_S = 3600.0


@dataclass(frozen=True, slots=True)
class RefundTier:
    """Below ``below_c`` the day's fee is refunded by ``refund_pct`` (the coldest tier that applies)."""

    below_c: float
    refund_pct: float


@dataclass(frozen=True, slots=True)
class ComfortRule:
    """The comfort contract one room is held to (from its circuit's comfort settings)."""

    day_start: dt.time
    day_end: dt.time
    day_c: float
    night_c: float


@dataclass(frozen=True, slots=True)
class RoomDay:
    """One representative room on one local day."""

    room: str
    day: dt.date
    lowest_day_hour_c: float | None  # lowest hourly mean within the comfort window; None: no data
    hours_below_day_c: int  # comfort-window hours whose mean was below the day target
    hours_below_night_c: int  # hours of the whole day whose mean was below the floor
    hours_with_data: int
    tier: RefundTier | None  # the refund the lowest daytime hour earns; None: compliant or no data


@dataclass(frozen=True, slots=True)
class SeasonSummary:
    """A station's figures over the reported range."""

    heat_gj: float | None
    heat_gj_per_m2: float | None
    comfort_hours: int  # comfort-window hours with every room's mean known
    compliant_hours: int  # ... of them with every room at or above the day target
    refund_room_days: dict[float, int]  # refund_pct -> room-days in that tier

    @property
    def compliance(self) -> float | None:
        return self.compliant_hours / self.comfort_hours if self.comfort_hours else None


def hourly_means(series: Series, start: float, end: float, max_hold_s: float) -> dict[float, float]:
    """Time-weighted mean of each whole hour in ``[start, end)``, keyed by the hour's start (POSIX
    seconds). An hour is left out unless a value is known for all of it: a sample at or before its
    start, and no sample held longer than ``max_hold_s`` inside it."""
    times = [at for at, _ in series]
    means: dict[float, float] = {}
    hour = math.ceil(start / HOUR_S) * HOUR_S
    while hour + HOUR_S <= end:
        mean = _hour_mean(series, times, hour, max_hold_s)
        if mean is not None:
            means[hour] = mean
        hour += HOUR_S
    return means


def _hour_mean(series: Series, times: Sequence[float], hour: float, max_hold_s: float) -> float | None:
    index = bisect.bisect_right(times, hour) - 1  # the sample in force at the hour's start
    if index < 0:
        return None
    hour_end = hour + HOUR_S
    area = 0.0
    while index < len(series) and series[index][0] < hour_end:
        at, value = series[index]
        following = series[index + 1][0] if index + 1 < len(series) else math.inf
        segment_end = min(following, hour_end)
        if segment_end > at + max_hold_s or math.isnan(value):
            return None  # the sensor or the link fell silent, or the reading was bad
        area += value * (segment_end - max(at, hour))
        index += 1
    return area / HOUR_S


def room_days(room: str, means: Mapping[float, float], rule: ComfortRule, tiers: Sequence[RefundTier],
              zone: ZoneInfo, days: Iterable[dt.date]) -> list[RoomDay]:
    """One ``RoomDay`` per local day in ``days`` from a room's hourly means (local hours)."""
    by_day: dict[dt.date, list[tuple[dt.time, float]]] = {}
    for hour, mean in means.items():
        local = dt.datetime.fromtimestamp(hour, zone)
        by_day.setdefault(local.date(), []).append((local.time(), mean))
    rows = []
    for day in days:
        hours = by_day.get(day, [])
        daytime = [mean for at, mean in hours if rule.day_start <= at < rule.day_end]
        lowest = min(daytime) if daytime else None
        rows.append(RoomDay(
            room=room, day=day, lowest_day_hour_c=lowest,
            hours_below_day_c=sum(1 for mean in daytime if mean < rule.day_c),
            hours_below_night_c=sum(1 for _, mean in hours if mean < rule.night_c),
            hours_with_data=len(hours),
            tier=None if lowest is None else refund_tier(lowest, tiers),
        ))
    return rows


def refund_tier(temperature_c: float, tiers: Sequence[RefundTier]) -> RefundTier | None:
    """The coldest tier whose bound ``temperature_c`` is below (None: no refund)."""
    applying = [tier for tier in tiers if temperature_c < tier.below_c]
    return min(applying, key=lambda tier: tier.below_c) if applying else None


def heat_used(series: Series) -> float | None:
    """Energy from a cumulative meter reading: the sum of its positive increments."""
    readings = [value for _, value in series if not math.isnan(value)]
    if len(readings) < 2:
        return None
    return sum(max(0.0, later - earlier) for earlier, later in zip(readings, readings[1:], strict=False))


def season_summary(rooms: Mapping[str, Mapping[float, float]], rules: Mapping[str, ComfortRule],
                   room_day_rows: Iterable[RoomDay], zone: ZoneInfo, heat_gj: float | None,
                   area_m2: float | None) -> SeasonSummary:
    """Heat, heat per m², the share of comfort hours with every room warm, and refund room-days."""
    hours = sorted({hour for means in rooms.values() for hour in means})
    comfort = compliant = 0
    for hour in hours:
        local = dt.datetime.fromtimestamp(hour, zone).time()
        in_window = [room for room, rule in rules.items() if rule.day_start <= local < rule.day_end]
        if not in_window or any(hour not in rooms[room] for room in in_window):
            continue
        comfort += 1
        compliant += all(rooms[room][hour] >= rules[room].day_c for room in in_window)
    refunds: dict[float, int] = {}
    for row in room_day_rows:
        if row.tier is not None:
            refunds[row.tier.refund_pct] = refunds.get(row.tier.refund_pct, 0) + 1
    per_m2 = heat_gj / area_m2 if heat_gj is not None and area_m2 else None
    return SeasonSummary(heat_gj, per_m2, comfort, compliant, refunds)


def local_days(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day from ``start`` up to and excluding ``end``."""
    return [start + dt.timedelta(days=n) for n in range((end - start).days)]
