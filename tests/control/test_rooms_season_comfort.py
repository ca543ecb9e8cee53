"""Room choice, calendar, cut-out, frost protection, comfort floor and optimum-start learning."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.control.comfort import RATE_MEMORY, OptimumStart, comfort_floor, headroom_k, heatup_rate, hours_to_day_start
from gateway.control.model import Reading
from gateway.control.rooms import choose_room
from gateway.control.season import CutoutSwitch, DailyMeans, FrostGuard, season_mode
from gateway.control.settings import (
    ComfortSettings,
    Cutout,
    FrostSettings,
    RoomTrimSettings,
    SeasonMode,
    SeasonSettings,
)
from tests.control.conftest import SHANGHAI, controller_config

ROOMS = RoomTrimSettings()


def test_the_coldest_valid_room_is_chosen() -> None:
    choice = choose_room({"a": Reading(19.5, True, 300), "b": Reading(18.4, True, 600), "c": Reading(20.1)}, ROOMS)
    assert (choice.value_c, choice.name, choice.valid, choice.total, choice.invalid) == (18.4, "b", 3, 3, ())


def test_stale_bad_and_implausible_rooms_drop_out() -> None:
    choice = choose_room({
        "stale": Reading(15.0, True, 1801.0),  # last report 30 min ago: a lost sensor, not a cold room
        "bad": Reading(None, False, reason="bad: no_value"),
        "open": Reading(85.0),
        "ok": Reading(19.0, True, 100.0),
    }, ROOMS)
    assert (choice.value_c, choice.name) == (19.0, "ok")
    assert set(choice.invalid) == {"stale", "bad", "open"}


def test_no_valid_room_means_no_room_value() -> None:
    choice = choose_room({"a": Reading(18.0, True, 7200.0)}, ROOMS)
    assert choice.value_c is None and choice.name == "" and choice.valid == 0


def test_a_percentile_ignores_one_chronically_cold_room() -> None:
    rooms = {f"r{i}": Reading(20.0 + 0.1 * i) for i in range(10)} | {"window_open": Reading(12.0)}
    assert choose_room(rooms, ROOMS).value_c == 12.0
    choice = choose_room(rooms, RoomTrimSettings(percentile=10))
    assert choice.value_c == pytest.approx(20.0) and choice.name == "r0"


SEASON = SeasonSettings()


@pytest.mark.parametrize(("day", "mode"), [
    (dt.date(2026, 10, 20), SeasonMode.OFF),
    (dt.date(2026, 11, 1), SeasonMode.COLD_CIRCULATION),
    (dt.date(2026, 11, 8), SeasonMode.COMMISSIONING),
    (dt.date(2026, 11, 14), SeasonMode.COMMISSIONING),
    (dt.date(2026, 11, 15), SeasonMode.HEATING),
    (dt.date(2027, 1, 1), SeasonMode.HEATING),
    (dt.date(2027, 3, 15), SeasonMode.HEATING),
    (dt.date(2027, 3, 16), SeasonMode.OFF),
    (dt.date(2027, 7, 1), SeasonMode.OFF),
])
def test_the_calendar(day: dt.date, mode: SeasonMode) -> None:
    assert season_mode(day, [10.0, 10.0, 10.0], SEASON)[0] is mode


def test_cold_weather_starts_early_and_extends() -> None:
    cold, mild = [4.0, 3.0, 5.0], [4.0, 3.0, 5.5]
    assert season_mode(dt.date(2026, 11, 3), cold, SEASON) == (SeasonMode.HEATING, "early start: 3 days at or below 5 C")
    assert season_mode(dt.date(2026, 11, 3), mild, SEASON)[0] is SeasonMode.COLD_CIRCULATION
    assert season_mode(dt.date(2026, 10, 30), cold, SEASON)[0] is SeasonMode.OFF  # before early_from
    assert season_mode(dt.date(2026, 11, 3), cold[:2], SEASON)[0] is SeasonMode.COLD_CIRCULATION  # too few days
    assert season_mode(dt.date(2027, 3, 20), [6.0, 4.0, 4.0], SEASON)[0] is SeasonMode.EXTENSION  # mean 4.7
    assert season_mode(dt.date(2027, 3, 20), [8.0, 6.0, 4.0], SEASON)[0] is SeasonMode.OFF
    assert season_mode(dt.date(2027, 4, 6), cold, SEASON)[0] is SeasonMode.OFF  # after extension_until


def test_manual_override_wins() -> None:
    settings = SeasonSettings(override=SeasonMode.HEATING)
    assert season_mode(dt.date(2027, 7, 1), [], settings) == (SeasonMode.HEATING, "manual override")


def test_season_dates_must_be_in_order() -> None:
    with pytest.raises(ValueError, match="cold_circulation_from <= commissioning_from"):
        SeasonSettings(heating_from="11-01", commissioning_from="11-08")


def test_daily_means_count_complete_days_only() -> None:
    means = DailyMeans()
    for hour in range(24):
        means.add(dt.date(2027, 1, 1), -10.0 if hour < 12 else 0.0, 3600.0)
    means.add(dt.date(2027, 1, 2), 5.0, 3600.0)  # 2 Jan has started: 1 Jan is complete
    assert means.complete == [pytest.approx(-5.0)]
    means.add(dt.date(2027, 1, 3), 5.0, 3600.0)  # 2 Jan had one hour: not counted
    assert len(means.complete) == 1


def test_cutout_has_a_switching_differential() -> None:
    switch, settings = CutoutSwitch(), Cutout(heating_limit_c=17.0, differential_k=1.0)
    assert [switch.update(t, settings) for t in (16.9, 17.0, 16.5, 16.0, 16.5)] == [False, True, True, False, False]
    assert CutoutSwitch(cut_out=True).update(20.0, Cutout(enabled=False)) is False


def test_frost_protection_starts_cold_and_stops_warm() -> None:
    guard, settings = FrostGuard(), FrostSettings()
    assert guard.update(8.0, 10.0, settings) is False
    assert guard.update(4.9, 10.0, settings) is True
    assert guard.update(6.0, 10.0, settings) is True  # inside the hysteresis
    assert guard.update(7.1, 10.0, settings) is False
    assert guard.update(None, -6.0, settings) is True  # no water temperature, frosty weather
    assert guard.update(None, 2.0, settings) is False


COMFORT = ComfortSettings()


def local(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2027, 1, 10, hour, minute, tzinfo=SHANGHAI)


def test_comfort_floor_by_day_and_night() -> None:
    assert comfort_floor(local(12), COMFORT, setback=True, preheating=False).floor_c == pytest.approx(18.25)
    # A building that cannot be warmed back (no headroom, no room to plan with) is not let down.
    assert comfort_floor(local(23), COMFORT, setback=False, preheating=False).floor_c == pytest.approx(18.25)
    night = comfort_floor(local(23), COMFORT, setback=True, preheating=False)
    assert (night.floor_c, night.contract_c, night.phase) == (pytest.approx(16.25), 16.0, "night")
    boost = comfort_floor(local(4), COMFORT, setback=True, preheating=True)
    assert (boost.floor_c, boost.contract_c, boost.phase) == (pytest.approx(18.25), 16.0, "preheat")
    off = ComfortSettings(optimum_start={"enabled": False})
    assert comfort_floor(local(5, 59), off, setback=True, preheating=True).floor_c == pytest.approx(16.25)
    assert hours_to_day_start(local(23), COMFORT) == pytest.approx(7.0)
    assert hours_to_day_start(local(6), COMFORT) == 0.0


def test_the_boost_starts_when_the_slowest_room_needs_all_the_time_left() -> None:
    start = OptimumStart(default_factor=1.0, factors={"slow": 0.5})
    rooms = {"slow": 16.25, "fast": 16.0, "warm": 18.6}
    # headroom 6 K over 30 h: 0.2 K/h at factor 1 (fast), 0.1 K/h at 0.5 (slow: 20 h for 2 K).
    plan = start.plan(rooms, 18.25, 6.0, 30.0, 3.0, hours_left=7.0, lead_h=0.5)
    assert (plan.room, plan.rate_k_per_h, plan.needed_h) == ("slow", pytest.approx(0.1), pytest.approx(20.0))
    assert plan.start  # 7 h left is less than the 20 h it needs: start now (on a cold night, no setback)
    start.factors["slow"] = 4.0  # 0.8 K/h: 2.5 h for 2 K; fast needs 11.25 h
    assert start.plan(rooms, 18.25, 6.0, 30.0, 3.0, hours_left=12.0, lead_h=0.5).room == "fast"
    start.factors["fast"] = 4.0  # now fast needs 2.8 h, slow 2.5 h
    early = start.plan(rooms, 18.25, 6.0, 30.0, 3.0, hours_left=4.0, lead_h=0.5)
    assert early.room == "fast" and early.needed_h == pytest.approx(2.8125) and not early.start
    assert start.plan(rooms, 18.25, 6.0, 30.0, 3.0, hours_left=3.3, lead_h=0.5).start
    # Every room at the target: nothing to plan, no boost.
    assert not start.plan({"warm": 18.6}, 18.25, 6.0, 30.0, 3.0, hours_left=0.1, lead_h=0.5).start


def test_each_room_learns_its_heat_up_rate_from_the_boost() -> None:
    start = OptimumStart(default_factor=1.0)
    # Boost begins at 03:00 (3 h left, 0.5 h of it for the ramp); predicted 0.2 K/h for both rooms.
    start.begin({"quick": 16.3, "slow": 16.3}, 3.0, 6.0, 30.0, 3.0, ramp_h=0.5)
    start.observe(local(4), {"quick": 17.3, "slow": 16.8}, COMFORT)
    assert start.factors == {}  # nobody at the target yet
    start.observe(local(4, 30), {"quick": 18.3, "slow": 17.0}, COMFORT)
    # quick: 2.0 K in 1.5 h - 0.5 h of ramp = 2 K/h, ten times the prediction: raised, but by 1.25x at most
    # (greedy slowly: a factor raised too far makes the next morning late).
    assert start.factors == {"quick": pytest.approx(1.25)}
    start.observe(local(6), {"quick": 18.4, "slow": 17.7}, COMFORT)
    # slow: 1.4 K in 2.5 h = 0.56 K/h, above the prediction, so up, although it was late...
    assert start.factors["slow"] == pytest.approx(1.25)
    assert start.missed_today and not start.active  # ...and the morning is flagged
    start.begin({"slow": 16.0}, 3.0, 6.0, 30.0, 3.0, ramp_h=0.0)
    start.observe(local(6, 0), {"slow": 16.5}, COMFORT)  # 0.5 K in 3 h, predicted 0.25 K/h
    assert start.factors["slow"] == pytest.approx(1.25 * (0.5 / 3.0) / 0.25)  # careful fast: down at once
    start.begin({"slow": 16.0}, 3.0, 6.0, 30.0, 3.0, ramp_h=0.0)
    start.observe(local(6, 0), {"slow": 16.1}, COMFORT)  # too small a rise to learn from
    assert start.factors["slow"] == pytest.approx(1.25 * (0.5 / 3.0) / 0.25)


def test_a_room_is_planned_no_faster_than_it_warmed_in_its_latest_boosts() -> None:
    # The factor scales the curve's headroom; the room's real rate moves far less with it. Learned
    # at 6 K of headroom, a factor that promises 4 K/h at 18 K must not be planned with: the room
    # warmed at 1.0-1.6 K/h on its last mornings.
    start = OptimumStart(default_factor=1.0)
    for rise in (2.0, 1.6, 2.4):  # three boosts of 1.5 h at full supply (2 h less 0.5 h of ramp)
        start.begin({"corner": 16.2}, 2.0, 6.0, 30.0, 5.0, ramp_h=0.5)
        start.observe(local(6), {"corner": 16.2 + rise}, COMFORT)
    assert start.achieved["corner"] == pytest.approx([2.0 / 1.5, 1.6 / 1.5, 2.4 / 1.5])
    start.factors["corner"] = 6.0  # 6 x 18 K / 30 h = 3.6 K/h on paper
    plan = start.plan({"corner": 16.2}, 18.2, 18.0, 30.0, 5.0, hours_left=2.3, lead_h=0.5)
    assert plan.rate_k_per_h == pytest.approx(1.6 / 1.5)  # the slowest of the latest boosts
    # 1.9 h for the 2 K plus the lead: start now (at 3.6 K/h it would wait another 1.2 h).
    assert plan.needed_h == pytest.approx(2.0 / (1.6 / 1.5)) and plan.start
    # Only the latest RATE_MEMORY boosts count: a slow one falls out after a week of quicker ones.
    for _ in range(RATE_MEMORY):
        start.begin({"corner": 16.2}, 2.0, 6.0, 30.0, 5.0, ramp_h=0.5)
        start.observe(local(6), {"corner": 18.2}, COMFORT)
    assert start.achieved["corner"] == pytest.approx([2.0 / 1.5] * RATE_MEMORY)
    # ...and never faster than the factor itself predicts.
    assert start.rate("corner", 3.0, 30.0, 5.0) == pytest.approx(heatup_rate(3.0, 30.0, start.factor("corner"), 5.0))
    assert start.rate("corner", 3.0, 30.0, 5.0) < 2.0 / 1.5


def test_heatup_rate_follows_the_curves_headroom() -> None:
    curve = controller_config().curves["radiators"]
    mild, cold = headroom_k(curve, 5.0, 18.2), headroom_k(curve, -7.6, 18.2)
    assert mild > cold > 0.0  # on a design day there is little left above the needed supply
    assert headroom_k(curve, -20.0, 18.2) == 0.0  # at max supply already
    assert float(curve.supply_for_room(5.0, 18.2 + mild)) == pytest.approx(curve.max_supply_c, abs=1.5)  # linearised
    assert heatup_rate(6.0, 30.0, 1.0, 5.0) == pytest.approx(0.2)
    assert heatup_rate(6.0, 30.0, 2.0, 5.0) == pytest.approx(0.4)
    assert heatup_rate(60.0, 30.0, 1.0, 1.0) == 1.0  # capped
