"""The historian stores what the gateway publishes on ``events``: alarm transitions as ``alarm``
points and station event updates as ``event`` points, by the payload's ``kind`` and ``id``."""

from __future__ import annotations

import json
import time

import pytest

from gateway.alarms.engine import AlarmEngine
from gateway.alarms.events import EventState, StationEvent
from gateway.alarms.settings import FLOOD_ALARM_ID, AlarmSettings
from gateway.historian.schema import Kind, LineEncoder, PayloadError, Topic, parse_topic
from gateway.historian.settings import ValidationSettings
from gateway.mqtt.payloads import alarm_state, alarm_suffix, alarm_transition, event_transition, open_events
from gateway.samples import Sample, SampleBatch

STREAM = Topic(Kind.EVENT, "demo-01")


def test_the_events_stream_is_a_topic_of_its_own() -> None:
    assert parse_topic("heatgw", "heatgw/demo-01/events") == STREAM


def test_an_alarm_transition_is_an_alarm_point_with_its_id_priority_and_state_code() -> None:
    engine = AlarmEngine(AlarmSettings.model_validate({"definitions": {"pump_trip": {
        "kind": "discrete", "tag": "pump_fault", "priority": "critical", "message": "循环泵故障"}}}), {"pump_fault": "plc"})
    [transition] = engine.on_item(SampleBatch("plc", "fast", (Sample("pump_fault", True, 1795456034.5),)), 1795456034.5)
    encoded = LineEncoder("default").state(STREAM, None, alarm_transition(7, transition))
    assert encoded.lines == [
        "alarm,alarm=pump_trip,kind=alarm,priority=critical,site=default,station=demo-01 "
        "state=1i,value=1.0,activated=1795456034.5,annunciated=1.0 1795456034500"]


def test_a_station_event_update_is_an_event_point() -> None:
    event = StationEvent("interruption", "interruption", EventState.ESCALATED, 1000.0, 4600.0, "供热中断",
                         "primary supply lost", 1.0, 29800.0)
    encoded = LineEncoder("default").state(STREAM, None, event_transition(8, event))
    assert encoded.lines == [
        "event,event=interruption,kind=event,rule=interruption,site=default,station=demo-01 "
        "state=1i,started=1000.0,escalation_h=1.0,deadline=29800.0,duration_s=3600.0 4600000"]


def test_a_stream_message_without_an_id_is_refused() -> None:
    with pytest.raises(PayloadError, match="without a valid id"):
        LineEncoder("default").state(STREAM, None, json.dumps({"ts": 1.0, "kind": "alarm", "value": 1}).encode())


def test_the_open_events_summary_is_stored_as_a_count() -> None:
    event = StationEvent("pit_flooding", "trip", EventState.STARTED, 1000.0, 1000.0, "pit flooded")
    topic = parse_topic("heatgw", "heatgw/demo-01/events/open")
    assert topic == Topic(Kind.EVENT, "demo-01", "open")
    encoded = LineEncoder("default").state(topic, None, open_events([event], 1001.0))
    assert encoded.lines == ["event,event=open,site=default,station=demo-01 count=1.0 1001000"]


def test_every_alarm_state_retained_at_start_is_stored_at_the_start_the_flood_summary_too() -> None:
    # The gateway publishes every alarm's state, retained, when it starts; an alarm that never
    # changed is "normal since the start". A state stamped 0 (1970) would be quarantined by every
    # bridge, again at each new subscription.
    start = time.time()
    engine = AlarmEngine(AlarmSettings.model_validate({"definitions": {"pump_trip": {
        "kind": "discrete", "tag": "pump_fault", "priority": "critical", "message": "循环泵故障"}}}),
        {"pump_fault": "plc"}, now=start)
    encoder = LineEncoder("default", limits=ValidationSettings().limits())
    stamped = {}
    for record in engine.records:
        topic = parse_topic("heatgw", f"heatgw/demo-01/{alarm_suffix(record.id)}")
        assert topic is not None
        [line] = encoder.state(topic, None, alarm_state(engine.describe(record.id))).lines
        stamped[record.id] = int(line.rsplit(" ", 1)[1])
    assert stamped == {"pump_trip": round(start * 1000), FLOOD_ALARM_ID: round(start * 1000)}
