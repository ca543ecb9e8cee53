"""The counting rules of the dispatch report, as pure functions."""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

import pytest

from gateway.report.compliance import (
    ComfortRule,
    RefundTier,
    heat_used,
    hourly_means,
    refund_tier,
    room_days,
    season_summary,
)

UTC = ZoneInfo("UTC")
ZIBO = [RefundTier(18, 20), RefundTier(16, 50), RefundTier(12, 100)]
RULE = ComfortRule(dt.time(6), dt.time(21), 18.0, 16.0)


def test_an_hourly_mean_weights_each_value_by_how_long_it_held() -> None:
    # 10 for the first 45 minutes, 30 for the last 15: 15, not the 20 a plain average gives.
    series = [(0.0, 10.0), (2700.0, 30.0), (3600.0, 30.0)]
    assert hourly_means(series, 0, 3600, max_hold_s=3600) == {0.0: 15.0}


def test_the_value_in_force_at_the_hours_start_counts_for_it() -> None:
    series = [(-600.0, 20.0), (1800.0, 22.0)]
    assert hourly_means(series, 0, 3600, max_hold_s=3600) == {0.0: 21.0}


def test_an_hour_with_a_silence_longer_than_the_hold_has_no_mean() -> None:
    series = [(0.0, 20.0), (700.0, 20.0), (2500.0, 20.0), (3600.0, 20.0)]
    assert hourly_means(series, 0, 3600, max_hold_s=1800) == {0.0: 20.0}
    assert hourly_means(series, 0, 3600, max_hold_s=1000) == {}, "700 s to 2500 s is a hole"


def test_a_bad_reading_is_a_hole_never_a_value() -> None:
    series = [(0.0, 20.0), (1800.0, math.nan), (1900.0, 20.0)]
    assert hourly_means(series, 0, 3600, max_hold_s=3600) == {}


def test_nothing_known_before_the_hour_means_no_mean() -> None:
    assert hourly_means([(60.0, 20.0)], 0, 3600, max_hold_s=3600) == {}


@pytest.mark.parametrize("temperature, refund", [(18.0, None), (17.99, 20), (16.0, 20), (15.9, 50), (12.0, 50),
                                                 (11.9, 100), (3.0, 100)])
def test_refund_tiers_follow_the_zibo_rule_at_their_edges(temperature: float, refund: float | None) -> None:
    tier = refund_tier(temperature, ZIBO)
    assert (None if tier is None else tier.refund_pct) == refund


def test_a_room_day_counts_daytime_hours_below_target_and_any_hour_below_the_floor() -> None:
    day = dt.date(2026, 1, 10)
    start = dt.datetime.combine(day, dt.time(0), UTC).timestamp()
    # 15.5 C from 00:00 to 07:00 (7 h), then 17.5 until 08:00, then 19 for the rest of the day.
    means = {start + h * 3600: (15.5 if h < 7 else 17.5 if h < 8 else 19.0) for h in range(24)}
    (row,) = room_days("A-1", means, RULE, ZIBO, UTC, [day])
    assert row.lowest_day_hour_c == 15.5, "06:00-07:00 is in the comfort window"
    assert row.hours_below_day_c == 2  # 06-07 and 07-08
    assert row.hours_below_night_c == 7  # the whole night counts against the 16 C floor
    assert row.tier is not None and row.tier.refund_pct == 50
    assert row.hours_with_data == 24


def test_a_day_without_data_is_reported_as_such_not_as_compliant() -> None:
    (row,) = room_days("A-1", {}, RULE, ZIBO, UTC, [dt.date(2026, 1, 10)])
    assert (row.lowest_day_hour_c, row.tier, row.hours_with_data) == (None, None, 0)


def test_local_days_follow_the_station_time_zone() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    day = dt.date(2026, 1, 10)
    # 22:00-23:00 UTC on the 9th is 06:00-07:00 on the 10th in Shanghai.
    hour = dt.datetime(2026, 1, 9, 22, tzinfo=UTC).timestamp()
    (row,) = room_days("A-1", {hour: 15.0}, RULE, ZIBO, shanghai, [day])
    assert row.lowest_day_hour_c == 15.0


def test_heat_is_the_sum_of_increments_and_a_meter_reset_does_not_go_negative() -> None:
    series = [(0.0, 100.0), (1.0, 101.5), (2.0, math.nan), (3.0, 102.0), (4.0, 0.5), (5.0, 1.0)]
    assert heat_used(series) == pytest.approx(2.5)
    assert heat_used([(0.0, 1.0)]) is None


def test_compliance_counts_comfort_hours_where_every_room_is_warm() -> None:
    base = dt.datetime(2026, 1, 10, 6, tzinfo=UTC).timestamp()
    rooms = {"A": {base: 18.5, base + 3600: 18.5, base - 3600: 10.0},
             "B": {base: 18.0, base + 3600: 17.9}}
    rules = {"A": RULE, "B": RULE}
    rows = room_days("A", rooms["A"], RULE, ZIBO, UTC, [dt.date(2026, 1, 10)]) + room_days(
        "B", rooms["B"], RULE, ZIBO, UTC, [dt.date(2026, 1, 10)])
    summary = season_summary(rooms, rules, rows, UTC, heat_gj=74.0, area_m2=37_000)
    assert (summary.comfort_hours, summary.compliant_hours) == (2, 1), "05:00 is outside the window"
    assert summary.refund_room_days == {20: 1}
    assert summary.heat_gj_per_m2 == pytest.approx(0.002)
