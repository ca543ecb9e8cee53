"""Closed-loop behaviour of the simulated station: the physics must be able to fail a bad controller."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from sim.building import room_constants
from sim.params import RoomSensorParams, StationParams
from sim.plc import PlcLimits, ValveMode
from sim.station import Station
from sim.weather import ConstantProfile

START = datetime(2026, 1, 10, tzinfo=UTC)
WORST_ROOM = "A-top-corner"


def station(t_out: float | None = None, params: StationParams | None = None, seed: int = 1) -> Station:
    """A station at a constant outdoor temperature, or on the seeded season profile if ``t_out`` is None."""
    weather = None if t_out is None else ConstantProfile(t_out)
    return Station(params=params, start=START, seed=seed, weather=weather)


def run(s: Station, seconds: float, dt: float = 60.0) -> None:
    for _ in range(round(seconds / dt)):
        s.step(dt)


def constant_gains(params: StationParams) -> StationParams:
    return replace(params, buildings=tuple(replace(b, gains_daily_swing=0.0) for b in params.buildings))


# --- initial state and energy ------------------------------------------------------------------


def test_starts_warm_and_steady() -> None:
    s = station()
    m = s.measurements()
    assert m.timestamp == START.timestamp() and s.now == START
    assert all(18.0 <= t <= 23.0 for t in s.truth.rooms_c.values())
    assert all(r.temperature_c is not None and 18.0 <= r.temperature_c <= 23.0 for r in m.rooms)
    assert m.secondary_supply_c == pytest.approx(s.plc.supply_setpoint_c, abs=0.05)
    assert 5.0 < m.valve_pct < 95.0
    assert m.pump_running and m.secondary_flow_m3h == pytest.approx(60.0)
    assert m.meter.power_kw > 500.0 and m.meter.status == 0
    assert m.secondary_supply_mpa > m.secondary_return_mpa > 0.3
    assert m.primary_supply_mpa - m.primary_return_mpa == pytest.approx(0.1)
    assert not (m.overtemp_trip or m.overpressure_trip or m.primary_supply_lost or m.pit_flooded)
    run(s, 3600)
    assert s.measurements().secondary_supply_c == pytest.approx(s.plc.supply_setpoint_c, abs=0.1)


def test_energy_balance_over_a_day() -> None:
    """Primary heat = delivered + stored + losses (pipes, leak, make-up), and the meter agrees."""
    s = station()
    run(s, 6 * 3600)
    s.plc.supply_setpoint_c += 8.0
    s.faults.leak(0.5)
    run(s, 12 * 3600)
    s.faults.clear("leak")
    s.plc.supply_setpoint_c -= 12.0
    run(s, 6 * 3600)
    ledger = s.ledger
    assert ledger.primary_in > 1e11
    assert ledger.pipe_losses > 0.0 and ledger.water_losses > 0.0 and ledger.stored != 0.0
    assert abs(ledger.imbalance) < 0.01 * ledger.primary_in
    assert abs(ledger.imbalance) < 1e-9 * ledger.primary_in  # by construction, to round-off
    meter = s.measurements().meter
    assert meter.energy_gj * 1e9 == pytest.approx(ledger.primary_in, rel=0.01)
    assert meter.energy_kwh == pytest.approx(meter.energy_gj * 1e9 / 3.6e6)
    assert meter.volume_m3 == pytest.approx(24 * 25.0, rel=0.3)  # ~25 m3/h all day


# --- building response -------------------------------------------------------------------------


def test_design_day_worst_room_between_18_and_22() -> None:
    """At the design outdoor temperature with the 75 degC design supply the rooms hold, worst ~19 degC."""
    s = station(-7.6)
    s.plc.supply_setpoint_c = 75.0
    run(s, 2 * 86400, dt=300.0)
    before = s.truth.rooms_c
    run(s, 86400, dt=300.0)
    rooms = s.truth.rooms_c
    worst = rooms[WORST_ROOM]
    assert 18.0 <= worst <= 22.0
    assert worst == pytest.approx(19.0, abs=0.6)
    assert all(t > worst for name, t in rooms.items() if name != WORST_ROOM)
    assert all(20.0 <= rooms[f"{b}-1"] <= 21.5 for b in "ABC")
    assert all(abs(rooms[n] - before[n]) < 0.1 for n in rooms)  # settled: no drift over the third day
    m = s.measurements()
    assert m.secondary_return_c == pytest.approx(50.0, abs=2.0)
    assert m.valve_pct < 90.0  # the design duty is met with headroom


def test_higher_setpoint_gives_warmer_rooms() -> None:
    base, warm = station(-2.0), station(-2.0)
    warm.plc.supply_setpoint_c = base.plc.supply_setpoint_c + 6.0
    run(base, 2 * 86400, dt=300.0)
    run(warm, 2 * 86400, dt=300.0)
    for name, t in base.truth.rooms_c.items():
        assert warm.truth.rooms_c[name] > t + 0.5
    assert warm.measurements().meter.energy_gj > base.measurements().meter.energy_gj * 1.05


def test_unbalanced_building_is_colder() -> None:
    params = StationParams()
    starved = replace(params, buildings=(replace(params.buildings[0], flow_balance=0.6), *params.buildings[1:]))
    balanced, unbalanced = station(-7.6, params).truth.rooms_c, station(-7.6, starved).truth.rooms_c
    assert unbalanced["A-1"] < balanced["A-1"] - 0.5
    assert unbalanced["B-1"] > balanced["B-1"]


def _fitted_time_constants_h(s: Station, hours: int) -> dict[str, float]:
    """Hourly room temperatures, fitted as T_inf + (T0 - T_inf) exp(-t/tau) between 6 h and ``hours``."""
    k = room_constants(s.params)
    t_out = s.truth.outdoor_c
    t_inf = dict(zip(k.names, t_out + k.gains_w / k.h_total, strict=True))
    samples = []
    for _ in range(hours):
        run(s, 3600, dt=600.0)
        samples.append(s.truth.rooms_c)
    t = np.arange(1, hours + 1, dtype=float)
    fitted = {}
    for name in k.names:
        y = np.log(np.array([sample[name] for sample in samples]) - t_inf[name])
        slope = np.polyfit(t[5:], y[5:], 1)[0]
        fitted[name] = -1.0 / slope
    return fitted


def test_without_heat_rooms_cool_with_the_building_time_constant() -> None:
    """Primary lost and circulation stopped: each room decays with its building's time constant."""
    s = station(-5.0, constant_gains(StationParams()))
    s.faults.primary_loss()
    s.plc.pump_run_command = False
    configured = {f"{b.name}-{r.name}": b.time_constant_h for b in s.params.buildings for r in b.rooms}
    for name, tau in _fitted_time_constants_h(s, 48).items():
        assert tau == pytest.approx(configured[name], rel=0.1), name


