"""Outdoor plausibility (range, rate, frozen) and the fallback chain, one signal per step."""

from __future__ import annotations

from gateway.control.model import OutdoorSource, Reading, Signal
from gateway.control.outdoor import OutdoorSupervisor
from gateway.control.settings import OutdoorSettings

NONE = Reading.missing("none received")


def supervisor(**changes: object) -> OutdoorSupervisor:
    return OutdoorSupervisor(OutdoorSettings.model_validate({"tag": "outdoor_temp", **changes}))


def test_a_good_reading_is_used_as_is() -> None:
    estimate = supervisor().update(Reading(-3.4), NONE, 0.0)
    assert (estimate.value_c, estimate.source, estimate.fault, estimate.signals) == (-3.4, OutdoorSource.SENSOR, "", ())


def test_open_sensor_falls_back_to_the_last_good_value_then_to_the_default() -> None:
    sup = supervisor(hold_last_good_s=3600, default_c=-7.6)
    sup.update(Reading(-2.0), NONE, 0.0)
    held = sup.update(Reading(850.0), NONE, 60.0)
    assert (held.value_c, held.source, held.raw_c) == (-2.0, OutdoorSource.LAST_GOOD, 850.0)
    assert held.fault == "out of range: 850 C"
    assert held.signals == (Signal.OUTDOOR_SENSOR_FAULT, Signal.OUTDOOR_LAST_GOOD)
    late = sup.update(Reading(850.0), NONE, 3661.0)
    assert (late.value_c, late.source) == (-7.6, OutdoorSource.DEFAULT)
    assert late.signals == (Signal.OUTDOOR_SENSOR_FAULT, Signal.OUTDOOR_DEFAULT)


def test_dispatch_value_comes_before_the_last_good_value_while_it_is_fresh() -> None:
    sup = supervisor(dispatch_max_age_s=600)
    sup.update(Reading(-2.0), NONE, 0.0)
    bad = Reading.missing("bad: timeout")
    fresh = sup.update(bad, Reading(-4.0, True, 100.0), 60.0)
    assert (fresh.value_c, fresh.source, fresh.fault) == (-4.0, OutdoorSource.DISPATCH, "bad: timeout")
    stale = sup.update(bad, Reading(-4.0, True, 900.0), 120.0)
    assert (stale.value_c, stale.source) == (-4.0, OutdoorSource.LAST_GOOD)  # the dispatch value was the last good


def test_an_implausible_jump_without_evidence_is_refused_until_the_new_level_has_held_and_moves() -> None:
    sup = supervisor(max_rate_k_per_h=8, jump_confirm_s=1800)
    sup.update(Reading(-5.0), NONE, 0.0)
    spike = sup.update(Reading(15.0), NONE, 60.0)
    assert spike.source is OutdoorSource.LAST_GOOD and spike.value_c == -5.0
    assert spike.fault.startswith("implausible jump") and Signal.OUTDOOR_SUSPECT in spike.signals
    assert sup.update(Reading(-5.1), NONE, 120.0).source is OutdoorSource.SENSOR  # spike gone: back at once
    sup.update(Reading(3.0), NONE, 180.0)  # a real step (sensor replaced, sudden front)...
    assert sup.update(Reading(3.0), NONE, 180.0 + 1799.0).source is OutdoorSource.LAST_GOOD
    stuck = sup.update(Reading(3.0), NONE, 180.0 + 1800.0)  # held, but not moving: a stuck sensor looks so
    assert (stuck.source, stuck.value_c) == (OutdoorSource.LAST_GOOD, -5.1)
    assert "not moving" in stuck.fault
    accepted = sup.update(Reading(3.2), NONE, 180.0 + 1860.0)  # ...is accepted once it has held and moves
    assert (accepted.source, accepted.value_c) == (OutdoorSource.SENSOR, 3.2)


def test_weather_speed_changes_are_not_jumps() -> None:
    sup = supervisor(max_rate_k_per_h=8)
    for minute in range(240):
        estimate = sup.update(Reading(-10.0 + 0.1 * minute), NONE, 60.0 * minute)  # 6 K/h
        assert estimate.source is OutdoorSource.SENSOR


def test_a_frozen_reading_is_detected() -> None:
    sup = supervisor(frozen_after_s=6 * 3600, frozen_tolerance_k=0.05)
    for minute in range(0, 6 * 60, 10):
        assert sup.update(Reading(-1.3), NONE, 60.0 * minute).source is OutdoorSource.SENSOR
    frozen = sup.update(Reading(-1.3), NONE, 6 * 3600.0)
    assert frozen.fault == "frozen at -1.3 C" and Signal.OUTDOOR_SENSOR_FAULT in frozen.signals
    assert sup.update(Reading(-1.5), NONE, 6 * 3600.0 + 60).source is OutdoorSource.SENSOR


def test_frozen_check_can_be_switched_off() -> None:
    sup = supervisor(frozen_after_s=None)
    assert sup.update(Reading(0.0), NONE, 0.0).source is OutdoorSource.SENSOR
    assert sup.update(Reading(0.0), NONE, 30 * 86400.0).source is OutdoorSource.SENSOR
