"""From the MQTT contract's payloads to InfluxDB line protocol: pure functions, no I/O.

The schema, and why:

* One measurement per kind: ``telemetry``, ``control``, ``alarm``, ``event``. Queries for one kind
  never scan another, and the kinds have different fields.
* Tags identify a series and nothing else: ``site``, ``station``, ``device``, ``tag`` and ``unit``
  for telemetry. Cardinality is bounded by configuration, never by data: device and unit are one
  per tag (from the station's retained ``meta``), so they add no series, and values are never tags.
* Fields: ``value`` is always a float (booleans 0/1) because InfluxDB refuses a series whose field
  type changes; ``quality`` is an integer code (0 good, 1 bad, 2 stale) because databases that keep
  only numbers (VictoriaMetrics) would turn a string into 0. A ``null`` value writes ``quality`` alone.
* The timestamp is the sample's own, ``t0 + dt_ms`` in milliseconds, never the arrival time, so a
  sample replayed after an outage lands on exactly the same series and time: writes are idempotent.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """What a topic carries; the value is the measurement name."""

    TELEMETRY = "telemetry"
    CONTROL = "control"
    ALARM = "alarm"
    EVENT = "event"
    META = "meta"


QUALITY_CODES = {"g": 0, "b": 1, "s": 2}
"""Contract quality letters -> the numeric field (good, bad, stale)."""

STATE_CODES = {
    "cleared": 0, "inactive": 0, "normal": 0, "ended": 0, "ok": 0,
    "active": 1, "raised": 1, "started": 1,
    "acknowledged": 2, "acked": 2,
    "escalated": 1,  # a station event still open, past a deadline (``escalation_h`` says which)
    "returned": 3, "shelved": 4, "suppressed": 5, "out_of_service": 6,  # the gateway's other alarm states
}
"""Alarm and event ``state`` words -> a number, so the state survives a numbers-only database."""

UNKNOWN_STATE = -1

_LABEL = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
"""What a string payload value must look like to become a tag (``severity``, ``kind``): short
enumerations only, so free text can never blow up the series count."""

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")
"""An alarm or event id in the ``events`` stream (the gateway's are ``[a-z][a-z0-9_]``, up to 72)."""

_TAG_STRINGS = ("severity", "kind", "priority", "rule")


class PayloadError(ValueError):
    """A message that does not follow the contract; retrying will not change it."""


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic: which kind, which station, and the alarm or event id where there is one."""

    kind: Kind
    station: str
    item: str = ""


def parse_topic(prefix: str, topic: str) -> Topic | None:
    """``heatgw/st1/alarms/overtemp`` -> Topic(ALARM, "st1", "overtemp"); None if not ours."""
    if not topic.startswith(prefix + "/"):
        return None
    parts = topic[len(prefix) + 1:].split("/")
    if len(parts) == 2:
        # ``events`` is the stream of alarm transitions and event updates; the payload's ``kind``
        # and ``id`` say which (``LineEncoder.state``).
        kind = {"telemetry": Kind.TELEMETRY, "control": Kind.CONTROL, "meta": Kind.META,
                "events": Kind.EVENT}.get(parts[1])
        return Topic(kind, parts[0]) if kind is not None and parts[0] else None
    if len(parts) == 3 and parts[0] and parts[2]:
        kind = {"alarms": Kind.ALARM, "events": Kind.EVENT}.get(parts[1])
        return Topic(kind, parts[0], parts[2]) if kind is not None else None
    return None


@dataclass(frozen=True, slots=True)
class TagInfo:
    """What ``meta`` says about one tag."""

    device: str = ""
    unit: str = ""


@dataclass(frozen=True, slots=True)
class StationMeta:
    """A station's retained ``meta``: its site (if it says) and each tag's device and unit."""

    config_hash: str = ""
    site: str = ""
    tags: Mapping[str, TagInfo] = field(default_factory=dict)


def parse_meta(payload: bytes) -> StationMeta:
    """Decode a ``meta`` payload; raise PayloadError if it is not the contract's shape."""
    data = _json_object(payload)
    tags = data.get("tags")
    if not isinstance(tags, dict):
        raise PayloadError("meta without a tags object")
    info = {}
    for name, entry in tags.items():
        entry = entry if isinstance(entry, dict) else {}
        info[str(name)] = TagInfo(device=_text(entry.get("device")), unit=_text(entry.get("unit")))
    return StationMeta(config_hash=_text(data.get("config_hash")), site=_text(data.get("site")), tags=info)


@dataclass(slots=True)
class Encoded:
    """One message turned into lines: what goes into the batch, and what the bridge accounts for."""

    lines: list[str]
    values: int
    seq: int | None = None
    skipped: int = 0
    """Samples that could not be written (unknown quality letter, malformed entry)."""
    unknown_strings: list[str] = field(default_factory=list)
    """Payload keys whose string values were dropped (only numbers and short labels are kept)."""


class LineEncoder:
    """Turns contract payloads into line protocol, caching each series' escaped key.

    The series key (measurement and tags) is the expensive part of a line and is the same for
    every sample of a tag, so it is built once per (station, tag) and reused until the station's
    meta changes. That cache is the only state; output depends on inputs alone.
    """

    def __init__(self, default_site: str, write_reason: bool = False) -> None:
        self._default_site = default_site
        self._write_reason = write_reason
        self._keys: dict[tuple[str, str], str] = {}

    def forget(self, station: str) -> None:
        """Drop cached series keys of ``station`` (its meta changed)."""
        for key in [key for key in self._keys if key[0] == station]:
            del self._keys[key]

    def telemetry(self, station: str, meta: StationMeta | None, payload: bytes) -> Encoded:
        """``{"seq", "t0", "s": [[tag, value, dt_ms, quality(, reason)], ...]}`` -> lines."""
        data = _json_object(payload)
        seq, t0, samples = data.get("seq"), data.get("t0"), data.get("s")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise PayloadError("telemetry without a non-negative integer seq")
        base_ms = _epoch_ms(t0, "t0")
        if not isinstance(samples, list):
            raise PayloadError("telemetry without a sample list s")
        lines: list[str] = []
        skipped = 0
        keys = self._keys
        for sample in samples:
            try:
                tag, value, dt_ms, quality = sample[0], sample[1], sample[2], sample[3]
                code = QUALITY_CODES[quality]
                timestamp = base_ms + int(dt_ms)
                key = keys.get((station, tag))
                if key is None:
                    key = self._telemetry_key(station, meta, tag)
                    keys[(station, tag)] = key
            except (KeyError, IndexError, TypeError, ValueError):
                skipped += 1
                continue
            if value is None:
                fields = f"quality={code}i"
            elif value is True or value is False:
                fields = f"value={1.0 if value else 0.0},quality={code}i"
            elif isinstance(value, int | float):
                # NaN and infinities have no line-protocol spelling: the quality alone is kept.
                fields = f"value={float(value)!r},quality={code}i" if math.isfinite(value) else f"quality={code}i"
            else:
                skipped += 1
                continue
            if self._write_reason and len(sample) > 4 and isinstance(sample[4], str):
                fields += f',reason="{_escape_string(sample[4])}"'
            lines.append(f"{key}{fields} {timestamp}")
        return Encoded(lines=lines, values=len(lines), seq=seq, skipped=skipped)

    def state(self, topic: Topic, meta: StationMeta | None, payload: bytes) -> Encoded:
        """Controller state, alarms and events: a JSON object with its own ``ts``.

        Numbers and booleans (also inside nested objects, names joined with ``_``) become fields;
        ``state`` words become a numeric ``state`` field; ``severity``/``kind`` labels become tags.
        Other strings are dropped: free text as a tag would be unbounded, and as a field a
        numbers-only database would store it as 0.
        """
        data = _json_object(payload)
        timestamp = _epoch_ms(data.get("ts"), "ts")
        tags = {"site": self._site(meta), "station": topic.station}
        measurement = topic.kind.value
        if topic.kind in (Kind.ALARM, Kind.EVENT):
            item = topic.item
            if not item:  # the ``events`` stream: alarm or event, and which one, by the payload
                measurement = Kind.ALARM.value if data.get("kind") == "alarm" else Kind.EVENT.value
                item = data.get("id") if isinstance(data.get("id"), str) else ""
                if not _ID.match(item):
                    raise PayloadError(f"{measurement} message without a valid id")
            tags[measurement] = item
        fields: dict[str, str] = {}
        dropped: list[str] = []
        for name, value in data.items():
            if name in ("ts", "seq", "id"):
                continue
            if name == "state" and isinstance(value, str):
                fields["state"] = f"{STATE_CODES.get(value.lower(), UNKNOWN_STATE)}i"
                if value.lower() not in STATE_CODES:
                    dropped.append(f"state={value}")
            elif name in _TAG_STRINGS and isinstance(value, str):
                if _LABEL.match(value):
                    tags[name] = value
                else:
                    dropped.append(name)
            else:
                _flatten(name, value, fields, dropped)
        if not fields:
            raise PayloadError(f"{topic.kind.value} message with no numeric field")
        key = _escape_measurement(measurement) + "".join(
            f",{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(tags.items()) if v)
        line = key + " " + ",".join(f"{escape_tag(k)}={v}" for k, v in fields.items()) + f" {timestamp}"
        return Encoded(lines=[line], values=len(fields), unknown_strings=dropped)

    def _site(self, meta: StationMeta | None) -> str:
        return meta.site if meta is not None and meta.site else self._default_site

    def _telemetry_key(self, station: str, meta: StationMeta | None, tag: object) -> str:
        """``telemetry,device=plc,site=north,station=st1,tag=outdoor_temp,unit=degC `` (tags sorted)."""
        if not isinstance(tag, str) or not tag:
            raise ValueError("tag name must be a non-empty string")
        info = meta.tags.get(tag) if meta is not None else None
        tags = {"site": self._site(meta), "station": station, "tag": tag}
        if info is not None:
            tags["device"] = info.device
            tags["unit"] = info.unit
        return "telemetry" + "".join(f",{k}={escape_tag(v)}" for k, v in sorted(tags.items()) if v) + " "


def _flatten(name: str, value: Any, fields: dict[str, str], dropped: list[str]) -> None:
    if isinstance(value, bool):
        fields[name] = "1.0" if value else "0.0"
    elif isinstance(value, int | float):
        if math.isfinite(value):
            fields[name] = repr(float(value))
    elif isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{name}_{key}", inner, fields, dropped)
    elif value is not None:
        dropped.append(name)


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError("payload is not a JSON object")
    return data


def _epoch_ms(value: object, name: str) -> int:
    """POSIX seconds (float, ms resolution) -> integer ms; rounding, because 0.777 is not exact in binary."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise PayloadError(f"{name} must be POSIX seconds")
    return round(value * 1000)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": " ", "\\": "\\\\"})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\n": " ", "\\": "\\\\"})


def escape_tag(text: str) -> str:
    """Escape a tag key or value (also a field key) for line protocol."""
    return text.translate(_TAG_ESCAPES)


def _escape_measurement(text: str) -> str:
    return text.translate(_MEASUREMENT_ESCAPES)


def _escape_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