def test_primary_loss_stops_the_heat_and_rooms_cool() -> None:
    """With the pump still running the water couples the buildings: heavy B feeds light C a little."""
    s = station(-5.0, constant_gains(StationParams()))
    s.faults.primary_loss()
    run(s, 600)
    m = s.measurements()
    assert m.primary_supply_lost and m.primary_supply_mpa - m.primary_return_mpa < 0.02
    assert m.meter.power_kw < 1.0 and m.primary_flow_m3h == 0.0 and m.meter.status & 2
    assert m.pump_running
    before = s.truth.rooms_c
    configured = {f"{b.name}-{r.name}": b.time_constant_h for b in s.params.buildings for r in b.rooms}
    fitted = _fitted_time_constants_h(s, 36)
    for name, tau in fitted.items():
        assert tau == pytest.approx(configured[name], rel=0.4), name
        assert s.truth.rooms_c[name] < before[name] - 5.0
    assert s.measurements().primary_supply_c < 20.0  # the stagnant primary supply pipe cooled
    s.faults.clear("primary_loss")
    run(s, 3 * 3600)
    assert s.measurements().meter.power_kw > 500.0 and not s.plc.primary_supply_lost


# --- the PLC loop ------------------------------------------------------------------------------


@pytest.mark.parametrize(("before", "after"), [(55.0, 65.0), (65.0, 55.0)])
def test_plc_tracks_a_setpoint_step(before: float, after: float) -> None:
    """Within 1 K after the valve stroke time plus 60 s (two time constants of the ~0.5 m3
    between exchanger and sensor at design flow), overshoot < 2 K, no sustained oscillation."""
    s = station(-2.0)
    s.plc.supply_setpoint_c = before
    run(s, 3600)
    s.plc.supply_setpoint_c = after
    supply = []
    for _ in range(900):
        s.step(1.0)
        supply.append(s.measurements().secondary_supply_c)
    trace = np.array(supply)
    settle_s = int(s.plc.valve_stroke_s + 60.0)
    assert np.all(np.abs(trace[settle_s:] - after) < 1.0)
    direction = math.copysign(1.0, after - before)
    assert np.max(direction * (trace - after)) < 2.0
    assert np.ptp(trace[-300:]) < 0.2


