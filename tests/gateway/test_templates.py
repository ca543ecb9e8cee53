"""Device templates (``templates:`` and ``template: NAME``): a kind of device declared once, its
devices written as what is their own, expanded into the devices the station would have if each
were written out, and sharing one validated definition of every template tag."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import GatewayConfig, load_gateway_config
from gateway.yaml_source import ConfigError

HEAD = """\
station: {id: s1, name: Station 1}
groups:
  fast: {interval_s: 1}
"""
TEMPLATES = """\
templates:
  substation:
    protocol: modbus_tcp
    timeout_s: 2
    word_order: little
    tags:
      supply_temp: {function: input, address: 0, type: int16, scale: 0.1, unit: "°C", group: fast}
      energy: {function: input, address: 2, type: uint32, group: fast}
"""
TEMPLATED = HEAD + TEMPLATES + """\
devices:
  s001:
    template: substation
    host: 10.0.0.1
  s002:
    template: substation
    host: 10.0.0.2
    unit_id: 7
    timeout_s: 5
    tags:
      energy: {function: input, address: 10, type: float32, group: fast}
      pump_hours: {function: holding, address: 20, type: uint32, group: fast}
"""
WRITTEN_OUT = HEAD + """\
devices:
  s001:
    protocol: modbus_tcp
    host: 10.0.0.1
    timeout_s: 2
    word_order: little
    tags:
      s001_supply_temp: {function: input, address: 0, type: int16, scale: 0.1, unit: "°C", group: fast}
      s001_energy: {function: input, address: 2, type: uint32, group: fast}
  s002:
    protocol: modbus_tcp
    host: 10.0.0.2
    unit_id: 7
    timeout_s: 5
    word_order: little
    tags:
      s002_supply_temp: {function: input, address: 0, type: int16, scale: 0.1, unit: "°C", group: fast}
      s002_energy: {function: input, address: 10, type: float32, group: fast}
      s002_pump_hours: {function: holding, address: 20, type: uint32, group: fast}
"""


def load(tmp_path: Path, text: str, name: str = "station.yaml") -> GatewayConfig:
    path = tmp_path / name
    path.write_text(text)
    return load_gateway_config(path)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, text)
    return [message.removeprefix(f"{tmp_path / 'station.yaml'}:") for message in refused.value.messages]


def test_a_templated_station_is_the_station_written_out_device_by_device(tmp_path: Path) -> None:
    templated, written = load(tmp_path, TEMPLATED), load(tmp_path, WRITTEN_OUT, "written.yaml")
    assert templated.devices == written.devices
    assert list(templated.devices["s002"].tags) == list(written.devices["s002"].tags)


def test_a_template_tag_is_one_shared_definition_in_every_device_using_it(tmp_path: Path) -> None:
    config = load(tmp_path, TEMPLATED)
    assert config.devices["s001"].tags["s001_supply_temp"] is config.devices["s002"].tags["s002_supply_temp"]
    assert config.devices["s001"].tags["s001_energy"] is not config.devices["s002"].tags["s002_energy"]


def test_a_device_of_a_broken_template_is_not_reported_twice_and_the_template_is_reported_once(tmp_path: Path) -> None:
    text = TEMPLATED.replace("energy: {function: input, address: 2,", "energy: {function: input, adress: 2,")
    found = problems(tmp_path, text)
    assert found == ["11:7: templates.substation.tags.energy.address: required field is missing",
                     "11:33: templates.substation.tags.energy.adress: unknown field (check the spelling; see the "
                     "configuration reference in docs/commissioning/)"]


def test_a_template_setting_refused_is_reported_once_at_the_template(tmp_path: Path) -> None:
    found = problems(tmp_path, TEMPLATED.replace("word_order: little", "word_order: middle"))
    assert len(found) == 1 and found[0].startswith("8:5: templates.substation.word_order: ")


def test_an_unknown_template_is_named_with_the_templates_defined(tmp_path: Path) -> None:
    found = problems(tmp_path, TEMPLATED.replace("template: substation\n    host: 10.0.0.1",
                                                 "template: substaton\n    host: 10.0.0.1"))
    assert found == ["14:5: devices.s001.template: unknown template 'substaton' (defined: substation)"]


def test_a_device_cannot_change_its_templates_protocol(tmp_path: Path) -> None:
    found = problems(tmp_path, TEMPLATED.replace("    host: 10.0.0.1\n",
                                                 "    protocol: opcua\n    host: 10.0.0.1\n"))
    assert found == ["15:5: devices.s001.protocol: 'opcua' conflicts with template 'substation', whose tags are "
                     "'modbus_tcp' tags: leave protocol out or use another template"]


def test_a_device_override_that_is_wrong_is_reported_at_the_device(tmp_path: Path) -> None:
    found = problems(tmp_path, TEMPLATED.replace("timeout_s: 5", "timeout_s: 0"))
    assert len(found) == 1 and found[0].startswith("20:5: devices.s002.timeout_s: ")


def test_an_own_tag_of_a_templated_device_is_reported_at_its_own_line(tmp_path: Path) -> None:
    found = problems(tmp_path, TEMPLATED.replace("pump_hours: {function: holding, address: 20,",
                                                 "pump_hours: {function: holding, address: -1,"))
    assert len(found) == 1 and found[0].startswith("23:39: devices.s002.tags.pump_hours.address: ")


def test_a_device_name_too_long_for_its_published_tag_names_is_refused(tmp_path: Path) -> None:
    long_name = "s" + "0" * 55
    found = problems(tmp_path, TEMPLATED.replace("  s001:", f"  {long_name}:"))
    assert found == [f"13:3: devices.{long_name}: its tags are published as {long_name}_<tag>, longer than the 63 "
                     "characters a tag name may have: shorten the device's name"]


def test_a_templated_tag_name_taken_by_another_device_is_refused_at_the_other_device(tmp_path: Path) -> None:
    text = TEMPLATED + """\
  plc:
    protocol: modbus_tcp
    host: 10.0.0.9
    tags:
      s001_energy: {function: input, address: 0, group: fast}
"""
    found = problems(tmp_path, text)
    assert found == ["28:7: devices.plc.tags.s001_energy: tag name already used on device 's001'; tag names must "
                     "be unique"]


def test_equal_tag_definitions_written_out_on_two_devices_are_one_object_too(tmp_path: Path) -> None:
    config = load(tmp_path, WRITTEN_OUT)
    assert config.devices["s001"].tags["s001_supply_temp"] is config.devices["s002"].tags["s002_supply_temp"]
    assert config.devices["s001"].tags["s001_energy"] != config.devices["s002"].tags["s002_energy"]
