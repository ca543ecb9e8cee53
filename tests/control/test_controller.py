"""The pure controller, cycle by cycle: trim, offset, limiters, ramp, season, state."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest

from gateway.control.controller import Controller
from gateway.control.model import CircuitInputs, ControllerInputs, DispatchOffset, Reading, Signal
from gateway.control.settings import SeasonMode
from tests.control.conftest import SHANGHAI, controller, controller_config, radiators

NOON = dt.datetime(2027, 1, 10, 12, 0, tzinfo=SHANGHAI).timestamp()
ROOMS = ("A-1", "A-top-corner", "B-1", "B-top-corner", "C-1", "C-top-corner")


def fast_ramp(data: dict[str, Any]) -> None:
    """No ramp in the way, and no frozen-sensor check (these tests hold the outdoor value constant)."""
    radiators(data).update(ramp_up_k_per_h=600, ramp_down_k_per_h=600)
    data["outdoor"]["frozen_after_s"] = None


AIM = 18.2  # the day target plus config/controller.yaml's margin_k plus half the 0.1 K sensor step


def inputs(outdoor: float = -5.0, rooms: float | None = AIM, setpoint: float | None = None,
           offset: DispatchOffset | None = None, **circuit: Reading) -> ControllerInputs:
    room_readings = {name: Reading.missing("bad: no_value") if rooms is None
                     else Reading(rooms + 0.5 * (name != "A-top-corner"), True, 300.0) for name in ROOMS}
    plc = Reading.missing("no sample yet") if setpoint is None else Reading(setpoint)
    return ControllerInputs(Reading(outdoor), {"radiators": CircuitInputs(rooms=room_readings, setpoint_c=plc,
                                                                          **circuit)}, offset=offset)


def run(ctl: Controller, cycles: int, start: float = NOON, **kwargs: Any) -> list[float]:
    return [ctl.step(inputs(**kwargs), start + 60.0 * i).setpoints["radiators"] for i in range(cycles)]


def test_at_the_target_the_setpoint_is_the_curve_for_the_comfort_floor() -> None:
    ctl = controller(fast_ramp)
    decision = ctl.step(inputs(outdoor=-5.0, rooms=AIM), NOON)
    state = decision.state.circuits[0]
    curve = controller_config().curves["radiators"]
    assert state.room_floor_c == pytest.approx(AIM) and state.room_used_name == "A-top-corner"
    assert state.curve_c == pytest.approx(float(curve.supply_for_room(-5.0, AIM)))
    assert decision.setpoints["radiators"] == pytest.approx(state.curve_c)
    assert (state.trim_k, state.phase, state.reason, decision.state.season) == (0.0, "day", "heating", SeasonMode.HEATING)


NIGHT = NOON + 11 * 3600.0  # 23:00 local


def learned(data: dict[str, Any]) -> None:
    """fast_ramp, and rooms already known to warm quickly under the boost (as after a few mornings)."""
    fast_ramp(data)
    radiators(data)["comfort"]["optimum_start"]["heatup_factor"] = 8.0


def test_at_night_warm_rooms_coast_at_the_minimum_supply() -> None:
    curve = controller_config().curves["radiators"]
    decision = controller(fast_ramp).step(inputs(outdoor=-5.0, rooms=AIM), NIGHT)
    state = decision.state.circuits[0]
    # The night floor: 16 C plus what the coldest room could fall unseen, one sensor step plus its
    # cooling with the supply cut (not yet learned: 1 / building time constant per K above the
    # outdoor temperature) over its reading's age (300 s), when that is more than margin_k.
    unseen = 0.1 + (AIM + 5.0) / 30.0 * 300.0 / 3600.0
    assert (state.phase, state.room_floor_c) == ("coast", pytest.approx(16.0 + unseen))
    assert decision.setpoints["radiators"] == pytest.approx(curve.min_supply_c)
    # At the night floor the trim holds it: the curve for the floor, not the minimum.
    held = controller(learned).step(inputs(outdoor=-5.0, rooms=16.15), NIGHT)
    state = held.state.circuits[0]
    assert state.phase == "night" and state.trim_room_k == pytest.approx(6.0 * (state.room_floor_c - 16.15))
    assert held.setpoints["radiators"] == pytest.approx(
        float(curve.supply_for_room(-5.0, state.room_floor_c + state.trim_room_k)))


def test_the_boost_runs_at_the_maximum_supply_once_the_morning_needs_it() -> None:
    curve = controller_config().curves["radiators"]
    ctl = controller(learned)
    evening = ctl.step(inputs(outdoor=-5.0, rooms=16.2), NIGHT).state.circuits[0]
    assert evening.phase == "night"  # 7 h left: plenty for 2 K
    cautious = controller(fast_ramp).step(inputs(outdoor=-5.0, rooms=16.2), NIGHT).state.circuits[0]
    assert cautious.phase == "preheat"  # a building not yet learned: the start factor is careful
    early = ctl.step(inputs(outdoor=-5.0, rooms=16.2), NIGHT + 6 * 3600.0)  # 05:00, one hour left
    state = early.state.circuits[0]
    assert state.phase == "preheat" and state.heatup_k_per_h > 0.0 and state.room_floor_c == pytest.approx(AIM)
    assert early.setpoints["radiators"] == pytest.approx(curve.max_supply_c)


def test_no_setback_on_a_night_colder_than_the_station_was_built_for() -> None:
    decision = controller(fast_ramp).step(inputs(outdoor=-16.0, rooms=AIM), NIGHT)
    state = decision.state.circuits[0]
    assert (state.phase, state.room_floor_c) == ("night", pytest.approx(AIM))  # the day target all night
    assert decision.setpoints["radiators"] == pytest.approx(state.curve_c)


def test_a_cold_room_raises_the_supply_and_a_warm_one_lowers_it() -> None:
    base = run(controller(fast_ramp), 1, rooms=AIM)[0]
    cold = run(controller(fast_ramp), 60, rooms=17.9)
    warm = run(controller(fast_ramp), 60, rooms=18.6)
    assert cold[0] > base + 2 and cold[-1] > cold[0] + 1  # proportional at once, integral over the hour
    assert warm[0] < base - 2 and warm[-1] < warm[0] - 1


def test_the_trim_is_bounded() -> None:
    ctl = controller(fast_ramp)
    run(ctl, 3 * 1440, outdoor=10.0, rooms=AIM - 0.25)  # three days of a room that stays 0.25 K short
    state = ctl.step(inputs(outdoor=10.0, rooms=AIM - 0.25), NOON + 3 * 86400.0).state.circuits[0]
    assert state.trim_integral_k == pytest.approx(5.0 - 6.0 * 0.25, abs=0.01)  # stopped where P + I meets the bound
    assert state.trim_room_k == pytest.approx(5.0 + ctl.circuits["radiators"].boost_k)  # + the morning boost's rest
    assert state.clamped == ""


def test_the_trim_does_not_wind_up_at_the_max_supply() -> None:
    ctl = controller(fast_ramp)
    run(ctl, 1440, outdoor=-15.0, rooms=16.0)  # a day at max supply with a room that does not warm
    assert ctl.circuits["radiators"].trims["day"].integral == 0.0
    state = ctl.step(inputs(outdoor=-15.0, rooms=18.3), NOON + 86400.0).state.circuits[0]
    assert state.trim_room_k < 0  # the moment the room is warm enough, the trim comes off


def test_without_rooms_the_circuit_runs_on_its_curve_and_the_learned_trim() -> None:
    ctl = controller(fast_ramp)
    run(ctl, 120, rooms=18.0)  # the integral has learned something
    for i in range(10):  # the ramp takes the setpoint to the curve plus what the trim learned
        decision = ctl.step(inputs(rooms=None), NOON + 7200.0 + 60.0 * i)
    state = decision.state.circuits[0]
    assert state.trim_integral_k > 0  # kept, and still acting: it is what the curve gets wrong here
    assert state.trim_room_k == pytest.approx(state.trim_integral_k) and state.trim_k > 0.0
    curve = controller_config().curves["radiators"]
    expected = float(curve.supply_for_room(-5.0, AIM + state.trim_integral_k))
    assert decision.setpoints["radiators"] == pytest.approx(expected)
    assert Signal.ROOMS_NONE_VALID in decision.state.signals


def test_dispatch_offset_is_bounded_and_ends_by_itself() -> None:
    ctl = controller(fast_ramp)
    offset = DispatchOffset(offset_k=9.0, expires_at=NOON + 600.0, origin="dispatch/zhang.wei")
    plain = run(controller(fast_ramp), 1)[0]
    with_offset = ctl.step(inputs(offset=offset), NOON)
    state = with_offset.state.circuits[0]
    assert (state.offset_k, state.offset_origin) == (5.0, "dispatch/zhang.wei")  # bounded by max_offset_k
    assert with_offset.setpoints["radiators"] == pytest.approx(plain + 5.0)
    assert Signal.DISPATCH_OFFSET_ACTIVE in with_offset.state.signals
    expired = ctl.step(inputs(offset=offset), NOON + 600.0)
    assert expired.state.circuits[0].offset_k == 0.0 and Signal.DISPATCH_OFFSET_ACTIVE not in expired.state.signals


def test_the_room_trim_does_not_learn_the_offset_away() -> None:
    ctl = controller(fast_ramp)
    offset = DispatchOffset(offset_k=-5.0, expires_at=NOON + 86400.0, origin="dispatch")
    run(ctl, 600, rooms=17.5, offset=offset)
    assert ctl.circuits["radiators"].trims["day"].integral == 0.0


def test_return_limit_lowers_the_setpoint_slowly_and_blocks_the_trim() -> None:
    ctl = controller(fast_ramp)
    high_return = {"primary_return_c": Reading(65.0)}  # the line is ~57 C at -5 C outdoor
    setpoints = [ctl.step(inputs(rooms=17.5, **high_return), NOON + 60.0 * i) for i in range(30)]
    limiter = setpoints[-1].state.circuits[0].limiters[0]
    assert limiter.name == "return_limit" and limiter.active and limiter.limit == pytest.approx(58.6, abs=0.1)
    assert setpoints[-1].state.circuits[0].limiters[0].reduction_k > setpoints[1].state.circuits[0].limiters[0].reduction_k
    assert Signal.RETURN_LIMIT_ACTIVE in setpoints[-1].state.signals
    # the room is cold, yet the trim must not wind up while the limiter holds the supply down
    assert ctl.circuits["radiators"].trims["day"].integral == 0.0


def test_a_failed_limiter_sensor_drops_its_limit() -> None:
    ctl = controller(fast_ramp)
    for i in range(30):
        ctl.step(inputs(primary_return_c=Reading(70.0)), NOON + 60.0 * i)
    decision = ctl.step(inputs(primary_return_c=Reading(None, False, reason="bad: timeout")), NOON + 1800.0)
    limiter = decision.state.circuits[0].limiters[0]
    assert (limiter.reduction_k, limiter.active, limiter.fault) == (0.0, False, "bad: timeout")
    assert Signal.LIMITER_SENSOR_FAULT in decision.state.signals


def test_the_setpoint_ramps_from_what_the_plc_holds() -> None:
    ctl = controller()  # 20 K/h both ways
    first = ctl.step(inputs(setpoint=40.0), NOON)
    assert first.setpoints["radiators"] == pytest.approx(40.0)  # no ramp history: start where the PLC is
    second = ctl.step(inputs(setpoint=40.0), NOON + 60.0)
    assert second.setpoints["radiators"] == pytest.approx(40.0 + 20.0 / 60.0)
    assert second.state.circuits[0].ramp_limited
    # someone wrote 55 C at the PLC: the ramp continues from there, not from our memory
    third = ctl.step(inputs(setpoint=55.0), NOON + 120.0)
    assert third.setpoints["radiators"] == pytest.approx(55.0 + 20.0 / 60.0)


def test_commissioning_warms_the_network_slowly() -> None:
    ctl = controller()
    nov10 = dt.datetime(2026, 11, 10, 12, tzinfo=SHANGHAI).timestamp()
    ctl.step(inputs(setpoint=30.0), nov10)
    for minute in range(1, 61):
        decision = ctl.step(inputs(setpoint=None), nov10 + 60.0 * minute)
    assert decision.state.season is SeasonMode.COMMISSIONING
    assert decision.setpoints["radiators"] == pytest.approx(30.0 + 3.0)  # 3 K/h, not 20


def test_off_season_writes_the_off_setpoint_and_guards_against_frost() -> None:
    def edit(data: dict[str, Any]) -> None:
        fast_ramp(data)
        radiators(data)["off_supply_c"] = 20
        radiators(data)["frost"]["supply_c"] = 35
    ctl = controller(edit)
    july = dt.datetime(2027, 7, 1, 12, tzinfo=SHANGHAI).timestamp()
    decision = ctl.step(inputs(outdoor=25.0, supply_c=Reading(24.0)), july)
    assert decision.state.season is SeasonMode.OFF and decision.setpoints["radiators"] == 20.0
    assert not decision.state.circuits[0].heating and decision.state.circuits[0].reason == "off"
    for i in range(1, 4):
        decision = ctl.step(inputs(outdoor=25.0, supply_c=Reading(4.0)), july + 60.0 * i)
    assert decision.setpoints["radiators"] == 35.0 and Signal.FROST_PROTECTION in decision.state.signals


def test_warm_weather_cuts_out_unless_a_room_is_cold() -> None:
    warm = controller(fast_ramp).step(inputs(outdoor=18.0, rooms=22.0), NOON)
    assert not warm.state.circuits[0].heating and warm.state.circuits[0].reason.startswith("cut-out")
    assert warm.setpoints["radiators"] == 30.0
    cold = controller(fast_ramp).step(inputs(outdoor=18.0, rooms=17.0), NOON)
    assert cold.state.circuits[0].heating


def test_reload_keeps_what_was_learned() -> None:
    ctl = controller(fast_ramp)
    run(ctl, 120, rooms=17.5)
    learned = ctl.circuits["radiators"].trims["day"].integral
    assert learned > 0
    ctl.configure(controller_config(lambda d: radiators(d)["room_trim"].update(max_trim_k=0.5)))
    assert ctl.circuits["radiators"].trims["day"].integral == pytest.approx(min(learned, 0.5))


def test_reload_with_a_new_curve_starts_the_trims_again() -> None:
    # The trim corrected the old curve; the operator's new version usually corrects the same
    # error, and keeping both would count it twice.
    ctl = controller(fast_ramp)
    run(ctl, 120, rooms=17.5)
    factors = dict(ctl.circuits["radiators"].optimum.factors)
    assert ctl.circuits["radiators"].trims["day"].integral > 0
    config = controller_config(fast_ramp)
    old = config.curves["radiators"]
    new = old.model_copy(update={"version": old.version + 1})
    reset = ctl.configure(dataclasses.replace(config, curves={"radiators": new}))
    assert reset == [f"radiators: trims (learned against curve {old.identity}, now {new.identity})"]
    assert ctl.circuits["radiators"].trims["day"].integral == 0.0
    assert ctl.circuits["radiators"].trims["night"].integral == 0.0
    assert ctl.circuits["radiators"].optimum.factors == factors
    assert ctl.configure(dataclasses.replace(config, curves={"radiators": new})) == []


def test_the_published_state_is_json() -> None:
    state = controller(fast_ramp).step(inputs(primary_return_c=Reading(50.0)), NOON).state
    data = json.loads(json.dumps(state.to_dict()))
    assert data["season"] == "heating" and data["outdoor_source"] == "sensor"
    circuit = data["circuits"][0]
    assert {"curve_c", "trim_k", "offset_k", "limiters", "setpoint_c", "written_c"} <= set(circuit)
    assert circuit["limiters"][0]["name"] == "return_limit"