def test_result_does_not_depend_on_the_step_size() -> None:
    fine, coarse = station(seed=3), station(seed=3)
    for s in (fine, coarse):
        s.plc.supply_setpoint_c += 5.0
    run(fine, 3600, dt=1.0)
    run(coarse, 3600, dt=600.0)
    for name, t in fine.truth.rooms_c.items():
        assert coarse.truth.rooms_c[name] == pytest.approx(t, abs=0.01)
    assert coarse.truth.secondary_supply_c == pytest.approx(fine.truth.secondary_supply_c, abs=0.1)
    assert coarse.truth.valve_pct == pytest.approx(fine.truth.valve_pct, abs=0.5)
    assert coarse.ledger.primary_in == pytest.approx(fine.ledger.primary_in, rel=0.005)


def test_same_seed_same_results() -> None:
    a, b, c = station(seed=5), station(seed=5), station(seed=6)
    for s in (a, b, c):
        run(s, 3 * 3600)
        s.plc.supply_setpoint_c -= 4.0
        s.faults.leak(0.3)
        run(s, 3 * 3600)
    assert a.measurements() == b.measurements()
    assert a.ledger == b.ledger
    assert a.measurements().rooms != c.measurements().rooms
    assert a.measurements().outdoor_c != c.measurements().outdoor_c


def test_interlock_overtemp_latches_until_reset_and_cause_gone() -> None:
    s = station(-2.0)
    s.faults.trip_interlock("overtemp")
    run(s, 120, dt=1.0)
    assert s.measurements().overtemp_trip and s.measurements().valve_pct == 0.0
    s.plc.reset_alarms()
    run(s, 5, dt=1.0)
    assert s.measurements().overtemp_trip  # cause still there
    s.faults.clear("overtemp")
    run(s, 60, dt=1.0)
    assert s.measurements().overtemp_trip and s.measurements().valve_pct == 0.0  # latched
    s.plc.reset_alarms()
    run(s, 600, dt=5.0)
    m = s.measurements()
    assert not m.overtemp_trip and m.valve_pct > 20.0
    assert m.secondary_supply_c == pytest.approx(s.plc.supply_setpoint_c, abs=1.0)


def test_real_overtemperature_trips_and_closes_the_valve() -> None:
    """Valve forced open by hand with little secondary flow: the safety thermostat trips."""
    s = station(-7.6)
    s.plc.valve_mode = ValveMode.MANUAL
    s.plc.manual_valve_pct = 100.0
    s.plc.pump_frequency_setpoint_hz = 20.0
    run(s, 600, dt=10.0)
    m = s.measurements()
    assert m.overtemp_trip and m.valve_pct == 0.0
    assert s.truth.secondary_supply_c < 95.0
    s.plc.reset_alarms()
    assert not s.plc.overtemp_trip


def test_overpressure_trip_stops_pump_and_closes_valve() -> None:
    s = station(-2.0)
    s.faults.trip_interlock("overpressure")
    run(s, 120, dt=1.0)
    m = s.measurements()
    assert m.overpressure_trip and not m.pump_running and m.secondary_flow_m3h == 0.0 and m.valve_pct == 0.0
    assert m.secondary_supply_mpa == pytest.approx(m.secondary_return_mpa)
    s.faults.clear("overpressure")
    run(s, 10, dt=1.0)
    assert s.measurements().overpressure_trip
    s.plc.reset_alarms()
    run(s, 60, dt=1.0)
    assert s.measurements().pump_running and not s.measurements().overpressure_trip


