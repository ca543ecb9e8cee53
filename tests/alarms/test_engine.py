"""The engine: delays, hysteresis at the edges, suppression, shelving, timers and floods, on an
injected clock and hand-made bus items."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.base import Quality
from gateway.alarms.engine import AlarmEngine, Transition
from gateway.alarms.settings import AlarmSettings, FLOOD_ALARM_ID, Priority
from gateway.alarms.state import AlarmRefused, AlarmState
from gateway.control.model import ControllerState, OutdoorSource, Signal
from gateway.control.settings import SeasonMode
from gateway.samples import DeviceStatus, Sample, SampleBatch

TAGS = {"pump_fault": "plc", "secondary_flow": "plc", "supply_temp": "plc", "supply_setpoint": "plc",
        "return_pressure": "plc", "meter_power": "meter"}


def engine(definitions: dict[str, dict[str, Any]], **settings: Any) -> AlarmEngine:
    return AlarmEngine(AlarmSettings.model_validate({"definitions": definitions, **settings}), TAGS)


def batch(now: float, quality: Quality = Quality.GOOD, **values: Any) -> SampleBatch:
    return SampleBatch("plc", "fast", tuple(Sample(tag, value, now, quality) for tag, value in values.items()))


def states(transitions: list[Transition]) -> list[tuple[str, str]]:
    return [(t.record.id, t.record.state.value) for t in transitions]


HIGH = {"kind": "threshold", "tag": "supply_temp", "level": "h", "limit": 90.0, "deadband": 2.0,
        "priority": "high", "message": "二次供水温度过高 secondary supply too hot"}


def test_a_high_limit_raises_above_the_limit_and_returns_only_below_the_deadband() -> None:
    alarms = engine({"supply_hot": HIGH})
    assert alarms.on_item(batch(0, supply_temp=90.0), 0) == []  # at the limit is not beyond it
    assert states(alarms.on_item(batch(1, supply_temp=90.1), 1)) == [("supply_hot", "active")]
    assert alarms.on_item(batch(2, supply_temp=88.5), 2) == []  # inside the deadband: still active
    assert alarms.on_item(batch(3, supply_temp=88.1), 3) == []
    [back] = alarms.on_item(batch(4, supply_temp=88.0), 4)  # back by the whole deadband
    assert back.record.state is AlarmState.RETURNED and back.record.returned == 4
    assert back.message.startswith("二次供水温度过高") and back.limit == 90.0 and back.priority is Priority.HIGH


def test_a_low_low_limit_mirrors_the_high_one() -> None:
    alarms = engine({"pressure_ll": {"kind": "threshold", "tag": "return_pressure", "level": "ll", "limit": 0.1,
                                     "deadband": 0.02, "priority": "critical", "message": "low return pressure"}})
    assert states(alarms.on_item(batch(0, return_pressure=0.09), 0)) == [("pressure_ll", "active")]
    assert alarms.on_item(batch(1, return_pressure=0.115), 1) == []
    assert states(alarms.on_item(batch(2, return_pressure=0.1201), 2)) == [("pressure_ll", "returned")]


def test_on_delay_needs_the_condition_to_hold_and_a_blip_restarts_it() -> None:
    alarms = engine({"supply_hot": {**HIGH, "on_delay_s": 10}})
    assert alarms.on_item(batch(0, supply_temp=95.0), 0) == []
    assert alarms.tick(9.9) == []
    assert alarms.on_item(batch(9.95, supply_temp=80.0), 9.95) == []  # blip back: delay restarts
    assert alarms.on_item(batch(10, supply_temp=95.0), 10) == []
    assert alarms.tick(19.9) == []
    assert states(alarms.tick(20.0)) == [("supply_hot", "active")]


def test_off_delay_keeps_the_alarm_until_the_value_has_stayed_back() -> None:
    alarms = engine({"supply_hot": {**HIGH, "off_delay_s": 30}})
    alarms.on_item(batch(0, supply_temp=95.0), 0)
    assert alarms.on_item(batch(1, supply_temp=80.0), 1) == []
    assert alarms.tick(30.9) == []
    assert states(alarms.tick(31.0)) == [("supply_hot", "returned")]


def test_a_bad_value_neither_raises_nor_clears_a_limit_alarm() -> None:
    alarms = engine({"supply_hot": HIGH})
    alarms.on_item(batch(0, supply_temp=95.0), 0)
    assert alarms.on_item(batch(1, Quality.BAD, supply_temp=None), 1) == []
    assert alarms.record("supply_hot").state is AlarmState.ACTIVE


def test_a_discrete_alarm_follows_the_abnormal_state() -> None:
    alarms = engine({"pump_trip": {"kind": "discrete", "tag": "pump_fault", "priority": "critical",
                                   "message": "循环泵故障"}})
    assert states(alarms.on_item(batch(0, pump_fault=True), 0)) == [("pump_trip", "active")]
    assert states(alarms.on_item(batch(1, pump_fault=False), 1)) == [("pump_trip", "returned")]


def test_deviation_from_a_reference_tag_for_30_minutes() -> None:
    alarms = engine({"supply_deviation": {"kind": "deviation", "tag": "supply_temp", "reference": "supply_setpoint",
                                          "limit": 10, "deadband": 1, "on_delay_s": 1800, "priority": "medium",
                                          "message": "supply away from its setpoint"}})
    alarms.on_item(batch(0, supply_temp=60.0, supply_setpoint=75.0), 0)
    assert alarms.tick(1799) == []
    assert states(alarms.tick(1800)) == [("supply_deviation", "active")]
    assert alarms.on_item(batch(1900, supply_setpoint=69.5), 1900) == []  # 9.5 K: inside the deadband
    assert states(alarms.on_item(batch(2000, supply_setpoint=68.9), 2000)) == [("supply_deviation", "returned")]


def test_rate_of_change_between_good_samples() -> None:
    alarms = engine({"supply_jump": {"kind": "rate", "tag": "supply_temp", "limit_per_min": 5, "priority": "low",
                                     "message": "supply temperature jumps"}})
    assert alarms.on_item(batch(0, supply_temp=60.0), 0) == []
    assert alarms.on_item(batch(60, supply_temp=65.0), 60) == []  # exactly 5 K/min
    assert states(alarms.on_item(batch(90, supply_temp=68.0), 90)) == [("supply_jump", "active")]
    assert states(alarms.on_item(batch(150, supply_temp=69.0), 150)) == [("supply_jump", "returned")]


def test_a_tag_without_a_good_value_for_longer_than_after_s_raises_a_quality_alarm() -> None:
    alarms = engine({"supply_sensor": {"kind": "quality", "tag": "supply_temp", "after_s": 60, "priority": "medium",
                                       "message": "supply sensor faulty"}})
    alarms.on_item(batch(0, supply_temp=60.0), 0)
    alarms.on_item(batch(1, Quality.BAD, supply_temp=None), 1)
    assert alarms.tick(60.5) == []
    assert states(alarms.tick(61)) == [("supply_sensor", "active")]
    assert states(alarms.on_item(batch(62, supply_temp=60.0), 62)) == [("supply_sensor", "returned")]


def test_a_tag_whose_samples_stop_coming_is_stale_after_s_after_its_last_good_one() -> None:
    alarms = engine({"supply_sensor": {"kind": "quality", "tag": "supply_temp", "after_s": 60, "priority": "medium",
                                       "message": "supply sensor silent"}})
    alarms.on_item(batch(10, supply_temp=60.0), 10)
    assert alarms.tick(69) == []
    assert states(alarms.tick(71)) == [("supply_sensor", "active")]


PUMP = {"kind": "discrete", "tag": "pump_fault", "priority": "critical", "message": "pump tripped"}
NO_FLOW = {"kind": "threshold", "tag": "secondary_flow", "level": "l", "limit": 20, "priority": "high",
           "message": "no circulation flow", "suppressed_by": ["pump_trip"]}
LOW_PRESSURE = {"kind": "threshold", "tag": "return_pressure", "level": "l", "limit": 0.15, "priority": "high",
                "message": "low return pressure", "suppressed_by": ["pump_trip"]}


def test_one_pump_trip_gives_one_alarm_even_when_its_consequences_arrive_in_the_same_batch() -> None:
    alarms = engine({"no_flow": NO_FLOW, "low_pressure": LOW_PRESSURE, "pump_trip": PUMP})
    got = alarms.on_item(batch(0, secondary_flow=0.0, return_pressure=0.1, pump_fault=True), 0)
    assert states(got) == [("pump_trip", "active"), ("no_flow", "suppressed"), ("low_pressure", "suppressed")] \
        or sorted(states(got)) == sorted([("pump_trip", "active"), ("no_flow", "suppressed"),
                                           ("low_pressure", "suppressed")])
    assert [t.record.id for t in got if t.record.state is AlarmState.ACTIVE] == ["pump_trip"]


def test_when_the_suppressor_clears_a_remaining_consequence_is_raised() -> None:
    alarms = engine({"pump_trip": PUMP, "no_flow": NO_FLOW})
    alarms.on_item(batch(0, secondary_flow=0.0, pump_fault=True), 0)
    got = alarms.on_item(batch(5, pump_fault=False), 5)
    assert sorted(states(got)) == [("no_flow", "active"), ("pump_trip", "returned")]
    assert alarms.on_item(batch(6, secondary_flow=50.0), 6)[0].record.state is AlarmState.RETURNED


def test_a_lost_device_suppresses_the_alarms_on_its_tags_automatically() -> None:
    alarms = engine({"plc_lost": {"kind": "comm", "device": "plc", "priority": "critical",
                                  "message": "PLC not answering"},
                     "supply_sensor": {"kind": "quality", "tag": "supply_temp", "after_s": 5, "priority": "medium",
                                       "message": "supply sensor faulty"},
                     "pump_trip": PUMP})
    alarms.on_item(batch(0, supply_temp=60.0, pump_fault=False), 0)
    assert states(alarms.on_item(DeviceStatus("plc", False, 1, "timeout"), 1)) == [("plc_lost", "active")]
    alarms.on_item(batch(2, Quality.BAD, supply_temp=None, pump_fault=None), 2)
    got = alarms.tick(30)
    assert states(got) == [("supply_sensor", "suppressed")]
    back = alarms.on_item(DeviceStatus("plc", True, 40), 40)
    assert sorted(states(back)) == [("plc_lost", "returned"), ("supply_sensor", "active")]


def test_acknowledge_and_its_refusals() -> None:
    alarms = engine({"pump_trip": PUMP})
    with pytest.raises(AlarmRefused, match="unknown alarm 'nope'"):
        alarms.acknowledge("nope", 0, "op")
    with pytest.raises(AlarmRefused, match="not active"):
        alarms.acknowledge("pump_trip", 0, "op")
    alarms.on_item(batch(1, pump_fault=True), 1)
    assert alarms.acknowledge("pump_trip", 2, "dispatch/li").record.state is AlarmState.ACKNOWLEDGED
    with pytest.raises(AlarmRefused, match="already acknowledged"):
        alarms.acknowledge("pump_trip", 3, "op")


def test_shelving_is_bounded_and_ends_by_itself() -> None:
    alarms = engine({"pump_trip": PUMP}, max_shelve_s=3600)
    alarms.on_item(batch(0, pump_fault=True), 0)
    with pytest.raises(AlarmRefused, match="at most 3600"):
        alarms.shelve("pump_trip", 1, 3601, "op", "repair")
    assert alarms.shelve("pump_trip", 1, 600, "op", "repair crew on site").record.state is AlarmState.SHELVED
    assert alarms.on_item(batch(2, pump_fault=False), 2) == []
    assert alarms.on_item(batch(3, pump_fault=True), 3) == []
    assert alarms.tick(600) == []
    [back] = alarms.tick(601)
    assert back.record.state is AlarmState.ACTIVE and back.record.activated == 601


def test_out_of_service_alarms_never_annunciate() -> None:
    alarms = engine({"pump_trip": {**PUMP, "out_of_service": True}})
    assert alarms.record("pump_trip").state is AlarmState.OUT_OF_SERVICE
    assert alarms.on_item(batch(0, pump_fault=True), 0) == []


def test_controller_signals_are_alarms_with_declared_defaults_a_station_can_override() -> None:
    settings = AlarmSettings.model_validate({"definitions": {"outdoor_bad": {
        "kind": "controller", "signal": "outdoor_sensor_fault", "priority": "low", "message": "室外温度传感器故障"}}})
    alarms = AlarmEngine(settings, TAGS, controller=True)
    state = ControllerState(timestamp=0.0, season=SeasonMode.HEATING, season_reason="", outdoor_raw_c=None,
                            outdoor_c=-5.0, outdoor_source=OutdoorSource.DEFAULT, outdoor_fault="open circuit",
                            outdoor_network_c=None, circuits=(),
                            signals=(Signal.OUTDOOR_SENSOR_FAULT, Signal.FROST_PROTECTION))
    got = alarms.on_item(state, 100)
    assert sorted(states(got)) == [("ctl_frost_protection", "active"), ("outdoor_bad", "active")]
    ids = {record.id for record in alarms.records}
    assert "ctl_outdoor_sensor_fault" not in ids and "ctl_setpoint_not_written" in ids
    assert states(alarms.tick(100 + 299)) == []
    assert AlarmEngine(AlarmSettings(controller_signals=False), TAGS, controller=True).records[0].id == FLOOD_ALARM_ID


def many(n: int, priority: str) -> dict[str, dict[str, Any]]:
    return {f"a{i}": {"kind": "threshold", "tag": "supply_temp", "level": "h", "limit": float(i), "priority": priority,
                      "message": f"alarm {i}"} for i in range(n)}


def test_a_flood_summarises_lower_priorities_and_records_every_transition() -> None:
    alarms = engine({**many(30, "low"), "pump_trip": PUMP}, flood={"max_activations": 10, "window_s": 600})
    got = alarms.on_item(batch(0, supply_temp=100.0), 0)
    activations = [t for t in got if t.record.state is AlarmState.ACTIVE and t.record.id != FLOOD_ALARM_ID]
    assert len(activations) == 30  # every transition is there
    assert sum(t.annunciate for t in activations) == 10
    assert [t.record.id for t in got if t.record.id == FLOOD_ALARM_ID] == [FLOOD_ALARM_ID]
    assert "20 summarised" in [t for t in got if t.record.id == FLOOD_ALARM_ID][0].message
    assert alarms.summarised == 20
    [trip] = alarms.on_item(batch(1, pump_fault=True), 1)
    assert trip.annunciate  # critical still gets through during the flood
    assert states(alarms.tick(599)) == []
    assert states(alarms.tick(600)) == [(FLOOD_ALARM_ID, "normal")]


def test_alarms_restored_after_a_restart_are_not_raised_again() -> None:
    before = engine({"pump_trip": PUMP, "no_flow": {**NO_FLOW, "suppressed_by": []}})
    before.on_item(batch(0, pump_fault=True, secondary_flow=0.0), 0)
    before.acknowledge("pump_trip", 1, "op")
    after = engine({"pump_trip": PUMP, "no_flow": {**NO_FLOW, "suppressed_by": []}})
    assert after.restore(before.records, 100) == []
    assert after.on_item(batch(101, pump_fault=True), 101) == []
    assert states(after.on_item(batch(102, secondary_flow=50.0), 102)) == [("no_flow", "returned")]


def test_an_acknowledged_flood_summary_still_ends_when_the_flood_does() -> None:
    alarms = engine(many(12, "low"), flood={"max_activations": 10, "window_s": 600})
    alarms.on_item(batch(0, supply_temp=100.0), 0)
    assert alarms.acknowledge(FLOOD_ALARM_ID, 1, "op").record.state is AlarmState.ACKNOWLEDGED
    assert states(alarms.tick(600)) == [(FLOOD_ALARM_ID, "normal")]

