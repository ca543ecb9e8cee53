"""The safety margins from what the station shows, and the outdoor corroboration, one piece at a time."""

from __future__ import annotations

import pytest

from gateway.control.model import OutdoorSource, Reading, Signal
from gateway.control.outdoor import NetworkRelation, corroboration
from gateway.control.safety import (
    BoostCeiling,
    RecentLow,
    RoomDynamics,
    coast_band_k,
    day_margin_k,
    night_margin_k,
    room_now,
)
from tests.control.test_outdoor import NONE, supervisor

HOUR = 3600.0


def test_the_coast_band_grows_with_the_cooling_rate_the_report_interval_and_the_ramp() -> None:
    assert coast_band_k(0.0, 0.25, 1.0, 0.1) == pytest.approx(0.1)  # a room that does not cool: one step
    assert coast_band_k(0.8, 0.25, 0.5, 0.1) == pytest.approx(0.7)  # a Beijing room
    assert coast_band_k(2.0, 0.5, 0.5, 0.1) == pytest.approx(2.1)  # a corner room in -25 C, reports lost
    assert night_margin_k(2.0, 0.25, 0.1) == pytest.approx(0.6)
    assert room_now(17.0, 0.25, 2.0) == pytest.approx(16.5)  # it has been cooling since it was read
    assert room_now(17.0, 0.25, -1.0) == 17.0  # never warmer than read


def test_the_day_target_is_aimed_half_a_sensor_step_above_the_margin() -> None:
    # A reading is rounded to the sensor's step: a room read at 18.0 may be 17.95.
    assert day_margin_k(0.15, 0.1) == pytest.approx(0.2)
    assert day_margin_k(0.15, 0.5) == pytest.approx(0.4)  # a coarse sensor needs more


def test_a_room_that_cools_faster_than_believed_is_believed_at_once_and_slower_only_partly() -> None:
    dynamics = RoomDynamics(default_per_h=1.0 / 30.0)
    assert dynamics.rate_k_per_h("A", 18.0, -12.0) == pytest.approx(1.0)  # 30 K above outdoors, 30 h
    # A coast: the room falls 1 K in the first half hour at -12 C outdoors (reports every 10 min).
    for minute, value in ((0, 18.0), (10, 17.7), (20, 17.3), (30, 17.0)):
        dynamics.observe({"A": Reading(value, True, 0.0)}, {"A": value}, minute * 60.0, -12.0, coasting=True)
    fast = 1.0 / 0.5 / (17.5 + 12.0)
    assert dynamics.coefficient("A") == pytest.approx(fast)
    assert dynamics.report_h("A", 0.0) == pytest.approx(10 / 60) and dynamics.resolution == pytest.approx(0.3)
    dynamics.observe({"A": Reading(17.0, True, 0.0)}, {"A": 17.0}, 1860.0, -12.0, coasting=False)  # coast over
    # A slower coast the next night moves the belief only 30 % of the way down.
    for minute, value in ((0, 18.0), (120, 17.0)):
        dynamics.observe({"A": Reading(value, True, 0.0)}, {"A": value}, 86_400.0 + minute * 60.0, -12.0, True)
    dynamics.observe({"A": Reading(17.0, True, 0.0)}, {"A": 17.0}, 86_400.0 + 7260.0, -12.0, coasting=False)
    slow = 1.0 / 2.0 / (17.5 + 12.0)
    assert dynamics.coefficient("A") == pytest.approx(fast + 0.3 * (slow - fast))


def test_the_boost_ceiling_is_what_the_limiters_last_allowed_for_a_day() -> None:
    ceiling = BoostCeiling()
    assert ceiling.ceiling(85.0) == 85.0  # never limited: the curve's maximum
    ceiling.observe(0.0, 78.5, limiting=True)
    ceiling.observe(HOUR, 60.0, limiting=False)  # the day after the boost: lower, not limited
    assert ceiling.ceiling(85.0) == 78.5
    ceiling.observe(25 * HOUR, 60.0, limiting=False)
    assert ceiling.ceiling(85.0) == 85.0  # a day later it says nothing about tonight


def test_the_night_is_planned_as_cold_as_the_last_day_and_colder_if_the_weather_is_cooling() -> None:
    recent = RecentLow()
    for hour in range(24):
        recent.add(hour * HOUR, -5.0 if hour == 5 else 0.0)
    assert recent.add(24 * HOUR, 0.0) == -5.0  # same weather as yesterday: last night's coldest hour
    cooling = RecentLow()
    for hour in range(25):
        cooling.add(hour * HOUR, -0.25 * hour)  # 6 K colder than the same hour yesterday
    # The coldest hour of the last day is now (-6 C), and the weather cooled 6 K since this hour
    # yesterday: the coming night is planned 6 K colder still.
    assert cooling.add(24 * HOUR + 60.0, -6.0) == pytest.approx(-12.0)


def test_the_network_supply_read_backwards_corroborates_or_contradicts_an_outdoor_jump() -> None:
    network = NetworkRelation()
    assert network.outdoor_for(110.0) is None  # nothing learned yet: no evidence
    for minute in range(3 * 24 * 60):  # three days of a -25 .. -15 C daily swing
        outdoor = -20.0 + 5.0 * ((minute % 1440) / 720.0 - 1.0)
        network.learn(outdoor, 115.0 + 1.5 * (-24.0 - outdoor), 60.0)  # 1.5 K of supply per outdoor K
    assert network.outdoor_for(115.0 - 1.5 * 4.0) == pytest.approx(-20.0, abs=0.5)
    assert corroboration(-5.0, None, -20.0) is False  # a jump the network does not see
    assert corroboration(-18.0, None, -20.0) is True
    assert corroboration(-5.0, -5.5, -20.0) is True  # dispatch, when fresh, is the stronger witness
    assert corroboration(-5.0, None, None) is None


def test_a_jump_the_network_contradicts_stays_refused_even_once_the_weather_could_have_got_there() -> None:
    sup = supervisor(max_rate_k_per_h=8, jump_confirm_s=1800, hold_last_good_s=3 * HOUR, default_c=-24.0)
    for minute in range(3 * 24 * 60):
        outdoor = -20.0 + 5.0 * ((minute % 1440) / 720.0 - 1.0)
        sup.update(Reading(outdoor), NONE, minute * 60.0, Reading(115.0 + 1.5 * (-24.0 - outdoor)))
    t0, primary = 3 * 24 * HOUR, Reading(115.0 - 1.5 * 4.0)  # the network still runs for -20 C
    states = [sup.update(Reading(-5.0), NONE, t0 + minute * 60.0, primary) for minute in range(6 * 60)]
    assert all(s.source is not OutdoorSource.SENSOR for s in states)  # not even after 2 h at 8 K/h
    assert all(Signal.OUTDOOR_SUSPECT in s.signals and "contradicted" in s.fault for s in states)
    before = -20.0 + 5.0 * (1439 / 720.0 - 1.0)  # the last reading before the jump
    assert {s.value_c for s in states if s.source is OutdoorSource.LAST_GOOD} == {before}
    assert states[-1].source is OutdoorSource.DEFAULT  # last good held from before the jump, 3 h, no longer
    back = sup.update(Reading(-19.8), NONE, t0 + 6 * HOUR + 60.0, primary)
    assert back.source is OutdoorSource.SENSOR  # moving again, and where the weather could have gone
