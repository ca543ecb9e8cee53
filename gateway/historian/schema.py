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

Hostile input (issue #16): one station's message must never stop the bridge for the others, so
everything a message can carry is checked here before a line is built, and every failure is a
``PayloadError`` (never an ``OverflowError``, ``RecursionError`` or ``UnicodeEncodeError``):

* **Parsing** (``load_json``): at most ``max_bytes``, strict UTF-8, nesting depth measured on the
  raw bytes *before* ``json.loads`` (so the parser never recurses past ``max_depth``), and every
  integer literal within int64 (the line protocol's integer; also what ``seq`` must fit).
* **Numbers**: times finite and inside the window ``[now - past_s, now + future_s]``, and never
  beyond what a nanosecond int64 can carry (2262-04-11); ``dt_ms`` finite; values finite (a
  non-finite sample value keeps its quality only, as before).
* **Strings** reaching the line protocol are escaped per part (``escape_tag``,
  ``_escape_measurement``, ``_escape_string``). A newline cannot be escaped in line protocol, so
  control characters (and lone surrogates, which have no UTF-8 form) are *refused* in identity
  strings (station, tag name, alarm/event id: the message or the sample is refused), *dropped* in
  descriptive tags and field names (meta's site/device/unit, payload keys), and *replaced by a
  space* in the free-text ``reason`` field. Identity strings are at most ``MAX_NAME_CHARS``.
* **Lines**: ``line_problem`` checks an encoded line against the line-protocol grammar; the
  encoder applies it to every state line and to every telemetry series key when it is built
  (telemetry fields and timestamps are correct by construction).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import accumulate
from typing import Any

from gateway.mqtt.payloads import (
    ALARMS_TOPIC,
    CONTROL_CODES,
    CONTROL_TOPIC,
    DEVICE_REASON,
    DEVICE_STATE,
    EVENTS_TOPIC,
    META_TOPIC,
    OTHER,
    QUALITY_CODES,
    STATION_REASON,
    STATION_STATE,
    STATUS_TOPIC,
    TAG_KINDS,
    TELEMETRY_TOPIC,
    CodeTable,
)


class Kind(StrEnum):
    """What a topic carries; the value is the measurement name."""

    TELEMETRY = "telemetry"
    CONTROL = "control"
    ALARM = "alarm"
    EVENT = "event"
    STATUS = "status"
    META = "meta"


STATE_CODES = {
    "cleared": 0, "inactive": 0, "normal": 0, "ended": 0, "ok": 0,
    "active": 1, "raised": 1, "started": 1,
    "acknowledged": 2, "acked": 2,
    "escalated": 1,  # a station event still open, past a deadline (``escalation_h`` says which)
    "returned": 3, "shelved": 4, "suppressed": 5, "out_of_service": 6,  # the gateway's other alarm states
    "removed": 7,  # an alarm's last message: the station file no longer declares it
}
"""Alarm and event ``state`` words -> a number, so the state survives a numbers-only database."""

UNKNOWN_STATE = -1

_LABEL = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
"""What a string payload value must look like to become a tag (``severity``, ``kind``): short
enumerations only, so free text can never blow up the series count."""

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")
"""An alarm or event id in the ``events`` stream (the gateway's are ``[a-z][a-z0-9_]``, up to 72)."""

_TAG_STRINGS = ("severity", "kind", "priority", "rule")

_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}$")
_CONFIG_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
"""A birth's version and configuration hash become ``status_info`` tags: one series per release
and configuration a station runs, so only these short, fixed shapes are taken."""


INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
MAX_TIMESTAMP_MS = INT64_MAX // 1_000_000
"""The last millisecond whose nanoseconds still fit an int64 (2262-04-11): InfluxDB's time limit."""
MAX_NAME_CHARS = 256
"""Station ids, tag names, alarm/event ids, meta strings and field names longer than this are refused:
InfluxDB refuses a series key over 64 KiB, and no configuration has names anywhere near this."""
MAX_LINE_CHARS = 65_536
"""Longer lines are refused: VictoriaMetrics refuses lines over 256 KiB (``-influx.maxLineSize``) with
a 400 for the whole batch, other stations' lines included; a contract payload needs far less."""
MAX_REASON_CHARS = 256
"""The ``reason`` string field is cut to this length (InfluxDB refuses string fields over 64 KiB)."""


class PayloadError(ValueError):
    """A message that does not follow the contract; retrying will not change it.

    ``seq`` is the telemetry sequence number when it could be read, for the log line.
    """

    def __init__(self, reason: str, seq: int | None = None) -> None:
        super().__init__(reason)
        self.seq = seq


@dataclass(frozen=True, slots=True)
class PayloadLimits:
    """What a message may be: size, nesting, and the time window around ``clock()``.

    ``past_s``/``future_s`` of None mean no window beyond what the line protocol can carry (pure
    tests encode 1970 timestamps); the bridge always sets both (``validation`` settings).
    """

    max_bytes: int = 16 * 2**20
    max_depth: int = 32
    past_s: float | None = None
    future_s: float | None = None
    clock: Callable[[], float] = time.time

    def window_ms(self) -> tuple[int, int]:
        """The accepted sample times now, in epoch milliseconds, both ends included."""
        low, high = 0, MAX_TIMESTAMP_MS
        if self.past_s is not None or self.future_s is not None:
            now = self.clock()
            if self.past_s is not None:
                low = max(low, math.floor((now - self.past_s) * 1000))
            if self.future_s is not None:
                high = min(high, math.ceil((now + self.future_s) * 1000))
        return low, high


DEFAULT_LIMITS = PayloadLimits()

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
"""Characters no line-protocol string may carry: control characters (a newline cannot be
escaped), line separators, and lone surrogates (no UTF-8 form: the batch would not encode)."""


def unsafe_name(text: object) -> str | None:
    """Why ``text`` cannot identify anything in the line protocol (station, tag, id); None if it can."""
    if not isinstance(text, str) or not text:
        return "empty or not a string"
    if len(text) > MAX_NAME_CHARS:
        return f"longer than {MAX_NAME_CHARS} characters"
    if _UNSAFE.search(text):
        return "control character or lone surrogate"
    return None


def printable(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters with every unsafe character replaced by ``?``: for logs."""
    cut = text[:limit] + ("..." if len(text) > limit else "")
    return _UNSAFE.sub("?", cut)


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
        kind = {TELEMETRY_TOPIC: Kind.TELEMETRY, CONTROL_TOPIC: Kind.CONTROL, META_TOPIC: Kind.META,
                EVENTS_TOPIC: Kind.EVENT, STATUS_TOPIC: Kind.STATUS}.get(parts[1])
        return Topic(kind, parts[0]) if kind is not None and parts[0] else None
    if len(parts) == 3 and parts[0] and parts[2]:
        kind = {ALARMS_TOPIC: Kind.ALARM, EVENTS_TOPIC: Kind.EVENT}.get(parts[1])
        return Topic(kind, parts[0], parts[2]) if kind is not None else None
    return None


def retained_clear(topic: Topic, payload: bytes) -> bool:
    """An empty message on a retained per-item topic (``alarms/<id>``, ``events/<id>``): a
    station deleting the retained state of an alarm that no longer exists (MQTT's way to delete
    one). Nothing to store and no contract violation: the alarm's end came before it, as its
    ``removed`` transition on ``events``."""
    return not payload and topic.kind in (Kind.ALARM, Kind.EVENT) and bool(topic.item)


@dataclass(frozen=True, slots=True)
class TagInfo:
    """What ``meta`` says about one tag."""

    device: str = ""
    unit: str = ""
    kind: str = ""
    """What the tag measures, from the contract's closed set (``TAG_KINDS``), or "" if not said."""


@dataclass(frozen=True, slots=True)
class StationMeta:
    """A station's retained ``meta``: its site (if it says) and each tag's device and unit."""

    config_hash: str = ""
    site: str = ""
    tags: Mapping[str, TagInfo] = field(default_factory=dict)


def parse_meta(payload: bytes, limits: PayloadLimits = DEFAULT_LIMITS) -> StationMeta:
    """Decode a ``meta`` payload; raise PayloadError if it is not the contract's shape.

    Lenient inside: a site, device or unit that could not be a tag value (control characters,
    too long) is left out, as if the station had not said it.
    """
    data = _json_object(payload, limits)
    tags = data.get("tags")
    if not isinstance(tags, dict):
        raise PayloadError("meta without a tags object")
    info = {}
    for name, entry in tags.items():
        entry = entry if isinstance(entry, dict) else {}
        kind = entry.get("kind")
        info[str(name)] = TagInfo(device=_text(entry.get("device")), unit=_text(entry.get("unit")),
                                  kind=kind if kind in TAG_KINDS else "")
    return StationMeta(config_hash=_text(data.get("config_hash")), site=_text(data.get("site")), tags=info)


def parse_peer_report(payload: bytes, limits: PayloadLimits = DEFAULT_LIMITS) -> tuple[str, list[tuple[str, int, int]]]:
    """A peer bridge's ``{"instance", "seen": {station: [[first, last], ...]}}`` -> (instance, spans).

    Every span is checked before any is used: ``0 <= first <= last <= INT64_MAX`` integers, for a
    station id that could be written; otherwise PayloadError and nothing of the report is merged.
    """
    data = _json_object(payload, limits)
    instance, seen = data.get("instance"), data.get("seen") or {}
    if not isinstance(instance, str) or not isinstance(seen, dict):
        raise PayloadError("peer report without an instance string and a seen object")
    spans: list[tuple[str, int, int]] = []
    for station, ranges in seen.items():
        if unsafe_name(station) is not None or not isinstance(ranges, list):
            raise PayloadError("peer report with an unusable station or span list")
        for span in ranges:
            if (not isinstance(span, list) or len(span) != 2
                    or not all(isinstance(n, int) and not isinstance(n, bool) for n in span)
                    or not 0 <= span[0] <= span[1]):
                raise PayloadError("peer report span is not [first, last] with 0 <= first <= last")
            spans.append((station, span[0], span[1]))
    return instance, spans


@dataclass(slots=True)
class Encoded:
    """One message turned into lines: what goes into the batch, and what the bridge accounts for."""

    lines: list[str]
    values: int
    seq: int | None = None
    skipped: int = 0
    """Samples that could not be written (unknown quality letter, malformed entry, time outside the window)."""
    skip_reason: str = ""
    """Why the first skipped sample was skipped, for the log and the quarantine."""
    unknown_strings: list[str] = field(default_factory=list)
    """Payload keys whose string values were dropped (only numbers and short labels are kept)."""


class _Skip(Exception):
    """One telemetry sample cannot be written; the message's other samples can."""


class LineEncoder:
    """Turns contract payloads into line protocol, caching each series' escaped key.

    The series key (measurement and tags) is the expensive part of a line and is the same for
    every sample of a tag, so it is built (and checked against the line-protocol grammar) once per
    (station, tag) and reused until the station's meta changes. That cache is the only state;
    output depends on inputs, ``limits`` and its clock alone.
    """

    def __init__(self, default_site: str, write_reason: bool = False, limits: PayloadLimits = DEFAULT_LIMITS) -> None:
        self._default_site = default_site
        self._write_reason = write_reason
        self._limits = limits
        self._keys: dict[tuple[str, str], str] = {}

    def forget(self, station: str) -> None:
        """Drop cached series keys of ``station`` (its meta changed)."""
        for key in [key for key in self._keys if key[0] == station]:
            del self._keys[key]

    def telemetry(self, station: str, meta: StationMeta | None, payload: bytes) -> Encoded:
        """``{"seq", "t0", "s": [[tag, value, dt_ms, quality(, reason)], ...]}`` -> lines."""
        _check_name(station, "station")
        try:
            data = _json_object(payload, self._limits)
        except PayloadError as exc:
            exc.seq = _guess_seq(payload)
            raise
        seq, t0, samples = data.get("seq"), data.get("t0"), data.get("s")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise PayloadError("telemetry without a non-negative integer seq")
        low, high = self._limits.window_ms()
        base_ms = _epoch_ms(t0, "t0", low, high, seq)
        if not isinstance(samples, list):
            raise PayloadError("telemetry without a sample list s", seq)
        lines: list[str] = []
        skipped = 0
        skip_reason = ""
        keys = self._keys
        for sample in samples:
            try:
                tag, value, dt_ms, quality = sample[0], sample[1], sample[2], sample[3]
                code = QUALITY_CODES[quality]
                timestamp = base_ms + (dt_ms if type(dt_ms) is int else _offset_ms(dt_ms))
                if not low <= timestamp <= high:
                    raise _Skip("sample time outside the accepted window")
                key = keys.get((station, tag))
                if key is None:
                    key = self._telemetry_key(station, meta, tag)
                    keys[(station, tag)] = key
            except _Skip as exc:
                skipped += 1
                skip_reason = skip_reason or str(exc)
                continue
            except (KeyError, IndexError, TypeError, ValueError):
                skipped += 1
                skip_reason = skip_reason or "malformed sample"
                continue
            if value is None:
                fields = f"quality={code}i"
            elif value is True or value is False:
                fields = f"value={1.0 if value else 0.0},quality={code}i"
            elif isinstance(value, int | float):
                # NaN and infinities have no line-protocol spelling: the quality alone is kept.
                # (Integers are within int64, ``load_json`` made sure, so float() cannot overflow.)
                number = float(value)
                fields = f"value={number!r},quality={code}i" if math.isfinite(number) else f"quality={code}i"
            else:
                skipped += 1
                skip_reason = skip_reason or "value neither a number, a boolean nor null"
                continue
            if self._write_reason and len(sample) > 4 and isinstance(sample[4], str):
                fields += f',reason="{_escape_string(_UNSAFE.sub(" ", sample[4][:MAX_REASON_CHARS]))}"'
            lines.append(f"{key}{fields} {timestamp}")
        return Encoded(lines=lines, values=len(lines), seq=seq, skipped=skipped, skip_reason=skip_reason)

    def state(self, topic: Topic, meta: StationMeta | None, payload: bytes) -> Encoded:
        """Controller state, alarms and events: a JSON object with its own ``ts``.

        Numbers and booleans (also inside nested objects, names joined with ``_``) become fields;
        ``state`` words become a numeric ``state`` field; ``severity``/``kind`` labels become tags.
        Other strings are dropped: free text as a tag would be unbounded, and as a field a
        numbers-only database would store it as 0. A ``seq`` is the station's one sequence, shared
        with telemetry (durable messages on every topic carry it): it is returned for the gap
        accounting, never written. Field names that no database would take (empty, control
        characters, a leading ``_``, ``time``, a tag's name) are dropped too.
        """
        _check_name(topic.station, "station")
        if topic.kind in (Kind.ALARM, Kind.EVENT) and topic.item:  # the ``events`` stream's id is in the payload
            _check_name(topic.item, f"{topic.kind.value} id")
        data = _json_object(payload, self._limits)
        timestamp = _epoch_ms(data.get("ts"), "ts", *self._limits.window_ms())
        seq = data.get("seq")
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
            raise PayloadError(f"{topic.kind.value} with a seq that is not a non-negative integer")
        tags = {"site": self._site(meta), "station": topic.station}
        measurement = topic.kind.value
        if topic.kind is Kind.EVENT and not topic.item and data.get("kind") == "device":
            return self._device(tags, data, timestamp, seq)
        if topic.kind in (Kind.ALARM, Kind.EVENT):
            item = topic.item
            if not item:  # the ``events`` stream: alarm or event, and which one, by the payload
                measurement = Kind.ALARM.value if data.get("kind") == "alarm" else Kind.EVENT.value
                item = data.get("id") if isinstance(data.get("id"), str) else ""
                if not _ID.match(item):
                    raise PayloadError(f"{measurement} message without a valid id")
            tags[measurement] = item
        codes = CONTROL_CODES if topic.kind is Kind.CONTROL else {}
        fields: dict[str, str] = {}
        labels: list[tuple[str, str, int]] = []
        dropped: list[str] = []
        for name, value in data.items():
            if name in ("ts", "seq", "id"):
                continue
            if name == "state" and isinstance(value, str):
                fields["state"] = f"{STATE_CODES.get(value.lower(), UNKNOWN_STATE)}i"
                if value.lower() not in STATE_CODES:
                    dropped.append(f"state={printable(value, 32)}")
            elif name in _TAG_STRINGS and isinstance(value, str):
                if _LABEL.match(value):
                    tags[name] = value
                else:
                    dropped.append(name)
            else:
                _flatten(name, value, fields, dropped, codes, labels)
        for name in [name for name in fields if name in tags]:
            del fields[name]  # a field named like a tag: InfluxDB 3 refuses the line
            dropped.append(name)
        if not fields:
            raise PayloadError(f"{topic.kind.value} message with no numeric field")
        lines = [_line(measurement, tags, fields, timestamp), *_label_lines(measurement, tags, labels, timestamp)]
        for line in lines:
            problem = line_problem(line)
            if problem is not None:
                raise PayloadError(f"{topic.kind.value} message would make an invalid line: {problem}")
        return Encoded(lines=lines, values=len(fields), seq=seq, unknown_strings=dropped)

    def _device(self, tags: dict[str, str], data: dict[str, Any], timestamp: int, seq: int | None) -> Encoded:
        """A device's online/offline change (``kind: device`` on ``events``): ``device`` measurement."""
        device = data.get("id")
        if not isinstance(device, str) or not _ID.match(device):
            raise PayloadError("device status without a valid id")
        state, reason = data.get("state"), data.get("reason", "")
        if not isinstance(state, str) or not isinstance(reason, str):
            raise PayloadError("device status without a state and reason string")
        tags = {**tags, "device": device}
        coded = [("state", DEVICE_STATE, state), ("reason", DEVICE_REASON, reason)]
        return self._coded("device", tags, coded, {}, timestamp, seq)

    def status(self, topic: Topic, meta: StationMeta | None, payload: bytes, arrived: float) -> Encoded:
        """A station's retained birth or death (``status``): ``status`` measurement, and on a birth
        ``status_info`` tagged with the gateway's version and configuration hash.

        A birth and a clean stop carry their ``ts``; the broker's last will has none (the gateway
        cannot know when the broker will notice it gone), so it is stored at ``arrived``, when the
        bridge received it: within the keepalive of the loss while the bridge is connected, later
        when the bridge was away and the broker kept it queued.
        """
        _check_name(topic.station, "station")
        data = _json_object(payload, self._limits)
        low, high = self._limits.window_ms()
        timestamp = _epoch_ms(data["ts"] if "ts" in data else arrived, "ts", low, high)
        state, reason = data.get("state"), data.get("reason", "")
        if not isinstance(state, str) or not isinstance(reason, str):
            raise PayloadError("status without a state and reason string")
        tags = {"site": self._site(meta), "station": topic.station}
        numbers: dict[str, str] = {}
        _flatten("started", data.get("started"), numbers, [])
        _flatten("outbox", data.get("outbox"), numbers, [])
        encoded = self._coded("status", tags, [("state", STATION_STATE, state), ("reason", STATION_REASON, reason)],
                              numbers, timestamp, None)
        version, digest = data.get("version"), data.get("config_hash")
        if state == "online" and isinstance(version, str) and isinstance(digest, str):
            if not (_VERSION.match(version) and _CONFIG_HASH.match(digest)):
                raise PayloadError("status with a version or config_hash that is not a short label")
            encoded.lines.append(_line("status_info", {**tags, "version": version, "config_hash": digest},
                                       {"online": "1i"}, timestamp))
        return encoded

    def _coded(self, measurement: str, tags: dict[str, str], coded: list[tuple[str, CodeTable, str]],
               fields: dict[str, str], timestamp: int, seq: int | None) -> Encoded:
        """One line with each text's code as an integer field, and its label lines."""
        labels = [(name, table.name(text), table.code(text)) for name, table, text in coded]
        fields = {**fields, **{f"{name}_code": f"{code}i" for name, _, code in labels}}
        lines = [_line(measurement, tags, fields, timestamp), *_label_lines(measurement, tags, labels, timestamp)]
        for line in lines:
            problem = line_problem(line)
            if problem is not None:
                raise PayloadError(f"{measurement} message would make an invalid line: {problem}")
        unknown = [f"{name}={printable(text, 32)}" for name, table, text in coded if table.name(text) == OTHER]
        return Encoded(lines=lines, values=len(fields), seq=seq, unknown_strings=unknown)

    def _site(self, meta: StationMeta | None) -> str:
        return meta.site if meta is not None and meta.site else self._default_site

    def _telemetry_key(self, station: str, meta: StationMeta | None, tag: object) -> str:
        """``telemetry,device=plc,site=north,station=st1,tag=outdoor_temp,unit=degC `` (tags sorted;
        ``kind=room`` too where the meta names the tag a representative room)."""
        problem = unsafe_name(tag)
        if problem is not None:
            raise _Skip(f"tag name {problem}")
        assert isinstance(tag, str)
        info = meta.tags.get(tag) if meta is not None else None
        tags = {"site": self._site(meta), "station": station, "tag": tag}
        if info is not None:
            tags["device"] = info.device
            tags["unit"] = info.unit
            tags["kind"] = info.kind
        key = "telemetry" + "".join(f",{k}={escape_tag(v)}" for k, v in sorted(tags.items()) if v) + " "
        problem = line_problem(key + "quality=0i 0")
        if problem is not None:
            raise _Skip(f"series key would make an invalid line: {problem}")
        return key


def _line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, str], timestamp: int) -> str:
    key = _escape_measurement(measurement) + "".join(
        f",{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(tags.items()) if v)
    return key + " " + ",".join(f"{escape_tag(k)}={v}" for k, v in fields.items()) + f" {timestamp}"


def _label_lines(measurement: str, tags: Mapping[str, str], labels: list[tuple[str, str, int]],
                 timestamp: int) -> list[str]:
    """``<measurement>_text,...,field=<name>,name=<label> code=<n>i``: the coded text's name as a
    tag, from its table's closed set (or ``other``), for databases and dashboards that show labels."""
    return [_line(f"{measurement}_text", {**tags, "field": name, "name": label}, {"code": f"{code}i"}, timestamp)
            for name, label, code in labels]


def _check_name(text: str, what: str) -> None:
    problem = unsafe_name(text)
    if problem is not None:
        raise PayloadError(f"{what} {problem}")


def _offset_ms(dt_ms: object) -> int:
    """A sample's ``dt_ms``: an integer, or a finite float (truncated, as before)."""
    if isinstance(dt_ms, bool):
        raise _Skip("dt_ms is not a number")
    if isinstance(dt_ms, int):
        return dt_ms
    if isinstance(dt_ms, float) and math.isfinite(dt_ms):
        return int(dt_ms)
    raise _Skip("dt_ms is not a finite number")


def _field_name_ok(name: str) -> bool:
    return (unsafe_name(name) is None and not name.startswith("_") and name != "time")


def _flatten(name: str, value: Any, fields: dict[str, str], dropped: list[str],
             codes: Mapping[str, CodeTable] | None = None, labels: list[tuple[str, str, int]] | None = None) -> None:
    """Numbers and booleans of ``value`` into ``fields``, nested names joined with ``_``; a string
    whose own key has a table in ``codes`` becomes ``<name>_code`` and a label in ``labels``.

    Iterative (an explicit stack), so no payload can make it recurse; depth is bounded by
    ``load_json`` anyway.
    """
    stack = [(name, name, value)]
    while stack:
        name, key, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((f"{name}_{inner_key}", inner_key, inner) for inner_key, inner in reversed(list(value.items())))
            continue
        if value is None:
            continue
        table = codes.get(key) if codes and isinstance(value, str) else None
        if table is not None and labels is not None and _field_name_ok(name):
            fields[f"{name}_code"] = f"{table.code(value)}i"
            labels.append((name, table.name(value), table.code(value)))
            if table.name(value) == OTHER:
                dropped.append(f"{printable(name, 64)}={printable(value, 32)}")
        elif not isinstance(value, bool | int | float) or not _field_name_ok(name):
            dropped.append(printable(name, 64))
        elif isinstance(value, bool):
            fields[name] = "1.0" if value else "0.0"
        elif math.isfinite(number := float(value)):
            fields[name] = repr(number)


_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_STRUCTURE = bytes(set(range(256)) - set(b'"[]{}'))
_DEPTH_STEP = [0] * 256
for _opening in b"[{":
    _DEPTH_STEP[_opening] = 1
for _closing in b"]}":
    _DEPTH_STEP[_closing] = -1


def nesting_depth(payload: bytes) -> int:
    """How deep ``[``/``{`` nest in ``payload``, brackets inside strings not counted.

    Linear and iterative, on the raw bytes (UTF-8 continuation bytes are never ASCII), all in C:
    escape pairs (``\"``, ``\\``) are cut out, then everything but quotes and brackets; what lies
    between an even and an odd quote is inside a string; the rest is summed. A ``json.loads`` of
    a payload within the bound can never recurse deeper: the parser stops at the first byte that
    breaks the grammar, and up to there this count is exact.
    """
    unescaped = _ESCAPE.sub(b"", payload) if b"\\" in payload else payload
    outside = b"".join(unescaped.translate(None, _NOT_STRUCTURE).split(b'"')[::2])
    return max(0, max(accumulate(map(_DEPTH_STEP.__getitem__, outside)), default=0))


_SEQ = re.compile(rb'"seq"\s*:\s*(\d{1,19})[\s,}]')


def _guess_seq(payload: bytes) -> int | None:
    """The ``seq`` of a telemetry message that cannot be parsed, from its first 4 KiB, for the log."""
    match = _SEQ.search(payload, 0, 4096)
    return int(match.group(1)) if match and int(match.group(1)) <= INT64_MAX else None


def _int64(text: str) -> int:
    """``parse_int`` for ``json.loads``: integers the line protocol (and ``seq``) can carry, no more.

    Also keeps Python's 4300-digit ``ValueError`` (and its quadratic conversion) out of reach.
    """
    if len(text) > 20:
        raise PayloadError("integer beyond int64")
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise PayloadError("integer beyond int64")
    return value


def load_json(payload: bytes, limits: PayloadLimits = DEFAULT_LIMITS) -> Any:
    """Parse a contract payload safely: size, strict UTF-8, nesting depth, int64; else PayloadError."""
    if len(payload) > limits.max_bytes:
        raise PayloadError(f"message of {len(payload)} bytes is over the {limits.max_bytes}-byte limit")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"not UTF-8 (invalid byte at {exc.start})") from None
    if payload.count(b"[") + payload.count(b"{") > limits.max_depth:
        depth = nesting_depth(payload)
        if depth > limits.max_depth:
            raise PayloadError(f"JSON nested {depth} deep, over the limit of {limits.max_depth}")
    try:
        return json.loads(text, parse_int=_int64)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _json_object(payload: bytes, limits: PayloadLimits) -> dict[str, Any]:
    data = load_json(payload, limits)
    if not isinstance(data, dict):
        raise PayloadError("payload is not a JSON object")
    return data


def _epoch_ms(value: object, name: str, low: int = 0, high: int = MAX_TIMESTAMP_MS, seq: int | None = None) -> int:
    """POSIX seconds (float, ms resolution) -> integer ms within ``[low, high]``; rounding, because
    0.777 is not exact in binary."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise PayloadError(f"{name} must be POSIX seconds", seq)
    if value > MAX_TIMESTAMP_MS / 1000 + 1:
        raise PayloadError(f"{name} outside the accepted time window", seq)
    ms = round(value * 1000)
    if not low <= ms <= high:
        raise PayloadError(f"{name} outside the accepted time window", seq)
    return ms


def _text(value: object) -> str:
    """A meta string usable as a tag value, or "" (left out)."""
    return value if isinstance(value, str) and unsafe_name(value) is None else ""


_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\\": "\\\\"})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\\": "\\\\"})


def escape_tag(text: str) -> str:
    """Escape a tag key or value (also a field key) for line protocol: comma, equals, space, backslash.

    Control characters must not reach it (``unsafe_name``): a newline has no escape.
    """
    return text.translate(_TAG_ESCAPES)


def _escape_measurement(text: str) -> str:
    return text.translate(_MEASUREMENT_ESCAPES)


def _escape_string(text: str) -> str:
    """A string field value: backslash and double quote escaped; newlines must be gone already."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


_KEY = r"(?:[^\\,= \x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]|\\[\\,= ])+"
_FIELD_VALUE = (r"(?:-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|-?\d{1,19}i|true|false"
                r'|"(?:[^"\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]|\\[\\"])*")')
_LINE = re.compile(rf"(?!#){_KEY}(?:,{_KEY}={_KEY})* {_KEY}={_FIELD_VALUE}(?:,{_KEY}={_FIELD_VALUE})* (\d{{1,19}})")


def line_problem(line: str) -> str | None:
    """Why a database would refuse ``line`` (one line of our line protocol); None if it would not.

    Checks the length, the grammar (escapes, no control characters or lone surrogates, numeric and
    string field values, integer timestamp) and the timestamp's range (milliseconds, int64 nanoseconds).
    """
    if len(line) > MAX_LINE_CHARS:
        return f"line longer than {MAX_LINE_CHARS} characters"
    match = _LINE.fullmatch(line)
    if match is None:
        return "not line protocol (unescaped or control character, empty key, bad field value)"
    if int(match.group(1)) > MAX_TIMESTAMP_MS:
        return "timestamp beyond int64 nanoseconds"
    return None
