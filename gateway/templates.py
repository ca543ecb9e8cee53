"""Device templates: a station file's ``templates:`` declare a kind of device once, and each device
of that kind says ``template: NAME`` with only what is its own (host, port, unit id, overrides).

A dispatch-side concentrator polls hundreds of identical substation PLCs; written out, its file
repeats the same hundred tag definitions per PLC (2.3 MB for a thousand of them, past the 1 MB a
configuration file may have), and every copy becomes its own validated model in memory. With a
template the tags are written once, validated once, and the *same* tag objects are shared by every
device built from it: a thousand devices cost a thousand name tables, not a hundred thousand tag
models.

The rules, decided here:

* A device with ``template: T`` gets T's settings (``protocol``, timeouts, word order...) and tags;
  any setting the device gives itself wins over T's (an override), and its own ``tags:`` add to
  T's or replace one of T's by name (the whole definition, not field by field).
* Every tag of such a device is published as ``<device>_<tag>`` (``s001_supply_temp``): tag names
  are unique in a station, and the device name is what tells two substations apart.
* A device cannot change T's ``protocol`` (its tags are that protocol's), nor name a template that
  does not exist; a template is checked once, and its problems are reported at its own lines.

Expansion happens inside the validation of the station file (``gateway.config``), so everything
that reads a station file (``heatgw check``, ``run``, a reload) sees the same expanded devices.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import TypeAdapter

from gateway.acquisition.models import DeviceConfigBase, TagBase
from gateway.protocols import DRIVERS
from gateway.validation import validate_part
from gateway.yaml_source import ConfigError, Path_, YamlDocument

TEMPLATE_KEY = "template"
NAME_LENGTH = 63
"""The longest tag name (``gateway.config_base.Name``)."""


@dataclass
class _Template:
    """One template as the file gives it, with its tags validated once."""

    name: str
    raw: dict[str, Any]
    tags: dict[str, TagBase] = field(default_factory=dict)


def expand_templates(document: YamlDocument) -> tuple[YamlDocument, list[str]]:
    """The document with ``templates:`` gone and every templated device written out (its tags the
    template's shared, validated objects), and the problems found on the way. A device whose
    template is unknown or broken is left out: its problem is reported, and its tags would only
    repeat it."""
    data = document.data
    if not isinstance(data, dict) or ("templates" not in data and not _uses_templates(data)):
        return document, []
    problems: list[str] = []
    templates = _templates(document, data.get("templates"), problems)
    devices: dict[Any, Any] = {}
    users: dict[str, str] = {}  # device -> its template
    raw_devices = data.get("devices")
    for name, device in (raw_devices.items() if isinstance(raw_devices, dict) else ()):
        if not isinstance(device, dict) or TEMPLATE_KEY not in device:
            devices[name] = device
            continue
        expanded = _expand(document, str(name), device, templates, problems)
        if expanded is not None:
            devices[name] = expanded
            users[str(name)] = device[TEMPLATE_KEY]
    expanded_data = {key: value for key, value in data.items() if key != "templates"}
    if isinstance(raw_devices, dict):
        expanded_data["devices"] = devices
    origin = _Origins(data.get("devices") if isinstance(raw_devices, dict) else {}, templates, users)
    return replace(document, data=expanded_data, origin=origin), problems


def _uses_templates(data: dict[Any, Any]) -> bool:
    devices = data.get("devices")
    return isinstance(devices, dict) and any(isinstance(d, dict) and TEMPLATE_KEY in d for d in devices.values())


def _templates(document: YamlDocument, raw: Any, problems: list[str]) -> dict[str, _Template]:
    """The templates whose protocol is known and whose tags are valid."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(document.error(("templates",), "expected a mapping of template names to device settings"))
        return {}
    found: dict[str, _Template] = {}
    for name, template in raw.items():
        where: Path_ = ("templates", name)
        if not isinstance(template, dict):
            problems.append(document.error(where, "expected device settings (protocol, tags...)"))
            continue
        model = _model(template.get("protocol"))
        if model is None:
            known = ", ".join(sorted(key for driver in DRIVERS for key in driver.protocols()))
            problems.append(document.error((*where, "protocol"), f"unknown or missing protocol {template.get('protocol')!r} "
                                                                 f"(known: {known})"))
            continue
        if TEMPLATE_KEY in template:
            problems.append(document.error((*where, TEMPLATE_KEY), "a template cannot use another template"))
            continue
        try:
            tags = validate_part(document, (*where, "tags"), template.get("tags", {}), _tags_adapter(model))
        except ConfigError as exc:
            problems += exc.messages
            continue
        found[str(name)] = _Template(str(name), template, tags)
    return found


def _model(protocol: Any) -> type[DeviceConfigBase] | None:
    for driver in DRIVERS:
        for model in driver.models:
            if protocol in typing.get_args(model.model_fields["protocol"].annotation):
                return model
    return None


_ADAPTERS: dict[type[DeviceConfigBase], TypeAdapter[Any]] = {}


def _tags_adapter(model: type[DeviceConfigBase]) -> TypeAdapter[dict[str, TagBase]]:
    """A validator of the ``tags`` of ``model`` (built once per protocol: building one costs ms)."""
    if model not in _ADAPTERS:
        _ADAPTERS[model] = TypeAdapter(model.model_fields["tags"].annotation)
    return _ADAPTERS[model]


def _expand(document: YamlDocument, name: str, device: dict[str, Any], templates: Mapping[str, _Template],
            problems: list[str]) -> dict[str, Any] | None:
    """The device's settings over its template's, every tag named ``<device>_<tag>``; None with a
    problem when the template is unknown or the device changes its protocol."""
    where: Path_ = ("devices", name)
    wanted = device[TEMPLATE_KEY]
    template = templates.get(wanted) if isinstance(wanted, str) else None
    if template is None:
        written = document.data.get("templates")
        written = written if isinstance(written, dict) else {}
        if isinstance(wanted, str) and wanted in written:
            return None  # a broken template: its own problems are reported at its lines
        defined = ", ".join(sorted(map(str, written))) or "none: add a templates: section"
        problems.append(document.error((*where, TEMPLATE_KEY), f"unknown template {wanted!r} (defined: {defined})"))
        return None
    protocol = template.raw["protocol"]
    if device.get("protocol", protocol) != protocol:
        problems.append(document.error((*where, "protocol"), f"{device['protocol']!r} conflicts with template "
                                       f"{template.name!r}, whose tags are {protocol!r} tags: leave protocol out "
                                       "or use another template"))
        return None
    longest = max(map(len, map(str, [*template.tags, *(device.get("tags") or {})])), default=0)
    if len(name) + 1 + longest > NAME_LENGTH:
        problems.append(document.error(where, f"its tags are published as {name}_<tag>, longer than the "
                                       f"{NAME_LENGTH} characters a tag name may have: shorten the device's name"))
        return None
    own_tags = device.get("tags", {})
    if not isinstance(own_tags, dict):
        own_tags = {}  # the device's validation reports it
    tags: dict[str, Any] = {f"{name}_{tag}": cfg for tag, cfg in template.tags.items() if tag not in own_tags}
    tags.update((f"{name}_{tag}", cfg) for tag, cfg in own_tags.items())
    settings = {key: value for key, value in template.raw.items() if key != "tags"}
    settings.update((key, value) for key, value in device.items() if key not in (TEMPLATE_KEY, "tags"))
    settings["tags"] = tags
    return settings


class _Origins:
    """Maps a path of the expanded data back to where it is written: a templated device's tag to
    the device's own ``tags:`` entry or to its template's, a setting the device does not give
    itself to its template's."""

    def __init__(self, devices: Any, templates: Mapping[str, _Template], users: Mapping[str, str]) -> None:
        self._devices = devices if isinstance(devices, dict) else {}
        self._templates = templates
        self._users = users

    def __call__(self, path: Path_) -> Path_:
        if len(path) < 3 or path[0] != "devices" or path[1] not in self._users:
            return path
        device, template = str(path[1]), self._templates[self._users[str(path[1])]]
        raw = self._devices[device]
        if path[2] == "tags" and len(path) >= 4 and isinstance(path[3], str) and path[3].startswith(device + "_"):
            tag = path[3][len(device) + 1:]
            own = raw.get("tags")
            if isinstance(own, dict) and tag in own:
                return ("devices", device, "tags", tag, *path[4:])
            if tag in template.tags:
                return ("templates", template.name, "tags", tag, *path[4:])
        elif path[2] not in raw and path[2] in template.raw:
            return ("templates", template.name, *path[2:])
        return path
