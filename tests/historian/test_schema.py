"""Contract payloads -> line protocol: series keys, fields, timestamps, and what is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from influxdb_client import Point, WritePrecision

from gateway.historian.schema import (
    Kind,
    LineEncoder,
    PayloadError,
    StationMeta,
    TagInfo,
    Topic,
    parse_meta,
    parse_topic,
)

META = StationMeta(config_hash="sha256:x", site="north",
                   tags={"outdoor_temp": TagInfo("plc", "degC"), "primary_flow": TagInfo("meter", "m³/h")})


def encode(samples: list[list[Any]], meta: StationMeta | None = META, t0: float = 1795456034.777,
           **options: Any) -> list[str]:
    payload = json.dumps({"seq": 18234, "t0": t0, "s": samples}).encode()
    return LineEncoder("default", **options).telemetry("st1", meta, payload).lines


def test_the_readme_example_becomes_tagged_lines_at_the_samples_own_time() -> None:
    lines = encode([["outdoor_temp", -4.5, 0, "g"], ["primary_flow", None, 12, "b", "timeout"]])
    assert lines == [
        "telemetry,device=plc,site=north,station=st1,tag=outdoor_temp,unit=degC value=-4.5,quality=0i 1795456034777",
        "telemetry,device=meter,site=north,station=st1,tag=primary_flow,unit=m³/h quality=1i 1795456034789",
    ]


def test_values_are_always_floats_so_the_field_type_never_changes() -> None:
    lines = encode([["outdoor_temp", 5, 0, "g"], ["outdoor_temp", True, 1, "s"], ["outdoor_temp", False, 2, "g"],
                    ["outdoor_temp", 1e20, 3, "g"]])
    assert [line.split(" ")[1] for line in lines] == [
        "value=5.0,quality=0i", "value=1.0,quality=2i", "value=0.0,quality=0i", "value=1e+20,quality=0i"]


def test_non_finite_values_keep_their_quality_only() -> None:
    payload = b'{"seq": 1, "t0": 10.0, "s": [["outdoor_temp", NaN, 0, "g"], ["outdoor_temp", Infinity, 1, "b"]]}'
    encoded = LineEncoder("default").telemetry("st1", META, payload)
    assert [line.split(" ")[1] for line in encoded.lines] == ["quality=0i", "quality=1i"]


def test_timestamps_round_to_the_millisecond_the_station_meant() -> None:
    # 0.777 has no exact binary form: truncation would write ...776.
    assert encode([["outdoor_temp", 1.0, 0, "g"]], t0=1795456034.777)[0].endswith(" 1795456034777")
    assert encode([["outdoor_temp", 1.0, 999, "g"]], t0=0.001)[0].endswith(" 1000")


def test_malformed_samples_are_skipped_and_counted_not_fatal() -> None:
    payload = json.dumps({"seq": 1, "t0": 10.0, "s": [
        ["outdoor_temp", 1.0, 0, "x"], ["outdoor_temp", 1.0], [None, 1.0, 0, "g"], "junk",
        ["outdoor_temp", "text", 0, "g"], ["outdoor_temp", 2.0, 5, "g"]]}).encode()
    encoded = LineEncoder("default").telemetry("st1", META, payload)
    assert encoded.skipped == 5 and encoded.values == 1 and encoded.seq == 1


@pytest.mark.parametrize("payload", [
    b"not json", b"[1, 2]", b'{"t0": 1.0, "s": []}', b'{"seq": -1, "t0": 1.0, "s": []}',
    b'{"seq": true, "t0": 1.0, "s": []}', b'{"seq": 1, "t0": "now", "s": []}', b'{"seq": 1, "t0": 1.0}',
    b'{"seq": 1, "t0": -5, "s": []}', b"\xff\xfe",
])
def test_messages_outside_the_contract_are_refused(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        LineEncoder("default").telemetry("st1", META, payload)


def test_without_meta_the_series_has_no_device_or_unit_and_the_default_site() -> None:
    [line] = encode([["outdoor_temp", 1.0, 0, "g"]], meta=None)
    assert line.startswith("telemetry,site=default,station=st1,tag=outdoor_temp value=")


def test_new_meta_takes_effect_once_the_station_is_forgotten() -> None:
    encoder = LineEncoder("default")
    payload = b'{"seq": 1, "t0": 1.0, "s": [["outdoor_temp", 1.0, 0, "g"]]}'
    assert "unit=degC" in encoder.telemetry("st1", META, payload).lines[0]
    changed = StationMeta(site="north", tags={"outdoor_temp": TagInfo("plc", "K")})
    assert "unit=degC" in encoder.telemetry("st1", changed, payload).lines[0], "cached series key"
    encoder.forget("st1")
    assert "unit=K" in encoder.telemetry("st1", changed, payload).lines[0]


def test_tag_values_are_escaped_like_influxdb_clients_own_point() -> None:
    odd = StationMeta(site="north", tags={"t": TagInfo("plc 2,a=b", "%/K x")})
    [line] = LineEncoder("default").telemetry("st 1", odd, b'{"seq": 1, "t0": 1.0, "s": [["t", 1.0, 0, "g"]]}').lines
    point = (Point("telemetry").tag("device", "plc 2,a=b").tag("site", "north").tag("station", "st 1")
             .tag("tag", "t").tag("unit", "%/K x").field("quality", 0).time(1000, WritePrecision.MS))
    assert line.split(" value=")[0] == point.to_line_protocol().split(" quality=")[0]


def test_the_reason_is_a_string_field_only_when_asked_for() -> None:
    sample = [["primary_flow", None, 0, "b", 'timeout "x"']]
    assert "reason" not in encode(sample)[0]
    assert encode(sample, write_reason=True)[0] == (
        'telemetry,device=meter,site=north,station=st1,tag=primary_flow,unit=m³/h quality=1i,reason="timeout \\"x\\""'
        " 1795456034777")


def test_an_alarm_keeps_its_state_as_a_number_and_bounded_labels_as_tags() -> None:
    payload = json.dumps({"state": "Active", "ts": 1795456034.5, "severity": "high", "value": 96.5,
                          "text": "supply too hot", "limit": {"high": 95}}).encode()
    encoded = LineEncoder("default").state(Topic(Kind.ALARM, "st1", "overtemp"), META, payload)
    assert encoded.lines == [
        "alarm,alarm=overtemp,severity=high,site=north,station=st1 state=1i,value=96.5,limit_high=95.0 1795456034500"]
    assert encoded.unknown_strings == ["text"]


def test_free_text_never_becomes_a_tag_and_unknown_states_are_flagged() -> None:
    payload = json.dumps({"state": "exploded", "ts": 1.0, "severity": "Very High!"}).encode()
    encoded = LineEncoder("default").state(Topic(Kind.EVENT, "st1", "leak"), None, payload)
    assert encoded.lines == ["event,event=leak,site=default,station=st1 state=-1i 1000"]
    assert encoded.unknown_strings == ["state=exploded", "severity"]


def test_controller_state_flattens_nested_numbers() -> None:
    payload = json.dumps({"ts": 2.0, "seq": 9, "enabled": True, "circuits": {"radiators": {"setpoint_c": 61.5}},
                          "mode": "auto"}).encode()
    encoded = LineEncoder("default").state(Topic(Kind.CONTROL, "st1"), META, payload)
    assert encoded.lines == ["control,site=north,station=st1 enabled=1.0,circuits_radiators_setpoint_c=61.5 2000"]


@pytest.mark.parametrize("payload", [b'{"state": "active"}', b'{"ts": 1.0, "text": "only words"}', b'"x"'])
def test_state_messages_need_a_time_and_a_number(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        LineEncoder("default").state(Topic(Kind.ALARM, "st1", "a"), None, payload)


@pytest.mark.parametrize(("topic", "expected"), [
    ("heatgw/st1/telemetry", Topic(Kind.TELEMETRY, "st1")),
    ("heatgw/st1/control", Topic(Kind.CONTROL, "st1")),
    ("heatgw/st1/meta", Topic(Kind.META, "st1")),
    ("heatgw/st1/alarms/overtemp", Topic(Kind.ALARM, "st1", "overtemp")),
    ("heatgw/st1/events/outage", Topic(Kind.EVENT, "st1", "outage")),
    ("heatgw/st1/status", Topic(Kind.STATUS, "st1")),
    ("heatgw/st1/cmd/offset", None),
    ("other/st1/telemetry", None),
    ("heatgw//telemetry", None),
    ("heatgw/st1/alarms/", None),
])
def test_topics(topic: str, expected: Topic | None) -> None:
    assert parse_topic("heatgw", topic) == expected


def test_meta_is_read_leniently_but_must_have_tags() -> None:
    meta = parse_meta(json.dumps({"config_hash": "sha256:1", "site": "north", "tags": {
        "a": {"unit": "degC", "device": "plc", "description": ""}, "b": {}, "c": None}}).encode())
    assert meta == StationMeta("sha256:1", "north", {"a": TagInfo("plc", "degC"), "b": TagInfo(), "c": TagInfo()})
    with pytest.raises(PayloadError):
        parse_meta(b'{"config_hash": "x"}')


def test_the_controllers_enumerated_text_fields_become_codes_and_closed_set_labels() -> None:
    payload = json.dumps({"seq": 7, "ts": 1795456034.5, "season": "heating", "season_reason": "calendar: 11-15",
                          "outdoor_source": "carrier pigeon", "outdoor_c": -4.5,
                          "circuits": {"radiators": {"phase": "preheat", "write_status": "refused: above max",
                                                     "clamped": "", "reason": "heating", "setpoint_c": 61.0}}})
    encoded = LineEncoder("default").state(Topic(Kind.CONTROL, "st1"), None, payload.encode())
    control, *labels = encoded.lines
    fields = dict(item.split("=") for item in control.split(" ")[1].split(","))
    assert fields == {"season_code": "3i", "outdoor_source_code": "-1i", "outdoor_c": "-4.5",
                      "circuits_radiators_phase_code": "3i", "circuits_radiators_write_status_code": "3i",
                      "circuits_radiators_clamped_code": "0i", "circuits_radiators_setpoint_c": "61.0"}
    assert labels == [
        f"control_text,field={field},name={name},site=default,station=st1 code={code}i 1795456034500"
        for field, name, code in [("season", "heating", 3), ("outdoor_source", "other", -1),
                                  ("circuits_radiators_phase", "preheat", 3),
                                  ("circuits_radiators_write_status", "refused", 3),
                                  ("circuits_radiators_clamped", "none", 0)]]
    assert "carrier pigeon" not in "".join(encoded.lines), "an unknown word is stored as other, never itself"
    assert "outdoor_source=carrier pigeon" in encoded.unknown_strings


def test_a_device_status_on_the_events_stream_is_a_device_point_with_coded_state_and_reason() -> None:
    payload = b'{"seq":9,"ts":1795456034.25,"kind":"device","id":"meter","state":"offline",' \
              b'"reason":"timeout: no reply in 1.0 s"}'
    encoded = LineEncoder("default").state(Topic(Kind.EVENT, "st1"), META, payload)
    assert encoded.seq == 9
    assert encoded.lines == [
        "device,device=meter,site=north,station=st1 state_code=0i,reason_code=1i 1795456034250",
        "device_text,device=meter,field=state,name=offline,site=north,station=st1 code=0i 1795456034250",
        "device_text,device=meter,field=reason,name=timeout,site=north,station=st1 code=1i 1795456034250",
    ]


def test_a_birth_is_a_status_point_at_its_own_time_with_version_and_config_as_info_tags() -> None:
    digest = "sha256:" + "ab" * 32
    birth = json.dumps({"state": "online", "version": "0.4.0", "config_hash": digest, "started": 1795456000.0,
                        "ts": 1795456001.5, "outbox": {"pending": 3, "dropped": 0}}).encode()
    lines = LineEncoder("default").status(Topic(Kind.STATUS, "st1"), META, birth, arrived=1795456099.0).lines
    assert lines[0] == ("status,site=north,station=st1 started=1795456000.0,outbox_pending=3.0,outbox_dropped=0.0,"
                        "state_code=1i,reason_code=0i 1795456001500")
    assert lines[-1] == f"status_info,config_hash={digest},site=north,station=st1,version=0.4.0 online=1i 1795456001500"


def test_the_last_will_has_no_time_of_its_own_and_is_stored_when_it_arrived() -> None:
    will = b'{"state":"offline","reason":"connection lost"}'
    lines = LineEncoder("default").status(Topic(Kind.STATUS, "st1"), META, will, arrived=1795456099.0).lines
    assert lines == [
        "status,site=north,station=st1 state_code=0i,reason_code=2i 1795456099000",
        "status_text,field=state,name=offline,site=north,station=st1 code=0i 1795456099000",
        "status_text,field=reason,name=connection_lost,site=north,station=st1 code=2i 1795456099000",
    ]


@pytest.mark.parametrize("payload", [
    b'{"state":"online","version":"1.0 beta","config_hash":"sha256:00","ts":1.0}',
    b'{"state":1,"ts":1.0}',
])
def test_a_status_with_an_unbounded_label_or_no_state_word_is_refused(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        LineEncoder("default").status(Topic(Kind.STATUS, "st1"), None, payload, arrived=2.0)


def test_a_tag_the_meta_names_a_room_carries_kind_room_and_an_unknown_kind_is_left_out() -> None:
    meta = parse_meta(json.dumps({"tags": {"room_a_temp": {"unit": "degC", "device": "rooms", "kind": "room"},
                                           "outdoor_temp": {"unit": "degC", "device": "plc", "kind": "weird word"}}})
                      .encode())
    payload = json.dumps({"seq": 1, "t0": 1795456034.0, "s": [["room_a_temp", 19.5, 0, "g"],
                                                             ["outdoor_temp", -4.5, 0, "g"]]}).encode()
    assert LineEncoder("default").telemetry("st1", meta, payload).lines == [
        "telemetry,device=rooms,kind=room,site=default,station=st1,tag=room_a_temp,unit=degC value=19.5,quality=0i "
        "1795456034000",
        "telemetry,device=plc,site=default,station=st1,tag=outdoor_temp,unit=degC value=-4.5,quality=0i 1795456034000",
    ]
