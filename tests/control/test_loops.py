"""PI with anti-windup, the outdoor damper, the ramp and limit lines: the edges that bite in the field."""

from __future__ import annotations

import math

import pytest

from gateway.control.loops import FirstOrderLag, PiLoop, line_value, ramp
from gateway.control.settings import LinePoint


def test_pi_integrates_and_is_bounded() -> None:
    loop = PiLoop(gain=2.0, integral_s=100.0, low=-5.0, high=5.0)
    assert loop.update(1.0, 50.0) == pytest.approx(2.0 + 1.0)  # P 2, integral 2 * 1 * 50 / 100
    for _ in range(100):
        loop.update(1.0, 50.0)
    assert loop.integral == pytest.approx(5.0 - 2.0)  # stops where the output meets the clamp
    assert loop.output(1.0) == 5.0


def test_pi_does_not_wind_up_against_its_clamp() -> None:
    loop = PiLoop(gain=1.0, integral_s=60.0, low=0.0, high=10.0)
    for _ in range(10_000):  # a day of positive error against the clamp
        loop.update(20.0, 60.0)
    assert loop.output(20.0) == 10.0
    # The error reverses: the output leaves the clamp at once, not after unwinding a day.
    assert loop.update(-1.0, 60.0) < 10.0


def test_pi_blocked_direction_freezes_only_that_direction() -> None:
    loop = PiLoop(gain=1.0, integral_s=60.0, low=-10.0, high=10.0)
    loop.update(1.0, 60.0, up_blocked=True)
    assert loop.integral == 0.0
    loop.update(-1.0, 60.0, up_blocked=True)
    assert loop.integral == pytest.approx(-1.0)
    loop.update(-1.0, 60.0, down_blocked=True)
    assert loop.integral == pytest.approx(-1.0)


def test_pi_rebound_brings_the_integral_inside_new_bounds() -> None:
    loop = PiLoop(gain=1.0, integral_s=60.0, low=-10.0, high=10.0, integral=8.0)
    loop.rebound(-3.0, 3.0)
    assert loop.integral == 3.0 and loop.output(0.0) == 3.0


def test_lag_starts_at_the_first_value_and_reaches_63_percent_in_one_time_constant() -> None:
    lag = FirstOrderLag(time_constant_s=3600.0)
    assert lag.update(-5.0, 0.0) == -5.0
    for _ in range(60):
        value = lag.update(5.0, 60.0)
    assert value == pytest.approx(-5.0 + 10.0 * (1 - math.exp(-1)), abs=1e-9)


def test_lag_damps_a_sensor_jump_and_is_exact_for_any_step() -> None:
    fine = FirstOrderLag(time_constant_s=30 * 3600.0, value=0.0)
    coarse = FirstOrderLag(time_constant_s=30 * 3600.0, value=0.0)
    for _ in range(3600):
        fine.update(30.0, 1.0)  # a 30 K jump held for an hour...
    coarse.update(30.0, 3600.0)
    assert fine.value == pytest.approx(coarse.value, rel=1e-9)
    assert fine.value == pytest.approx(30.0 * (1 - math.exp(-1 / 30)))  # ...moves the damped value ~1 K
    huge = FirstOrderLag(time_constant_s=60.0, value=0.0)
    assert huge.update(10.0, 1e7) == pytest.approx(10.0)  # no overshoot with a step far beyond tau


def test_ramp_limits_both_directions_and_says_so() -> None:
    assert ramp(50.0, 60.0, 60.0, 20.0, 10.0) == (pytest.approx(50.0 + 20.0 / 60), True)
    assert ramp(50.0, 40.0, 60.0, 20.0, 10.0) == (pytest.approx(50.0 - 10.0 / 60), True)
    assert ramp(50.0, 50.1, 60.0, 20.0, 10.0) == (50.1, False)
    assert ramp(50.0, 60.0, 0.0, 20.0, 10.0) == (50.0, True)


def test_line_is_interpolated_and_clamped_at_its_ends() -> None:
    line = [LinePoint(outdoor_c=-15, value=60), LinePoint(outdoor_c=15, value=40)]
    assert line_value(line, 0.0) == pytest.approx(50.0)
    assert line_value(line, -30.0) == 60.0
    assert line_value(line, 30.0) == 40.0
    assert line_value([LinePoint(outdoor_c=0, value=2300)], -20.0) == 2300.0
