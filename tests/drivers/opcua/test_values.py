"""The pure rules of the OPC UA driver: configuration, StatusCode to quality, the node's declared type."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from asyncua import ua

from drivers.base import Quality
from drivers.opcua.config import OpcUaTag
from drivers.opcua.driver import problems
from drivers.opcua.values import sample_of, to_variant
from gateway.acquisition.device import Unrepresentable
from gateway.yaml_source import ConfigError
from tests.drivers.opcua.conftest import device_config

SOURCE = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
SERVER = datetime(2026, 12, 4, 12, 0, 1, tzinfo=UTC)
TAG = OpcUaTag.model_validate({"node": "ns=plc;s=X", "range": [0, 150]})


def data(value: object, code: int = ua.StatusCodes.Good, kind: ua.VariantType = ua.VariantType.Float,
         source: datetime | None = SOURCE) -> ua.DataValue:
    return ua.DataValue(ua.Variant(value, kind), StatusCode=ua.StatusCode(code), SourceTimestamp=source,
                        ServerTimestamp=SERVER)


def test_a_good_value_keeps_its_source_timestamp_and_falls_back_to_the_server_s() -> None:
    assert sample_of("t", TAG, data(61.5), 99.0).timestamp == SOURCE.timestamp()
    assert sample_of("t", TAG, data(61.5, source=None), 99.0).timestamp == SERVER.timestamp()
    sample = sample_of("t", TAG, data(61.5), 99.0)
    assert (sample.value, sample.quality, sample.reason) == (61.5, Quality.GOOD, "")


def test_bad_and_uncertain_status_codes_are_bad_with_the_code_s_name_and_only_uncertain_keeps_its_value() -> None:
    bad = sample_of("t", TAG, data(61.5, ua.StatusCodes.BadSensorFailure), 99.0)
    assert (bad.value, bad.quality, bad.reason) == (None, Quality.BAD, "BadSensorFailure")
    uncertain = sample_of("t", TAG, data(61.5, ua.StatusCodes.UncertainLastUsableValue), 99.0)
    assert (uncertain.value, uncertain.quality, uncertain.reason) == (61.5, Quality.BAD, "UncertainLastUsableValue")


def test_a_good_value_outside_the_tag_s_range_is_bad_out_of_range_and_kept() -> None:
    sample = sample_of("t", TAG, data(850.0), 99.0)  # an open PT1000
    assert (sample.value, sample.quality, sample.reason) == (850.0, Quality.BAD, "out_of_range")


def test_writes_take_the_type_the_node_declares_or_are_refused_before_the_wire() -> None:
    assert to_variant(55.5, ua.VariantType.Float) == ua.Variant(55.5, ua.VariantType.Float)
    assert to_variant(1.0, ua.VariantType.UInt16) == ua.Variant(1, ua.VariantType.UInt16)
    assert to_variant(1, ua.VariantType.Boolean) == ua.Variant(True, ua.VariantType.Boolean)
    with pytest.raises(Unrepresentable, match="not a whole number"):
        to_variant(2.5, ua.VariantType.UInt16)
    with pytest.raises(Unrepresentable, match="outside 0..65535"):
        to_variant(70000, ua.VariantType.UInt16)
    with pytest.raises(Unrepresentable, match="neither 0 nor 1"):
        to_variant(2, ua.VariantType.Boolean)


def test_nodes_name_their_namespace_by_uri_never_by_index() -> None:
    device = device_config("opc.tcp://127.0.0.1:4840", {"a": {"node": "ns=plc;s=A"}})
    assert device.node_ref("ns=plc;s=A").namespace_uri == "urn:heatgw:sim:station-plc"
    assert device.node_ref("nsu=urn:other;i=5").namespace_uri == "urn:other"
    assert device.node_ref(f"ns=plc;g={uuid.UUID(int=1)}").identifier == uuid.UUID(int=1)
    assert device.node_ref("i=2258").namespace_uri is None  # namespace 0 is fixed by the standard
    with pytest.raises(ValueError, match="numeric indexes are not accepted"):
        device.node_ref("ns=2;s=A")


def test_an_undeclared_namespace_is_reported_at_the_tag_s_node_field() -> None:
    device = device_config("opc.tcp://127.0.0.1:4840", {
        "good": {"node": "ns=plc;s=A"}, "indexed": {"node": "ns=3;s=B"},
        "path": {"browse_path": "plc:Station/other:Pump"}})
    found = dict(problems({"plc": device}))
    assert set(found) == {("devices", "plc", "tags", "indexed", "node"), ("devices", "plc", "tags", "path", "browse_path")}
    assert "unknown namespace 'other'" in found[("devices", "plc", "tags", "path", "browse_path")]


def test_a_station_file_with_an_opcua_device_is_checked_like_any_other(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gateway.config import load_gateway_config

    path = tmp_path / "station.yaml"
    path.write_text("""station: {id: s1, name: S}
groups: {fast: {interval_s: 1}}
devices:
  plc:
    protocol: opcua
    endpoint: opc.tcp://127.0.0.1:4840
    namespaces: {plc: "urn:x"}
    security: {mode: SignAndEncrypt}
    tags:
      t: {node: "ns=plc;s=A", group: fast}
""")
    with pytest.raises(ConfigError) as error:
        load_gateway_config(path)
    assert "trust_dir is required" in str(error.value)


def test_one_node_written_by_two_tags_is_refused_at_the_second_whatever_its_namespace_spelling() -> None:
    limits = {"min": 30, "max": 90}
    device = device_config("opc.tcp://127.0.0.1:4840", {
        "setpoint": {"node": "ns=plc;s=SecondarySide.SupplySetpoint", "writable": limits},
        "again": {"node": "nsu=urn:heatgw:sim:station-plc;s=SecondarySide.SupplySetpoint",
                  "writable": {"min": 0, "max": 120}},
        "read_only_copy": {"node": "ns=plc;s=SecondarySide.SupplySetpoint"}})
    assert problems({"plc": device}) == [(("devices", "plc", "tags", "again", "node"),
                                         "this node is already written by tag 'setpoint', within its own limits: "
                                         "one writable tag per node")]
