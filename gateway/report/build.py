"""A station's report for dispatch, assembled from its configuration and the historian.

The configuration says what to read and by which rules (rooms and comfort contract from the
controller's circuits, season start from its calendar, area, meter and tiers from ``report:``);
the historian gives the series; ``compliance`` does the counting.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from gateway.alarms.events import INTERRUPTION
from gateway.config import GatewayConfig
from gateway.control.settings import ControllerConfig
from gateway.control.settings import ControllerSettings
from gateway.report.compliance import (
    HOUR_S,
    ComfortRule,
    RefundTier,
    RoomDay,
    SeasonSummary,
    heat_used,
    hourly_means,
    local_days,
    room_days,
    season_summary,
)
from gateway.report.historian import Historian, StoredEvent

DEFAULT_HOLD_S = 600.0
"""How long a value holds between samples when the station sends no integrity refresh to go by."""
FIRST_WEEK_DAYS = 7
REPORT_HOURS = (dt.time(9, 0), dt.time(17, 0))
"""Dispatch asks for the first week's hourly figures at 09:00 and 17:00 (domain brief, "Operation")."""


@dataclass(frozen=True, slots=True)
class HourRow:
    """One hour of the first-week report: the report it belongs to and each tag's hourly mean."""

    report_at: dt.datetime
    hour: dt.datetime
    means: dict[str, float | None]


@dataclass(frozen=True, slots=True)
class Report:
    station: str
    name: str
    start: dt.date
    end: dt.date  # exclusive
    zone: ZoneInfo
    rooms: dict[str, dict[float, float]]  # room -> hour start -> mean
    room_days: list[RoomDay]
    summary: SeasonSummary
    first_week: list[HourRow]
    first_week_tags: tuple[str, ...]
    rules: dict[str, ComfortRule]  # room -> its comfort contract
    supply: dict[str, list[tuple[float, float, float]]]  # circuit -> (outdoor, supply, curve) hourly means
    interruptions: list[StoredEvent]  # supply interruptions with an update in the range, by start


def build_report(config: GatewayConfig, controller_config: ControllerConfig, historian: Historian,
                 start: dt.date, end: dt.date) -> Report:
    """Everything ``heatgw report`` shows for local days ``start`` to ``end`` (exclusive)."""
    controller = controller_config.settings
    zone = ZoneInfo(config.station.timezone)
    begin, finish = _instant(start, zone), _instant(end, zone)
    hold = 2 * config.mqtt.integrity_interval_s if config.mqtt is not None else DEFAULT_HOLD_S
    station = config.station.id
    rules: dict[str, ComfortRule] = {}
    tags: dict[str, str] = {}
    for circuit in controller.circuits.values():
        comfort = circuit.comfort
        for room, sensor in circuit.rooms.items():
            rules[room] = ComfortRule(comfort.day_start, comfort.day_end, comfort.day_c, comfort.night_c)
            tags[room] = sensor.temp_tag
    # One hold back, so the value in force at the first hour's start is known.
    rooms = {room: hourly_means(historian.series(station, tag, begin - hold, finish), begin, finish, hold)
             for room, tag in tags.items()}
    tiers = [RefundTier(tier.below_c, tier.refund_pct) for tier in config.report.refund_tiers]
    days = local_days(start, end)
    rows = [row for room, means in rooms.items() for row in room_days(room, means, rules[room], tiers, zone, days)]
    settings = config.report
    heat = heat_used(historian.series(station, settings.energy_tag, begin, finish)) if settings.energy_tag else None
    summary = season_summary(rooms, rules, rows, zone, heat, settings.heated_area_m2)
    first_week = _first_week(config, controller, historian, start, end, zone, hold)
    supply = _supply_against_curve(config, controller_config, historian, begin, finish, hold)
    interruptions = historian.events(station, INTERRUPTION, begin, finish)
    return Report(station, config.station.name, start, end, zone, rooms, rows, summary, first_week,
                  settings.first_week_tags, rules, supply, interruptions)


def _supply_against_curve(config: GatewayConfig, controller: ControllerConfig, historian: Historian,
                          begin: float, finish: float, hold: float) -> dict[str, list[tuple[float, float, float]]]:
    """Per circuit with a supply tag: each hour's mean outdoor and supply temperature, and what the
    circuit's filed curve asks at that outdoor temperature."""
    station = config.station.id
    outdoor = hourly_means(historian.series(station, controller.settings.outdoor.tag, begin - hold, finish),
                           begin, finish, hold)
    found = {}
    for name, circuit in controller.settings.circuits.items():
        if circuit.supply_tag is None:
            continue
        supply = hourly_means(historian.series(station, circuit.supply_tag, begin - hold, finish), begin, finish, hold)
        curve = controller.curves[name]
        found[name] = [(outdoor[hour], supply[hour], float(curve.supply_at(outdoor[hour])))
                       for hour in sorted(outdoor.keys() & supply.keys())]
    return found


def _first_week(config: GatewayConfig, controller: ControllerSettings, historian: Historian, start: dt.date,
                end: dt.date, zone: ZoneInfo, hold: float) -> list[HourRow]:
    """Hourly means of the first week of the season that lies in the range, grouped into the
    09:00 report (the hours since 17:00 the day before) and the 17:00 report (since 09:00)."""
    tags = config.report.first_week_tags
    if not tags:
        return []
    month, day = (int(part) for part in controller.season.heating_from.split("-"))
    season_start = next((dt.date(year, month, day) for year in (start.year, start.year + 1)
                         if start <= dt.date(year, month, day) < end), None)
    if season_start is None:
        return []
    week_end = min(season_start + dt.timedelta(days=FIRST_WEEK_DAYS), end)
    begin, finish = _instant(season_start, zone), _instant(week_end, zone)
    means = {tag: hourly_means(historian.series(config.station.id, tag, begin - hold, finish), begin, finish, hold)
             for tag in tags}
    rows = []
    hour = begin
    while hour + HOUR_S <= finish:
        local = dt.datetime.fromtimestamp(hour, zone)
        rows.append(HourRow(_report_at(local), local, {tag: means[tag].get(hour) for tag in tags}))
        hour += HOUR_S
    return rows


def _report_at(hour: dt.datetime) -> dt.datetime:
    """The 09:00 or 17:00 report that covers the hour starting at ``hour`` (the first one after its end)."""
    ends = hour + dt.timedelta(hours=1)
    for day in (ends.date(), ends.date() + dt.timedelta(days=1)):
        for at in REPORT_HOURS:
            candidate = dt.datetime.combine(day, at, hour.tzinfo)
            if candidate >= ends:
                return candidate
    raise AssertionError("unreachable: a report follows every hour within a day")


def _instant(day: dt.date, zone: ZoneInfo) -> float:
    return dt.datetime.combine(day, dt.time(0, 0), zone).timestamp()
