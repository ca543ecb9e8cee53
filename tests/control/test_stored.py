"""The heat a slab still holds, and what of a room's error the trim's integral may learn."""

from __future__ import annotations

import math

import pytest

from gateway.control.stored import StoredHeat, learnable_error


def test_stored_heat_follows_the_supply_surplus_through_the_slab_lag() -> None:
    stored = StoredHeat()
    assert stored.update(4.0, 10.0 * 3600.0, lag_h=10.0) == pytest.approx(4.0 * (1.0 - math.exp(-1.0)))
    # and is given back as slowly once the supply is no longer above the integral's own
    assert stored.update(0.0, 10.0 * 3600.0, lag_h=10.0) == pytest.approx(4.0 * (1.0 - math.exp(-1.0)) / math.e)


def test_stored_heat_is_exact_for_any_step_length() -> None:
    one, many = StoredHeat(), StoredHeat()
    one.update(3.0, 6.0 * 3600.0, lag_h=10.5)
    for _ in range(360):
        many.update(3.0, 60.0, lag_h=10.5)
    assert many.supply_k == pytest.approx(one.supply_k)


def test_emitters_without_a_lag_store_nothing() -> None:
    stored = StoredHeat(supply_k=2.0)
    assert stored.update(5.0, 3600.0, lag_h=0.0) == 0.0
    assert stored.room_k(1.5) == 0.0


def test_stored_heat_is_room_kelvin_at_the_curves_slope_and_nothing_where_the_curve_is_flat() -> None:
    stored = StoredHeat(supply_k=3.0)
    assert stored.room_k(1.5) == pytest.approx(2.0)
    assert stored.room_k(0.0) == 0.0  # clamped at a limit: the curve cannot say


def test_a_surplus_the_stored_heat_explains_is_not_learned_and_the_rest_is() -> None:
    assert learnable_error(-0.2, 0.5) == 0.0  # all of it explained
    assert learnable_error(-0.8, 0.5) == pytest.approx(-0.3)  # the part left over
    assert learnable_error(-0.2, 0.0) == -0.2  # nothing stored
    assert learnable_error(-0.2, -1.0) == -0.2  # a deficit in the slab explains no surplus


def test_a_deficit_is_always_learned_in_full() -> None:
    assert learnable_error(0.3, 2.0) == 0.3
    assert learnable_error(0.3, -2.0) == 0.3
