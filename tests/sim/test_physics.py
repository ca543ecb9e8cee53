"""Unit tests of the pure physics laws in sim.physics."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from sim.physics import (
    CP_WATER,
    counterflow_duty,
    counterflow_effectiveness,
    counterflow_ua_for_duty,
    kv_flow_m3h,
    log_mean_dt,
    plate_ua,
    primary_supply_curve_c,
    pump_flow_m3h,
    pump_head_mpa,
    quality_regulation_supply_c,
    radiator_output,
    radiator_return,
    series_kv,
    valve_relative_kv,
    water_cp,
    water_density,
)

DT_LM_75_50_20 = log_mean_dt(55.0, 30.0)


@pytest.mark.parametrize(("t_c", "rho"), [(4.0, 1000.0), (20.0, 998.2), (60.0, 983.2), (100.0, 958.4), (115.0, 947.1)])
def test_water_density_matches_iapws(t_c: float, rho: float) -> None:
    assert water_density(t_c) == pytest.approx(rho, abs=0.8)


def test_water_cp_has_its_minimum_near_35_c() -> None:
    assert water_cp(40.0) < water_cp(20.0) < water_cp(0.0)
    assert water_cp(40.0) < water_cp(80.0) < water_cp(120.0)
    assert water_cp(60.0) == pytest.approx(4184.3)


def test_equal_percentage_valve_characteristic() -> None:
    r = 50.0
    assert valve_relative_kv(100.0, r, 2.0) == pytest.approx(1.0)
    assert valve_relative_kv(0.0, r, 2.0) == 0.0
    assert valve_relative_kv(50.0, r, 2.0) == pytest.approx(r**-0.5)
    # equal percentage: every 10 % of lift multiplies Kv by the same factor R^0.1
    ratios = [valve_relative_kv(x + 10.0, r, 2.0) / valve_relative_kv(x, r, 2.0) for x in (10.0, 40.0, 80.0)]
    assert ratios == pytest.approx([r**0.1] * 3)
    # tight shut-off below the seat region, continuous at its edge, monotonic everywhere
    assert valve_relative_kv(1.0, r, 2.0) == pytest.approx(0.5 * valve_relative_kv(2.0, r, 2.0), rel=0.1)
    lifts = np.linspace(0.0, 100.0, 1001)
    kvs = [valve_relative_kv(float(x), r, 2.0) for x in lifts]
    assert all(b >= a for a, b in itertools.pairwise(kvs))


def test_kv_and_series_resistances() -> None:
    assert kv_flow_m3h(10.0, 0.1, 1000.0) == pytest.approx(10.0)  # Kv is m3/h at 1 bar
    assert kv_flow_m3h(10.0, 0.4, 1000.0) == pytest.approx(20.0)  # Q ~ sqrt(dp)
    assert series_kv(40.0, 40.0) == pytest.approx(40.0 / math.sqrt(2.0))
    assert series_kv(0.0, 40.0) == 0.0


def test_valve_authority_flattens_the_installed_characteristic() -> None:
    """With the exchanger in series, half lift passes far more than R^-0.5 of the full-lift flow."""
    full = series_kv(63.0, 60.0)
    half = series_kv(63.0 * valve_relative_kv(50.0, 50.0, 2.0), 60.0)
    assert 50.0**-0.5 < half / full < 0.5


def test_counterflow_effectiveness_limits() -> None:
    assert counterflow_effectiveness(2.0, 0.0) == pytest.approx(1.0 - math.exp(-2.0))
    assert counterflow_effectiveness(2.0, 1.0) == pytest.approx(2.0 / 3.0)
    assert counterflow_effectiveness(2.0, 1.0 - 1e-6) == pytest.approx(2.0 / 3.0, abs=1e-5)
    assert counterflow_effectiveness(50.0, 0.5) == pytest.approx(1.0, abs=1e-9)
    assert counterflow_effectiveness(0.0, 0.5) == 0.0


def test_exchanger_sized_by_lmtd_delivers_its_design_duty() -> None:
    """UA = Q/LMTD for 115/55 against 50/75, then eps-NTU at those flows gives Q back."""
    duty = 1.7e6
    ua = counterflow_ua_for_duty(duty, 115.0, 55.0, 50.0, 75.0)
    c_hot = duty / 60.0
    c_cold = duty / 25.0
    assert counterflow_duty(c_hot, c_cold, 115.0, 50.0, ua) == pytest.approx(duty, rel=1e-9)
    assert counterflow_duty(c_hot, 0.0, 115.0, 50.0, ua) == 0.0
    assert counterflow_duty(c_hot, c_cold, 40.0, 50.0, ua) < 0.0  # heat flows backwards


def test_plate_ua_scales_with_both_flows() -> None:
    assert plate_ua(1e5, 7.0, 16.0, 7.0, 16.0, 0.7) == pytest.approx(1e5)
    assert plate_ua(1e5, 3.5, 8.0, 7.0, 16.0, 0.7) == pytest.approx(1e5 * 0.5**0.7)
    assert plate_ua(1e5, 0.0, 16.0, 7.0, 16.0, 0.7) == 0.0
    assert plate_ua(1e5, 3.5, 16.0, 7.0, 16.0, 0.7) < plate_ua(1e5, 7.0, 16.0, 7.0, 16.0, 0.7)


def test_log_mean_dt() -> None:
    assert pytest.approx(41.245, abs=1e-3) == DT_LM_75_50_20
    assert log_mean_dt(10.0, 10.0) == pytest.approx(10.0)
    assert log_mean_dt(30.0, 55.0) == pytest.approx(DT_LM_75_50_20)
    with pytest.raises(ValueError):
        log_mean_dt(0.0, 5.0)


def test_radiator_at_nominal_conditions_returns_50_c_and_its_rating() -> None:
    q_n = np.array([1000.0])
    m = q_n / (CP_WATER * 25.0)
    t_ret, q = radiator_return(np.array([75.0]), np.array([20.0]), m, q_n, DT_LM_75_50_20, 1.3)
    assert t_ret[0] == pytest.approx(50.0, abs=1e-9)
    assert q[0] == pytest.approx(1000.0, rel=1e-9)


def test_radiator_return_satisfies_both_laws() -> None:
    rng = np.random.default_rng(7)
    n = 200
    t_supply = rng.uniform(25.0, 95.0, n)
    t_room = rng.uniform(5.0, 24.0, n)
    q_n = rng.uniform(200.0, 5e4, n)
    m = q_n / (CP_WATER * 25.0) * 10.0 ** rng.uniform(-2.0, 1.5, n)
    t_ret, q = radiator_return(t_supply, t_room, m, q_n, DT_LM_75_50_20, 1.3)
    assert np.all((t_ret > t_room) & (t_ret < t_supply))
    np.testing.assert_allclose(q, m * CP_WATER * (t_supply - t_ret), rtol=1e-9)
    dt_lm = (t_supply - t_ret) / np.log((t_supply - t_room) / (t_ret - t_room))
    np.testing.assert_allclose(q, radiator_output(q_n, dt_lm, DT_LM_75_50_20, 1.3), rtol=1e-7)


def test_radiator_output_rises_with_flow_and_supply_and_reverses_below_room() -> None:
    q_n = np.full(3, 1000.0)
    m_n = 1000.0 / (CP_WATER * 25.0)
    _, q_flow = radiator_return(
        np.full(3, 70.0), np.full(3, 20.0), m_n * np.array([0.25, 1.0, 4.0]), q_n, DT_LM_75_50_20, 1.3
    )
    assert q_flow[0] < q_flow[1] < q_flow[2]
    _, q_supply = radiator_return(
        np.array([50.0, 60.0, 70.0]), np.full(3, 20.0), np.full(3, m_n), q_n, DT_LM_75_50_20, 1.3
    )
    assert q_supply[0] < q_supply[1] < q_supply[2]
    t_ret, q_cold = radiator_return(
        np.array([15.0, 20.0, 60.0]), np.full(3, 20.0), np.array([m_n, m_n, 0.0]), q_n, DT_LM_75_50_20, 1.3
    )
    assert q_cold[0] < 0.0 and 15.0 < t_ret[0] < 20.0
    assert q_cold[1] == 0.0 and q_cold[2] == 0.0 and t_ret[2] == 60.0


def test_pump_affinity_laws() -> None:
    assert pump_flow_m3h(45.0, 60.0, 45.0) == pytest.approx(60.0)
    assert pump_flow_m3h(22.5, 60.0, 45.0) == pytest.approx(30.0)
    assert pump_head_mpa(22.5, 0.2, 45.0) == pytest.approx(0.05)
    assert pump_flow_m3h(0.0, 60.0, 45.0) == 0.0


def test_primary_curve_is_clamped_at_both_ends() -> None:
    def curve(t: float) -> float:
        return primary_supply_curve_c(t, -7.6, 115.0, 70.0, 5.0)

    assert curve(-7.6) == pytest.approx(115.0)
    assert curve(-20.0) == pytest.approx(115.0)
    assert curve(5.0) == pytest.approx(70.0)
    assert curve(15.0) == pytest.approx(70.0)
    assert curve(-1.3) == pytest.approx(92.5)


def test_quality_regulation_matches_the_domain_brief() -> None:
    def curve(t_out: float, room: float) -> float:
        return quality_regulation_supply_c(t_out, room, -7.6, room, 75.0, 50.0, 1.3)

    assert curve(-7.6, 20.0) == pytest.approx(75.0)
    assert curve(0.0, 18.0) == pytest.approx(60.7, abs=0.1)  # the brief's worked example
    assert curve(10.0, 18.0) == pytest.approx(40.1, abs=0.1)
    assert curve(25.0, 20.0) == pytest.approx(20.0)
