"""Station events, rule by rule, on an injected clock: interruption escalations, make-up loss,
cold rooms with their deadlines and refund tiers, trips."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from drivers.base import Quality
from gateway.alarms.events import EventEngine, EventState, RoomRule, StationEvent, room_rules
from gateway.alarms.settings import EventSettings, RoomSettings
from gateway.control.model import CircuitState, ControllerState, OutdoorSource
from gateway.control.settings import SeasonMode
from gateway.samples import Sample, SampleBatch
from tests.control.conftest import controller_config, radiators

H = 3600.0
SHANGHAI = ZoneInfo("Asia/Shanghai")
NOON = dt.datetime(2026, 1, 10, 12, 0, tzinfo=SHANGHAI).timestamp()


def engine(**sections: Any) -> EventEngine:
    return EventEngine(EventSettings.model_validate(sections), "Asia/Shanghai")


def batch(now: float, quality: Quality = Quality.GOOD, **values: Any) -> SampleBatch:
    return SampleBatch("plc", "fast", tuple(Sample(tag, value, now, quality) for tag, value in values.items()))


def brief(events: list[StationEvent]) -> list[tuple[str, str]]:
    return [(e.id, e.state.value) for e in events]


INTERRUPTION = {"primary_lost_tag": "primary_supply_lost", "pump_fault_tag": "pump_fault",
                "supply_temp_tag": "secondary_supply_temp", "confirm_s": 60}


def test_an_interruption_escalates_at_1_8_and_24_hours_and_ends_with_its_duration() -> None:
    events = engine(interruption=INTERRUPTION)
    t0 = NOON
    assert events.on_item(batch(t0, primary_supply_lost=True, pump_fault=False, secondary_supply_temp=70.0), t0) == []
    [started] = events.tick(t0 + 60)
    assert (started.state, started.started, started.deadline) == (EventState.STARTED, t0, t0 + 1 * H)
    assert started.cause == "primary supply lost"
    assert events.tick(t0 + H - 1) == []
    [first] = events.tick(t0 + H)
    assert (first.state, first.escalation_h, first.deadline) == (EventState.ESCALATED, 1.0, t0 + 8 * H)
    [second] = events.tick(t0 + 8 * H + 5)
    assert (second.escalation_h, second.deadline) == (8.0, t0 + 24 * H)
    assert events.on_item(batch(t0 + 9 * H, primary_supply_lost=False), t0 + 9 * H) == []  # confirming the end
    [ended] = events.tick(t0 + 9 * H + 60)
    assert (ended.state, ended.ended, ended.duration_s) == (EventState.ENDED, t0 + 9 * H, 9 * H)
    assert events.open_events == []


def test_a_short_blip_is_no_interruption_and_each_cause_is_named() -> None:
    events = engine(interruption=INTERRUPTION)
    events.on_item(batch(0, pump_fault=True, primary_supply_lost=False, secondary_supply_temp=30.0), 0)
    events.on_item(batch(30, pump_fault=False, secondary_supply_temp=60.0), 30)
    assert events.tick(100) == []
    events.on_item(batch(200, pump_fault=True, secondary_supply_temp=30.0), 200)
    [started] = events.tick(260)
    assert started.cause == "circulation pump fault, supply 30.0 C below 35"


def test_unknown_values_neither_start_nor_end_an_interruption() -> None:
    events = engine(interruption=INTERRUPTION)
    assert events.on_item(batch(0, Quality.BAD, primary_supply_lost=None, pump_fault=None,
                                secondary_supply_temp=None), 0) == []
    assert events.tick(1000) == []


MAKEUP = {"total_tag": "makeup_total", "system_volume_m3": 30.0}  # 1 % = 0.3 m3 in 24 h, 6 h to handle


def test_make_up_above_1_percent_of_the_system_in_24_hours_is_an_event_escalated_after_6_hours() -> None:
    events = engine(makeup=MAKEUP)
    assert events.on_item(batch(0, makeup_total=100.0), 0) == []
    assert events.on_item(batch(H, makeup_total=100.3), H) == []  # exactly 1 %
    [started] = events.on_item(batch(2 * H, makeup_total=100.31), 2 * H)
    assert started.value == pytest.approx(1.033, abs=1e-3) and started.deadline == 8 * H
    [late] = events.tick(8 * H)
    assert late.state is EventState.ESCALATED and late.escalation_h == 6.0 and late.deadline is None
    # 24 h after the leak the window no longer holds it: the event ends.
    assert brief(events.on_item(batch(26 * H + 1, makeup_total=100.31), 26 * H + 1)) == [("makeup_loss", "ended")]


ROOMS = {"tags": ["room_a_1_temp"], "confirm_s": 600}


def test_a_room_below_16_is_an_event_with_its_2_hour_deadline_and_its_refund_tier() -> None:
    events = engine(rooms=ROOMS)
    night = NOON + 11 * H  # 23:00: outside comfort hours, the 16 C rule still holds
    events.on_item(batch(night, room_a_1_temp=15.0), night)
    [started] = events.tick(night + 600)
    assert (started.id, started.deadline, started.refund_pct) == ("room_repair_room_a_1_temp", night + 2 * H, 50)
    events.on_item(batch(night + H, room_a_1_temp=11.5), night + H)
    [overdue] = events.tick(night + 2 * H)
    assert overdue.state is EventState.ESCALATED and overdue.refund_pct == 100 and overdue.value == 11.5
    events.on_item(batch(night + 3 * H, room_a_1_temp=16.5), night + 3 * H)
    [ended] = events.tick(night + 3 * H + 600)
    assert ended.state is EventState.ENDED and ended.refund_pct == 100


@pytest.mark.parametrize(("hour", "expected"), [(5.9, []), (6.0, ["room_comfort_room_a_1_temp"]),
                                                (20.9, ["room_comfort_room_a_1_temp"]), (21.0, [])])
def test_below_18_is_a_comfort_event_only_between_06_and_21_station_time(hour: float, expected: list[str]) -> None:
    events = engine(rooms={**ROOMS, "confirm_s": 0})
    at = dt.datetime(2026, 1, 10, tzinfo=SHANGHAI).timestamp() + hour * H
    got = events.on_item(batch(at, room_a_1_temp=17.0), at)
    assert [e.id for e in got if e.rule == "room_comfort"] == expected
    assert [e.refund_pct for e in got] == [20] * len(got)


def test_a_comfort_event_ends_when_comfort_hours_end() -> None:
    events = engine(rooms={**ROOMS, "confirm_s": 0})
    evening = NOON + 8 * H + 1800  # 20:30
    events.on_item(batch(evening, room_a_1_temp=17.0), evening)
    assert brief(events.tick(NOON + 9 * H)) == [("room_comfort_room_a_1_temp", "ended")]


def test_trips_are_events_from_start_to_end() -> None:
    events = engine(trips={"pit_flooding": "pit_flooded", "overtemp_interlock": "overtemp_trip"})
    assert brief(events.on_item(batch(0, pit_flooded=True, overtemp_trip=False), 0)) == [("pit_flooding", "started")]
    [ended] = events.on_item(batch(90, pit_flooded=False), 90)
    assert ended.state is EventState.ENDED and ended.duration_s == 90


def test_an_open_event_survives_a_restart_and_escalates_on_time() -> None:
    before = engine(interruption={**INTERRUPTION, "confirm_s": 0})
    [started] = before.on_item(batch(0, primary_supply_lost=True), 0)
    after = engine(interruption={**INTERRUPTION, "confirm_s": 0})
    after.restore([started])
    assert after.on_item(batch(100, primary_supply_lost=True), 100) == []  # not started again
    assert brief(after.tick(H)) == [("interruption", "escalated")]


def test_open_and_the_rule_ids_are_refused_as_trip_ids() -> None:
    settings = EventSettings.model_validate({"trips": {"open": "pit_flooded"}})
    assert settings.problems({"pit_flooded": "plc"}) == [(("events", "trips", "open"), "the id 'open' is reserved")]


def circuit_state(heating: bool) -> CircuitState:
    """A controller circuit state that only says whether it heats (for the event rules)."""
    return CircuitState(
        circuit="radiators", curve="curve v1", heating=heating, reason="heating" if heating else "cut-out",
        phase="day", outdoor_damped_c=0.0, outdoor_curve_c=0.0, room_floor_c=18.0, room_used_c=None,
        room_used_name="", rooms_valid=0, rooms_total=0, curve_c=60.0, trim_room_k=0.0, trim_k=0.0,
        trim_integral_k=0.0, heatup_k_per_h=0.0, setback=False, setback_reason="", headroom_k=0.0,
        boost_ceiling_c=0.0, coast_band_k=0.0, cooling_k_per_h=0.0, comfort_missed="", offset_k=0.0,
        offset_origin="", limiters=(), clamped="", ramp_limited=False, setpoint_c=60.0)


def state(timestamp: float, season: SeasonMode, heating: bool) -> ControllerState:
    return ControllerState(timestamp=timestamp, season=season, season_reason=season.value, outdoor_raw_c=0.0,
                           outdoor_c=0.0, outdoor_source=OutdoorSource.SENSOR, outdoor_fault="",
                           outdoor_network_c=None, circuits=(circuit_state(heating),), signals=())


def test_no_interruption_while_the_controller_heats_no_circuit() -> None:
    events = engine(interruption={**INTERRUPTION, "confirm_s": 0})
    summer = state(0.0, SeasonMode.OFF, heating=False)
    assert events.on_item(summer, 0) == []
    assert events.on_item(batch(1, secondary_supply_temp=25.0, pump_fault=False, primary_supply_lost=False), 1) == []
    winter = state(2.0, SeasonMode.HEATING, heating=True)
    [started] = events.on_item(winter, 2)
    assert started.cause == "supply 25.0 C below 35"


def test_the_rooms_and_their_comfort_contract_come_from_the_controller_unless_given() -> None:
    def warmer(data: dict[str, Any]) -> None:  # a county that raised the target to 20 C, from 07:00
        radiators(data)["comfort"].update(day_c=20, day_start="07:00")

    settings = controller_config(warmer).settings
    rules = room_rules(RoomSettings(), settings)
    assert len(rules) == 6
    assert rules[0] == RoomRule("room_a_1_temp", 20.0, dt.time(7, 0), dt.time(21, 0))
    given = room_rules(RoomSettings(tags=("room_b_1_temp",), comfort_below_c=18), settings)
    assert given == [RoomRule("room_b_1_temp", 18.0, dt.time(7, 0), dt.time(21, 0))]
    assert room_rules(RoomSettings(tags=("room_x",)), None) == [RoomRule("room_x", 18.0, dt.time(6, 0), dt.time(21, 0))]
