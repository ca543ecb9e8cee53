"""The facts every consumer of a tag's samples needs (staleness, deadband, published digits): one
map per configuration, shared by all of them, with one value object per distinct combination."""

from __future__ import annotations

import gc
from pathlib import Path

from gateway import config as config_module

from gateway.latest import LatestValues
from gateway.mqtt.batcher import report_filter
from gateway.mqtt.payloads import TelemetryEncoder
from gateway.mqtt.settings import MqttSettings
from gateway.tag_traits import TagTraits
from tests.gateway.test_templates import HEAD, TEMPLATED, TEMPLATES, load

MANY = HEAD + TEMPLATES + "devices:\n" + "".join(
    f"  s{index:03d}: {{template: substation, host: 10.0.0.{index}}}\n" for index in range(1, 41))


def test_each_tag_gets_its_staleness_deadband_and_digits_from_its_device_group_and_definition(tmp_path: Path) -> None:
    traits = load(tmp_path, TEMPLATED).tag_traits()
    # s001: fast group (1 s), timeout 2 s and the default retries; s002: its own 5 s timeout.
    assert traits["s001_supply_temp"] == TagTraits(max_silence_s=2 * 1 + 2 * 2, deadband=0.0, digits=1)
    assert traits["s002_supply_temp"].max_silence_s == 2 * 1 + 5 * 2
    assert traits["s001_energy"].digits == 0  # uint32, not scaled
    assert traits["s002_energy"].digits == -7  # its own float32


def test_a_station_keeps_one_map_of_traits_whatever_reads_it(tmp_path: Path) -> None:
    config = load(tmp_path, MANY)
    traits = config.tag_traits()
    assert len(traits) == 80
    assert len({id(value) for value in traits.values()}) == 2  # forty devices, two tag definitions
    assert config.tag_traits() is traits
    settings = MqttSettings(host="127.0.0.1")
    for consumer in (LatestValues(config), report_filter(config, settings), TelemetryEncoder.for_config(config)):
        assert consumer._traits is traits


def test_a_copy_with_other_devices_has_its_own_traits_and_a_gone_configuration_leaves_none(tmp_path: Path) -> None:
    config = load(tmp_path, MANY)
    fewer = config.model_copy(update={"devices": dict(list(config.devices.items())[:3])})
    assert len(fewer.tag_traits()) == 6
    assert len(config.tag_traits()) == 80
    key = id(fewer)
    entry = config_module._TRAITS[key]
    del fewer
    gc.collect()
    assert entry[0]() is None, "the configuration is still alive"
    assert config_module._TRAITS.get(key) is not entry, "a gone configuration's traits are still kept"
