"""The contract's payloads: compact telemetry with values at their register's resolution."""

from __future__ import annotations

import json

from drivers.base import Quality
from gateway.config import GatewayConfig
from gateway.mqtt.payloads import StationIdentity, TelemetryEncoder, birth, config_hash, death, meta, resolution
from gateway.samples import Sample
from tests.gateway.conftest import station_config


def config() -> GatewayConfig:
    return station_config(5020)


def test_values_are_rounded_to_what_the_register_can_hold() -> None:
    tags = config().tags()
    assert resolution(tags["outdoor_temp"][1]) == 1  # int16, scale 0.1
    assert resolution(tags["primary_supply_pressure"][1]) == 3  # scale 0.001
    assert resolution(tags["meter_energy_kwh"][1]) == 0
    assert resolution(tags["meter_flow"][1]) == -7  # float32: 7 significant digits
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
