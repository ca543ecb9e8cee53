"""The station configuration: typed, validated models of ``station.yaml``.

Everything the gateway does at a station is driven by this file, so it is strict: unknown keys are
errors (a misspelt ``writeable:`` must not silently make a tag read-only), values are range-checked,
and cross-references (groups, tag names) are checked before anything runs. The field names are the
configuration reference in docs/commissioning/station.md.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, StringConstraints, field_validator

from gateway.acquisition.models import PollGroup, TagBase
from gateway.alarms.settings import AlarmSettings, EventSettings
from gateway.config_base import MetricsSettings, Name, Strict
from gateway.control.settings import ControllerSettings
from gateway.mqtt.settings import MqttSettings
from gateway.protocols import DeviceConfig, device_problems
from gateway.report.settings import ReportSettings
from gateway.tag_traits import TagTraits
from gateway.templates import expand_templates
from gateway.validation import validate_document
from gateway.yaml_source import ConfigError, Path_, YamlDocument, load_yaml


_TRAITS: dict[int, tuple[weakref.ref[GatewayConfig], dict[str, TagTraits]]] = {}
"""``GatewayConfig.tag_traits`` of each live configuration, by identity: a pydantic model's own
private attributes would be carried over by ``model_copy`` to a configuration with other tags."""


class StationInfo(Strict):
    """Who this station is; ``id`` is used in MQTT topics and historian tags."""

    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    name: str
    site: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] = "default"
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone, use an IANA name such as Asia/Shanghai") from None
        return value


class GatewayConfig(Strict):
    """The whole station configuration file."""

    station: StationInfo
    groups: dict[Name, PollGroup] = Field(default_factory=lambda: {"default": PollGroup(interval_s=1.0)})
    devices: dict[Name, DeviceConfig] = Field(min_length=1)
    mqtt: MqttSettings | None = None
    controller: ControllerSettings | None = None
    report: ReportSettings = ReportSettings()
    metrics: MetricsSettings | None = None
    alarms: AlarmSettings | None = None  # absent: only the controller's signals are alarms
    events: EventSettings | None = None  # absent: no station events

    def tags(self) -> dict[str, tuple[str, TagBase]]:
        """Every tag by name, with the device it belongs to."""
        return {tag: (device, cfg) for device, dev in self.devices.items() for tag, cfg in dev.tags.items()}

    def max_silence_s(self) -> dict[str, float]:
        """How long each tag's samples may normally pause: twice its poll interval plus its
        device's full timeout (``answer_budget_s``: Modbus's ``timeout_s`` x (1 + ``retries``)).
        Beyond that the value is stale, and its device is known lost if the device stopped answering."""
        return {tag: traits.max_silence_s for tag, traits in self.tag_traits().items()}

    def tag_traits(self) -> dict[str, TagTraits]:
        """Every tag's ``TagTraits`` (tags of an unknown group, which validation refuses, have none).

        Built once per configuration object and shared by every consumer that asks, so a station
        keeps one such map whatever reads it; the configuration is frozen, so it cannot go stale."""
        cached = _TRAITS.get(id(self))
        if cached is not None and cached[0]() is self:
            return cached[1]
        shared: dict[TagTraits, TagTraits] = {}  # one object per distinct combination
        digits: dict[int, int] = {}  # per tag definition: a template's tags share theirs
        traits: dict[str, TagTraits] = {}
        for device in self.devices.values():
            budget = device.answer_budget_s()
            for tag, cfg in device.tags.items():
                group = self.groups.get(cfg.group)
                if group is None:
                    continue
                if (places := digits.get(id(cfg))) is None:
                    places = digits[id(cfg)] = cfg.telemetry_digits()
                made = TagTraits(2 * group.interval_s + budget, cfg.deadband, places)
                traits[tag] = shared.setdefault(made, made)
        key = id(self)
        _TRAITS[key] = (weakref.ref(self, lambda _gone: _TRAITS.pop(key, None)), traits)
        return traits

    def problems(self) -> list[tuple[Path_, str]]:
        """Cross-reference checks that a single model cannot make on its own."""
        found: list[tuple[Path_, str]] = []
        owner: dict[str, str] = {}
        for device_name, device in self.devices.items():
            for tag_name, tag in device.tags.items():
                path: Path_ = ("devices", device_name, "tags", tag_name)
                if tag_name in owner:
                    found.append((path, f"tag name already used on device {owner[tag_name]!r}; tag names must be unique"))
                owner.setdefault(tag_name, device_name)
                if tag.group not in self.groups:
                    known = ", ".join(sorted(self.groups))
                    found.append(((*path, "group"), f"unknown group {tag.group!r} (defined: {known})"))
                found.extend(((*path, *where), problem) for where, problem in tag.problems())
        report_tags: list[tuple[Path_, str | None]] = [(("report", "energy_tag"), self.report.energy_tag)]
        report_tags += [(("report", "first_week_tags", index), tag) for index, tag in enumerate(self.report.first_week_tags)]
        for where, tag in report_tags:
            if tag is not None and tag not in owner:
                found.append((where, f"unknown tag {tag!r}"))
        tag_devices = {tag: device for tag, (device, _) in self.tags().items()}
        if self.alarms is not None:
            found.extend(self.alarms.problems(tag_devices, self.max_silence_s()))
        if self.events is not None:
            found.extend(self.events.problems(tag_devices))
        return found + device_problems(self.devices)


SIMULATED_STATION_KEYS = frozenset({"buildings", "circuits"})
"""Top-level keys of a simulated station's description (``sim.station_file``), never of a gateway's."""


def load_gateway_config(path: Path) -> GatewayConfig:
    """Load and fully check a station configuration, or raise ConfigError naming file:line:field."""
    document = load_yaml(path)
    return check_gateway_document(document)


def check_gateway_document(document: YamlDocument) -> GatewayConfig:
    """Validate an already parsed station configuration document, its device templates expanded
    first (``gateway.templates``). A problem of a template is reported once, at the template,
    not once per device built from it."""
    data = document.data
    if isinstance(data, dict) and "devices" not in data and SIMULATED_STATION_KEYS <= data.keys():
        # One clear line instead of a dozen "unknown field" ones: the file is of another kind.
        raise ConfigError([document.error(("buildings",), "this is a simulated station (buildings and circuits) "
                                          "for `heatgw sim run --station`; a gateway station file lists its devices")])
    document, problems = expand_templates(document)
    if problems and not document.data.get("devices"):
        raise ConfigError(problems)  # every device names a broken template: nothing more to check
    try:
        config = validate_document(document, GatewayConfig)
    except ConfigError as exc:
        raise ConfigError(list(dict.fromkeys(problems + exc.messages))) from None
    problems += [document.error(path, message) for path, message in config.problems()]
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    return config