# --- equipment faults --------------------------------------------------------------------------


def test_pump_trip_stops_circulation_until_cleared() -> None:
    s = station(-2.0)
    s.faults.pump_trip()
    run(s, 150, dt=1.0)
    m = s.measurements()
    assert m.pump_fault and not m.pump_running and m.pump_frequency_hz == 0.0 and m.secondary_flow_m3h == 0.0
    assert m.valve_pct == 0.0 and m.primary_flow_m3h == 0.0 and m.meter.status & 2  # valve shut, meter: no flow
    assert s.plc.pump_run_command  # the command stays; the drive is tripped
    s.faults.clear("pump_trip")
    run(s, 60, dt=1.0)
    m = s.measurements()
    assert m.pump_running and not m.pump_fault and m.secondary_flow_m3h > 50.0


def test_pump_stop_command_stops_flow() -> None:
    s = station(-2.0)
    s.plc.pump_run_command = False
    run(s, 120)
    m = s.measurements()
    assert not m.pump_running and not m.pump_fault and m.secondary_flow_m3h == 0.0


def test_leak_is_made_up_from_the_tank() -> None:
    s = station(-2.0)
    total0 = s.measurements().makeup_total_m3
    s.faults.leak(1.0)
    running, levels, pressures = [], [], []
    for _ in range(8 * 60):
        s.step(60.0)
        m = s.measurements()
        running.append(m.makeup_pump_running)
        levels.append(m.tank_level_pct)
        pressures.append(m.secondary_return_mpa)
    m = s.measurements()
    assert any(running) and not all(running)  # the pump cycles within its pressure band
    assert m.makeup_total_m3 - total0 == pytest.approx(8.0, abs=0.5)
    assert m.tank_level_pct < 60.0 and levels[-1] < levels[0]
    assert min(pressures) > 0.34 and max(pressures) < 0.41
    assert s.ledger.water_losses > 8.0 * 980.0 * 4186.0 * 30.0  # hot water out, cold water in
    assert s.faults.active() == {"leak": {"m3h": 1.0}}


def test_leak_without_makeup_drains_the_pressure() -> None:
    s = station(-2.0)
    s.faults.makeup_pump_fault()
    s.faults.leak(1.0)
    run(s, 3600)
    m = s.measurements()
    assert m.makeup_pump_fault and not m.makeup_pump_running and m.makeup_flow_m3h == 0.0
    assert m.secondary_return_mpa < 0.3


# --- sensors -----------------------------------------------------------------------------------


def test_wired_sensor_faults() -> None:
    s = station()
    s.faults.sensor_open("outdoor")
    s.faults.sensor_short("primary_return")
    s.faults.freeze("secondary_return")
    frozen = s.measurements().secondary_return_c
    s.plc.supply_setpoint_c += 10.0
    run(s, 3 * 3600)
    m = s.measurements()
    assert m.outdoor_c == 850.0 and m.primary_return_c == -50.0
    assert m.secondary_return_c == frozen != pytest.approx(s.truth.secondary_return_c, abs=0.5)
    s.faults.clear("outdoor")
    assert s.measurements().outdoor_c == pytest.approx(s.truth.outdoor_c)
    s.faults.freeze("outdoor", value=-12.5)
    assert s.measurements().outdoor_c == -12.5


def test_meter_probe_fault_stops_energy_counting() -> None:
    s = station(-2.0)
    s.faults.sensor_open("meter_return")
    run(s, 600)
    m = s.measurements()
    assert m.meter.status & 1 and m.meter.return_c == 850.0 and m.meter.energy_gj == 0.0
    assert m.meter.volume_m3 > 0.0 and m.primary_return_c < 100.0  # the PLC's own sensor is fine


def test_plc_follows_a_frozen_supply_sensor_and_holds_on_an_open_one() -> None:
    s = station(-2.0)
    setpoint = s.plc.supply_setpoint_c
    s.faults.freeze("secondary_supply", value=setpoint - 10.0)
    run(s, 600, dt=10.0)
    assert s.truth.secondary_supply_c > setpoint + 3.0  # the loop chases a wrong reading
    s.faults.sensor_open("secondary_supply")
    valve = s.measurements().valve_pct
    run(s, 600, dt=10.0)
    assert s.measurements().valve_pct == pytest.approx(valve)


