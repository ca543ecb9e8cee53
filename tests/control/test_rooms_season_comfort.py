"""Room choice, calendar, cut-out, frost protection, comfort floor and optimum-start learning."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.control.comfort import HeatupLearner, comfort_floor, headroom_k, heatup_rate
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
    assert comfort_floor(local(12), COMFORT, 0.5).floor_c == pytest.approx(18.25)
    # A building that cannot be warmed back (no headroom) must not be let down at all.
    assert comfort_floor(local(23), COMFORT, 0.0).floor_c == pytest.approx(18.25)
    night = comfort_floor(local(23), COMFORT, 0.3)  # 7 h at 0.3 K/h: 2.1 K, more than the setback
    assert (night.floor_c, night.contract_c, night.phase) == (pytest.approx(16.25), 16.0, "night")


def test_preheat_ramp_reaches_the_day_target_at_the_day_start() -> None:
    rate = 0.5
    at = {h: comfort_floor(local(h), COMFORT, rate) for h in (1, 2, 4, 5)}
    assert at[1].phase == "night"  # 18 - 0.5 * 5 = 15.5 is below the night floor
    assert at[4].phase == "preheat" and at[4].floor_c == pytest.approx(18.0 - 1.0 + 0.25)
    assert at[5].floor_c == pytest.approx(17.75) and at[5].slope_k_per_h == rate
    assert comfort_floor(local(6), COMFORT, rate).floor_c == pytest.approx(18.25)
    off = ComfortSettings(optimum_start={"enabled": False})
    assert comfort_floor(local(5, 59), off, rate).floor_c == pytest.approx(16.25)


def test_heatup_rate_follows_the_curves_headroom() -> None:
    curve = controller_config().curves["radiators"]
    mild, cold = headroom_k(curve, 5.0, 18.2), headroom_k(curve, -7.6, 18.2)
    assert mild > cold > 0.0  # on a design day there is little left above the needed supply
    assert headroom_k(curve, -20.0, 18.2) == 0.0  # at max supply already
    assert float(curve.supply_for_room(5.0, 18.2 + mild)) == pytest.approx(curve.max_supply_c, abs=1.5)  # linearised
    assert heatup_rate(6.0, 30.0, 1.0, 5.0) == pytest.approx(0.2)
    assert heatup_rate(6.0, 30.0, 2.0, 5.0) == pytest.approx(0.4)
    assert heatup_rate(60.0, 30.0, 1.0, 1.0) == 1.0  # capped


def test_the_learner_slows_after_a_missed_morning_and_speeds_up_after_a_good_one() -> None:
    learner = HeatupLearner(factor=1.0)
    for minute in range(0, 240, 10):
        learner.observe(local(6) + dt.timedelta(minutes=minute), 17.9 if minute == 30 else 18.5, COMFORT)
    assert learner.factor == 1.0  # nothing decided inside the window
    learner.observe(local(10, 1), 18.5, COMFORT)
    assert learner.factor == pytest.approx(0.8) and learner.missed_today
    learner.observe(local(12), 18.5, COMFORT)
    assert learner.factor == pytest.approx(0.8)  # once a day
    for minute in range(0, 241, 10):
        learner.observe(local(6) + dt.timedelta(days=1, minutes=minute), 18.5, COMFORT)
    assert learner.factor == pytest.approx(0.84) and not learner.missed_today
