"""The contract's payloads: compact telemetry with values at their register's resolution."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from drivers.base import Quality, Reason
from gateway.config import GatewayConfig, load_gateway_config
from gateway.control.model import OutdoorSource
from gateway.control.settings import SeasonMode
import pytest

from gateway.mqtt.payloads import (
    DEVICE_REASON,
    OTHER,
    OUTDOOR_SOURCE,
    PHASE,
    SEASON,
    WRITE_STATUS,
    ContractError,
    Delivered,
    ReplayAnswer,
    StationIdentity,
    TelemetryEncoder,
    birth,
    config_hash,
    death,
    delivered,
    device_status,
    meta,
    parse_delivered,
    parse_replay_answer,
    replay_command,
    result,
)
from gateway.samples import DeviceStatus, Sample
from tests.gateway.conftest import station_config

ROOT = Path(__file__).resolve().parents[2]


def config() -> GatewayConfig:
    return station_config(5020)


def test_values_are_rounded_to_what_the_register_can_hold() -> None:
    traits = config().tag_traits()
    assert traits["outdoor_temp"].digits == 1  # int16, scale 0.1
    assert traits["primary_supply_pressure"].digits == 3  # scale 0.001
    assert traits["meter_energy_kwh"].digits == 0
    assert traits["meter_flow"].digits == -7  # float32: 7 significant digits
    encoder = TelemetryEncoder.for_config(config())
    assert encoder.text("valve_position", 79.60000000000001) == "79.6"
    assert encoder.text("primary_supply_pressure", 0.5800000000000001) == "0.58"
    assert encoder.text("meter_flow", 25.772050857543945) == "25.77205"
    assert encoder.text("meter_energy_kwh", 12) == "12"
    assert encoder.text("pump_running", True) == "true"
    assert encoder.text("outdoor_temp", None) == "null"
    assert encoder.text("outdoor_temp", float("nan")) == "null"
    assert encoder.text("unknown_tag", 0.1 + 0.2) == "0.3"  # 15 significant digits


def test_payload_is_valid_json_with_escaped_names_and_reasons() -> None:
    encoder = TelemetryEncoder({})
    payload = encoder.encode(1, [Sample('odd "tag"', 1e21, 10.0, Quality.BAD, 'exception: "3"\n')])
    assert json.loads(payload) == {"seq": 1, "t0": 10.0, "s": [['odd "tag"', 1e21, 0, "b", 'exception: "3"\n']]}


def test_telemetry_is_positional_with_millisecond_offsets_and_one_letter_quality() -> None:
    encoder = TelemetryEncoder.for_config(config())
    payload = encoder.encode(18234, [
        Sample("outdoor_temp", -4.5, 1795456034.7771),
        Sample("primary_flow", None, 1795456034.789, Quality.BAD, "timeout"),
        Sample("valve_position", 40.1, 1795456035.0, Quality.STALE, "not_refreshed"),
    ])
    assert payload == (b'{"seq":18234,"t0":1795456034.777,"s":[["outdoor_temp",-4.5,0,"g"],'
                       b'["primary_flow",null,12,"b","timeout"],["valve_position",40.1,223,"s","not_refreshed"]]}')


def test_status_and_meta_carry_version_and_config_hash() -> None:
    cfg = config()
    digest = config_hash(cfg)
    assert digest.startswith("sha256:") and len(digest) == 7 + 64
    assert config_hash(station_config(5020)) == digest, "the hash must not depend on object identity"
    assert config_hash(station_config(5021)) != digest
    identity = StationIdentity("demo-01", "0.1.0", digest, 1795456034.7771)
    assert json.loads(birth(identity, 1795456034.9123, 5, 2)) == {
        "state": "online", "version": "0.1.0", "config_hash": digest, "started": 1795456034.777,
        "ts": 1795456034.912, "outbox": {"pending": 5, "dropped": 2}}
    assert json.loads(death("connection lost", None)) == {"state": "offline", "reason": "connection lost"}
    assert json.loads(death("shutdown", 1795459999.12)) == {"state": "offline", "reason": "shutdown",
                                                            "ts": 1795459999.12}
    described = json.loads(meta(cfg, digest))
    assert described["config_hash"] == digest and described["site"] == "demo-city"
    assert described["tags"]["outdoor_temp"] == {"unit": "degC", "device": "plc", "description": ""}
    assert len(described["tags"]) == len(cfg.tags())


def test_a_confirmation_round_trips_and_a_malformed_one_is_refused_whole() -> None:
    confirmation = Delivered(120, ((125, 130), (140, 140)))
    assert parse_delivered(delivered(confirmation, 1795456034.5)) == confirmation
    assert confirmation.highest == 140
    for bad in (b'{"upto": -1}', b'{"upto": true}', b'{"upto": 5, "ranges": [[3, 4]]}',
                b'{"upto": 5, "ranges": [[9, 8]]}', b'{"upto": 5, "ranges": [[6]]}', b"[5]", b"{upto"):
        with pytest.raises(ContractError):
            parse_delivered(bad)


def test_a_replay_request_and_its_answer_are_the_contract_shapes() -> None:
    request = json.loads(replay_command("historian:21-22:7", "historian/a", 1795456094.0, 21, 22))
    assert request == {"id": "historian:21-22:7", "origin": "historian/a", "expires": 1795456094.0,
                       "args": {"from_seq": 21, "to_seq": 22}}
    answer = ReplayAnswer(21, 30, 5, (21, 25), 0)
    payload = result("historian:21-22:7", True, "", 1795456035.0, answer.result())
    assert parse_replay_answer(payload) == answer
    assert parse_replay_answer(result("x", False, "to_seq 99 was never given", 0.0, None)) == "to_seq 99 was never given"
    with pytest.raises(ContractError):
        parse_replay_answer(result("x", True, "", 0.0, {"from_seq": 5, "to_seq": 9, "resent": 0, "absent": 0,
                                                        "dropped_first": 2, "dropped_last": 3}))


def test_every_word_the_gateway_can_publish_has_its_own_code_in_the_contracts_tables() -> None:
    for table, words in [(SEASON, [m.value for m in SeasonMode]), (OUTDOOR_SOURCE, [m.value for m in OutdoorSource]),
                         (DEVICE_REASON, [f"{m.value}: detail" for m in Reason] + [""]),
                         (PHASE, ["day", "coast", "night", "preheat"]),
                         (WRITE_STATUS, ["", "written", "unchanged", "refused: x", "failed: y",
                                         "controller disabled: decision not written"])]:
        names = [table.name(word) for word in words]
        assert OTHER not in names, (table.key, words)
        assert len({table.code(word) for word in words}) == len(set(names)), "one code per name"
    assert SEASON.code("monsoon") == -1 and SEASON.name("monsoon") == "other"


def test_a_device_status_goes_on_the_events_stream_with_its_sequence_number() -> None:
    assert json.loads(device_status(DeviceStatus("meter", False, 1795456034.25, "timeout: no reply"), 12)) == {
        "seq": 12, "ts": 1795456034.25, "kind": "device", "id": "meter", "state": "offline",
        "reason": "timeout: no reply"}


def test_meta_names_the_representative_rooms_as_such_and_nothing_else() -> None:
    cfg = config()
    room = next(tag for tag in cfg.tags() if tag.startswith("room_"))
    tags = json.loads(meta(cfg, config_hash(cfg), rooms={room}))["tags"]
    assert tags[room]["kind"] == "room"
    assert [tag for tag, entry in tags.items() if "kind" in entry] == [room]


@pytest.mark.parametrize("station", ["config/station.yaml", "config/station-opcua.yaml"])
def test_the_config_hash_is_the_hash_of_the_whole_canonical_configuration(station: str) -> None:
    config = load_gateway_config(ROOT / station)
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    assert config_hash(config) == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