def test_room_sensor_reports() -> None:
    params = replace(
        StationParams(), room_sensors=RoomSensorParams(reported_before_start=False, dropout_probability=0.2)
    )
    s = station(-2.0, params)
    assert all(r.temperature_c is None and r.age_s == 0.0 for r in s.measurements().rooms)
    s.faults.sensor_silent("B-1")
    ages: dict[str, list[float]] = {name: [] for name in s.room_names}
    for _ in range(6 * 60):
        s.step(60.0)
        for r in s.measurements().rooms:
            ages[r.name].append(r.age_s)
    rooms = {r.name: r for r in s.measurements().rooms}
    assert rooms["B-1"].temperature_c is None and rooms["B-1"].age_s == 6 * 3600
    for name, r in rooms.items():
        if name == "B-1":
            continue
        assert r.temperature_c is not None and r.temperature_c == round(r.temperature_c, 1)
        assert r.temperature_c == pytest.approx(s.truth.rooms_c[name], abs=0.15)
        resets = sum(1 for a, b in zip(ages[name], ages[name][1:], strict=False) if b < a)
        assert 20 <= resets <= 72  # a report every 5-15 min, some lost on the radio
        assert max(ages[name]) > 900.0  # a lost report lets the age grow past the interval
    assert rooms["A-1"].building == "A"
    s.faults.sensor_open("A-1")
    run(s, 1800)
    assert next(r for r in s.measurements().rooms if r.name == "A-1").temperature_c == 850.0


# --- API details the protocol server relies on ---------------------------------------------------


def test_plc_limits_and_read_only_parameters() -> None:
    plc = station().plc
    assert plc.limits == PlcLimits()
    assert plc.limits.supply_setpoint_c == (20.0, 95.0)
    assert plc.limits.pump_frequency_setpoint_hz == (20.0, 50.0)
    assert plc.limits.bounds("manual_valve_pct") == (0.0, 100.0)
    plc.supply_setpoint_c = 120.0
    assert plc.supply_setpoint_c == 95.0
    plc.pump_frequency_setpoint_hz = 5.0
    assert plc.pump_frequency_setpoint_hz == 20.0
    with pytest.raises(ValueError):
        plc.manual_valve_pct = math.nan
    plc.valve_mode = type(plc.valve_mode)["MANUAL"]  # how the Modbus server writes it
    assert plc.valve_mode is ValveMode.MANUAL
    plc.pump_run_command = 0  # type: ignore[assignment]
    assert plc.pump_run_command is False
    assert plc.pi_gain_pct_per_k > 0 and plc.pi_integral_s > 0 and plc.valve_stroke_s == 90.0
    with pytest.raises(AttributeError):
        plc.pi_gain_pct_per_k = 1.0  # type: ignore[misc]


def test_faults_api() -> None:
    s = station()
    f = s.faults
    f.sensor_open("outdoor")
    f.freeze("A-top-corner", value=17.0)
    f.pump_trip()
    f.leak(2.5)
    f.trip_interlock("overpressure")
    f.pit_flooding()
    active = f.active()
    assert active == {
        "pump_trip": True,
        "overpressure": True,
        "pit_flooding": True,
        "leak": {"m3h": 2.5},
        "outdoor": {"sensor": "open"},
        "A-top-corner": {"sensor": "frozen", "value": 17.0},
    }
    json.dumps(active)
    assert s.measurements().pit_flooded
    f.clear("pump_trip")
    f.clear("outdoor")
    assert "pump_trip" not in f.active() and "outdoor" not in f.active()
    f.clear()  # what the runner's "clear" command calls
    assert f.active() == {}
    for bad in (
        lambda: f.sensor_open("kitchen"),
        lambda: f.clear("nonsense"),
        lambda: f.leak(-1.0),
        lambda: f.trip_interlock("overspeed"),  # type: ignore[arg-type]
        lambda: f.sensor_silent("outdoor"),
    ):
        with pytest.raises(ValueError):
            bad()


def test_step_rejects_bad_input() -> None:
    s = station()
    for dt in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError):
            s.step(dt)
    with pytest.raises(ValueError):
        Station(start=datetime(2026, 1, 10))
