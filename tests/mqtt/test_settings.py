"""The mqtt section: validation, documentation, and the default cap's sizing claim."""

from __future__ import annotations

import functools
import random
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.mqtt.outbox import Outbox
from gateway.mqtt.payloads import TelemetryEncoder
from gateway.tag_traits import TagTraits
from gateway.mqtt.settings import MqttSettings, OutboxSettings, ReconnectBackoff, TlsSettings
from gateway.samples import Sample

ROOT = Path(__file__).resolve().parents[2]


def test_every_mqtt_key_is_in_the_configuration_reference() -> None:
    station_page = (ROOT / "docs" / "commissioning" / "station.md").read_text()
    reference = station_page.split("## `mqtt`", 1)[1].split("\n## ", 1)[0]
    for model in (MqttSettings, TlsSettings, OutboxSettings, ReconnectBackoff):
        for field in model.model_fields:
            assert f"{field}" in reference, f"{model.__name__}.{field} is not documented"
    assert f"max_bytes: {OutboxSettings().max_bytes}" in reference, "documented default cap is stale"


@pytest.mark.parametrize("section, message", [
    ({"host": "b", "password_file": "/etc/heatgw/mqtt.pw"}, "password_file needs a username"),
    ({"host": "b", "password": "inline"}, "Extra inputs are not permitted"),
    ({"host": "b", "tls": {"ca_file": "/ca.pem", "cert_file": "/c.pem"}}, "cert_file and key_file go together"),
    ({"host": "b", "topic_prefix": "heatgw/#"}, "String should match pattern"),
    ({"host": "b", "topic_prefix": "heatgw//x"}, "String should match pattern"),
    ({"host": "b", "reconnect": {"initial_s": 10, "max_s": 5}}, "max_s must be at least initial_s"),
    ({"host": "b", "outbox": {"durability": "sometimes"}}, "Input should be 'full' or 'normal'"),
])
def test_invalid_sections_are_refused(section: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        MqttSettings.model_validate(section)


def encode(encoder: TelemetryEncoder, samples: list[Sample], seq: int) -> bytes:
    return encoder.encode(seq, samples)


def test_the_default_cap_holds_72_hours_of_500_tags_changing_every_second(tmp_path: Path) -> None:
    """The documented sizing claim (docs, "Store and forward"), measured on a realistic station: 500 tags with long names, every
    value moving every second (report by exception passes everything), one message per second."""
    rng = random.Random(7)
    kinds = [("supply_temp", 1), ("return_temp", 1), ("supply_pressure", 3), ("return_pressure", 3),
             ("flow", 1), ("valve_position", 1), ("pump_frequency", 1), ("energy_kwh", 0), ("power_kw", 1),
             ("room_temp", 1)]
    tags = [(f"building_{i // 10:02d}_{kinds[i % 10][0]}", kinds[i % 10][1]) for i in range(500)]
    encoder = TelemetryEncoder({tag: TagTraits(digits=digits) for tag, digits in tags})
    values = {tag: rng.uniform(0, 100) for tag, _ in tags}
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxSettings())
    seconds = 200
    for second in range(seconds):
        samples = []
        for tag, _ in tags:
            values[tag] += rng.gauss(0, 0.5)
            samples.append(Sample(tag, values[tag], 1_795_456_034.0 + second + rng.random() * 0.3))
        outbox.append(functools.partial(encode, encoder, samples), len(samples))
    per_value = outbox.stats().used_bytes / (seconds * len(tags))
    outage_values = 72 * 3600 * 500
    assert per_value < 40, "the issue's target"
    assert outage_values * per_value < OutboxSettings().max_bytes, (
        f"{per_value:.1f} bytes/value: a 72 h outage needs {outage_values * per_value / 2**30:.2f} GiB")
