"""The MQTT contract (docs: dispatch/mqtt.md), in one place: the topic layout, the quality codes,
and every payload: telemetry, status, meta, command results, alarm transitions and states, station
event updates, the open events, and the historian's confirmations and replay requests. The contract
is the gateway's public API; the station's publisher and the historian bridge both take it from
here, so a change to it is one reviewable diff.

Telemetry is sized for cellular links: samples are positional arrays, the tag's unit and
description travel once in the retained ``meta`` message instead of in every sample, times are
millisecond offsets from the message's ``t0``, quality is one letter, and every value is rounded
to the resolution its register actually has (``0.1`` scale gives one decimal, a float32 gives seven
significant digits) so ``79.60000000000001`` never crosses the link.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeGuard

from drivers.base import Quality
from gateway.alarms.engine import Transition
from gateway.alarms.events import StationEvent
from gateway.config import GatewayConfig
from gateway.control.model import ControllerState
from gateway.samples import DeviceStatus, Sample, Value
from gateway.tag_traits import ALL_DIGITS, TagTraits

# -- topics: ``<prefix>/<station>/<suffix>``, the suffixes below -----------------------------------

STATUS_TOPIC = "status"
"""Retained birth and death (the last will)."""
META_TOPIC = "meta"
"""Retained: each tag's device, unit and kind."""
TELEMETRY_TOPIC = "telemetry"
CONTROL_TOPIC = "control"
"""The controller's state after each cycle."""
EVENTS_TOPIC = "events"
"""The stream of alarm transitions, station event updates and device status; below it, retained,
``events/open`` (the open events)."""
OPEN_EVENTS_TOPIC = f"{EVENTS_TOPIC}/open"
ALARMS_TOPIC = "alarms"
"""Below it, retained, each alarm's state: ``alarm_suffix(id)``."""
COMMANDS_TOPIC = "cmd"
"""Commands in on ``cmd/<name>``, answers out on ``cmd/<name>/result``."""
RecordedKind = Literal["telemetry", "control", "alarms", "events", "status"]
"""The kinds of message a historian records (its ``topics.kinds``)."""
RECORDED_TOPICS: Mapping[RecordedKind, tuple[str, ...]] = {
    "telemetry": (TELEMETRY_TOPIC,), "control": (CONTROL_TOPIC,), "alarms": (f"{ALARMS_TOPIC}/+",),
    "events": (EVENTS_TOPIC, f"{EVENTS_TOPIC}/+"), "status": (STATUS_TOPIC,)}
"""Each kind, and the topic filters below a station that carry it."""
SEQUENCED_KINDS: tuple[RecordedKind, ...] = ("telemetry", "control", "events")
"""The kinds whose messages carry the station's one sequence: a receiver that left one out would
see its numbers as holes."""


class Topics:
    """One station's topics under ``<prefix>/<station>/`` (``station`` may be the ``+`` wildcard)."""

    def __init__(self, prefix: str, station: str) -> None:
        self.base = f"{prefix}/{station}"
        self.status = self.of(STATUS_TOPIC)
        self.meta = self.of(META_TOPIC)
        self.telemetry = self.of(TELEMETRY_TOPIC)
        self.delivered = self.of(DELIVERED_TOPIC)
        self.commands = self.command("+")

    def of(self, suffix: str) -> str:
        """The topic ``suffix`` (an outbox entry's, e.g. ``telemetry``) names below the station."""
        return f"{self.base}/{suffix}"

    def command(self, name: str) -> str:
        return self.of(f"{COMMANDS_TOPIC}/{name}")

    def command_name(self, topic: str) -> str:
        return topic.rsplit("/", 1)[-1]

    def result(self, name: str) -> str:
        return f"{self.command(name)}/result"


def alarm_suffix(alarm_id: str) -> str:
    """Where an alarm's retained state is published below the station: ``alarms/<id>``."""
    return f"{ALARMS_TOPIC}/{alarm_id}"


def historian_peers_topic(prefix: str, share_group: str) -> str:
    """Where the bridges of one share group tell each other which sequence numbers they wrote."""
    return f"{prefix}/_historian/{share_group}/seen"


def station_of(prefix: str, topic: str, suffix: str) -> str | None:
    """The station of ``<prefix>/<station>/<suffix>``, else None."""
    head, _, station_and_rest = topic.partition(prefix + "/")
    station, _, rest = station_and_rest.partition("/")
    return station if not head and station and rest == suffix else None


# -- quality: one letter in telemetry, one number in a numbers-only database ----------------------

_QUALITIES = ((Quality.GOOD, "g", 0), (Quality.BAD, "b", 1), (Quality.STALE, "s", 2))
QUALITY_LETTER = {quality: letter for quality, letter, _ in _QUALITIES}
QUALITY_CODES = {letter: code for _, letter, code in _QUALITIES}
"""Contract quality letters -> the historian's numeric ``quality`` field (good, bad, stale)."""


def _text(payload: object) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _dumps(payload: object) -> bytes:
    return _text(payload).encode()


def config_hash(config: GatewayConfig) -> str:
    """``sha256:<hex>`` of the canonical configuration (sorted keys), shown in status and meta.

    The canonical text is hashed device by device, so it never exists whole: at a thousand devices
    the whole dump was tens of MB at start, memory the process then kept. The bytes hashed are
    those of ``json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))``.
    """
    digest = hashlib.sha256()
    placeholder = "\0devices\0"
    rest = json.dumps({**config.model_dump(mode="json", exclude={"devices"}), "devices": placeholder},
                      sort_keys=True, separators=(",", ":"))
    before, after = rest.split(json.dumps(placeholder))
    digest.update(before.encode() + b"{")
    for index, name in enumerate(sorted(config.devices)):
        device = json.dumps(config.devices[name].model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        digest.update(("," if index else "").encode() + json.dumps(name).encode() + b":" + device.encode())
    digest.update(b"}" + after.encode())
    return "sha256:" + digest.hexdigest()


class TelemetryEncoder:
    """Turns samples into telemetry payloads; knows each tag's resolution.

    The JSON text is assembled directly rather than through ``json.dumps`` of nested lists: every
    polled value passes through here, and this is three times faster. Tag names and reasons are
    still JSON-escaped where they need it (once per tag, cached).
    """

    def __init__(self, traits: Mapping[str, TagTraits]) -> None:
        self._traits = traits  # the station's shared map (``GatewayConfig.tag_traits``), not a copy
        self._names: dict[str, str] = {}

    @classmethod
    def for_config(cls, config: GatewayConfig) -> TelemetryEncoder:
        return cls(config.tag_traits())

    def text(self, tag: str, value: Value) -> str:
        """``value`` as JSON, rounded to the tag's resolution; NaN and infinities become null."""
        if value is None:
            return "null"
        if value is True:
            return "true"
        if value is False:
            return "false"
        if not math.isfinite(value):
            return "null"
        traits = self._traits.get(tag)
        places = ALL_DIGITS if traits is None else traits.digits  # a tag of no configuration: all it has
        if places < 0:
            return f"{value:.{-places}g}"
        if places == 0:
            return str(round(value))
        return repr(round(value, places))

    def encode(self, seq: int, samples: Sequence[Sample]) -> bytes:
        """``{"seq": N, "t0": T, "s": [[tag, value, dt_ms, q(, reason)], ...]}`` for non-empty ``samples``."""
        t0 = round(min(sample.timestamp for sample in samples), 3)
        names, text, letters = self._names, self.text, QUALITY_LETTER
        rows = []
        for sample in samples:
            tag = sample.tag
            if tag.isascii() and tag.isidentifier():  # every configured name: nothing to escape, and
                name = f'"{tag}"'  # not cached: a hundred thousand tags would keep ~9 MB of quoted copies
            elif (name := names.get(tag)) is None:
                name = names[tag] = json.dumps(tag, ensure_ascii=False)
            dt_ms = round((sample.timestamp - t0) * 1000)
            row = f'[{name},{text(tag, sample.value)},{dt_ms},"{letters[sample.quality]}"'
            if sample.reason:
                row += "," + json.dumps(sample.reason, ensure_ascii=False)
            rows.append(row + "]")
        return f'{{"seq":{seq},"t0":{t0!r},"s":[{",".join(rows)}]}}'.encode()


@dataclass(frozen=True, slots=True)
class StationIdentity:
    """What the status message says about this gateway run."""

    station: str
    version: str
    config_hash: str
    started: float


def birth(identity: StationIdentity, now: float, pending: int, dropped: int) -> bytes:
    """Retained ``online`` status; ``outbox`` says how much backlog follows and how much the cap dropped."""
    return _dumps({"state": "online", "version": identity.version, "config_hash": identity.config_hash,
                   "started": round(identity.started, 3), "ts": round(now, 3),
                   "outbox": {"pending": pending, "dropped": dropped}})


def death(reason: str, now: float | None) -> bytes:
    """Retained ``offline`` status. The last will has no ``ts``: the broker sends it when it notices
    the loss, a time the gateway cannot know when it registers the will."""
    payload: dict[str, object] = {"state": "offline", "reason": reason}
    if now is not None:
        payload["ts"] = round(now, 3)
    return _dumps(payload)


TAG_KINDS = ("room",)
"""What a tag can be said to measure in ``meta`` (its ``kind``), a closed set the historian stores
as a label: ``room`` for a representative room's temperature, so dashboards find the rooms
whatever they are called."""


def meta(config: GatewayConfig, digest: str, rooms: Collection[str] = ()) -> bytes:
    """Retained station and tag metadata, so telemetry need not carry units and descriptions;
    ``rooms`` are the tags of the representative rooms (``kind: room``)."""
    # Written tag by tag: the whole document as nested dicts was 18 MB at a hundred thousand tags,
    # for a text of 5 MB; the text is the same as ``_dumps`` of that document.
    text = io.StringIO()
    text.write(_text({"config_hash": digest, "site": config.station.site, "tags": {}})[:-2])  # up to "tags":
    separator = ""
    for device, settings in config.devices.items():
        for tag, cfg in settings.tags.items():
            entry = {"unit": cfg.unit, "device": device, "description": cfg.description}
            if tag in rooms:
                entry["kind"] = "room"
            text.write(f"{separator}{_text(tag)}:{_text(entry)}")
            separator = ","
    text.write("}}")
    return text.getvalue().encode()


def result(command_id: str | None, ok: bool, reason: str, now: float, detail: Mapping[str, Value] | None) -> bytes:
    """A command's answer on ``cmd/<name>/result``."""
    payload: dict[str, object] = {"id": command_id, "ok": ok}
    if reason:
        payload["reason"] = reason
    if detail:
        payload["result"] = dict(detail)
    payload["ts"] = round(now, 3)
    return _dumps(payload)


def _time(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _alarm(transition: Transition) -> dict[str, object]:
    record = transition.record
    value = record.value
    if isinstance(value, float) and not math.isfinite(value):
        value = None
    return {"ts": round(record.changed, 3), "kind": "alarm", "id": record.id, "state": record.state.value,
            "previous": transition.previous.value, "priority": transition.priority.value, "value": value,
            "limit": transition.limit, "message": transition.message, "activated": _time(record.activated),
            "acknowledged": _time(record.acknowledged), "returned": _time(record.returned),
            "origin": record.origin or None, "shelved_until": _time(record.shelved_until),
            "note": record.note or None, "annunciated": transition.annunciate}


def alarm_transition(seq: int, transition: Transition) -> bytes:
    """One alarm transition on ``events`` (through the outbox: durable, in ``seq`` order)."""
    return _dumps({"seq": seq, **_alarm(transition)})


def alarm_state(transition: Transition) -> bytes:
    """An alarm's current state, retained on ``alarms/<id>`` (the normal state too, once cleared)."""
    return _dumps(_alarm(transition))


def control_payload(state: ControllerState, seq: int) -> bytes:
    """The ``control`` topic's JSON: the controller state, with the contract's ``ts`` time key and
    the station's ``seq`` (shared with telemetry: the historian sees one series of numbers), and
    circuits, limiters and signals keyed by name instead of listed, so every figure has a stable
    name a historian can store (``circuits_radiators_setpoint_c``) whatever the list order."""
    data = state.to_dict()
    ts = data.pop("timestamp")
    circuits = {}
    for circuit in data.pop("circuits"):
        circuit["limiters"] = {limiter.pop("name"): limiter for limiter in circuit["limiters"]}
        circuits[circuit.pop("circuit")] = circuit
    signals = {signal: True for signal in data.pop("signals")}
    return json.dumps({"seq": seq, "ts": ts, **data, "circuits": circuits, "signals": signals}).encode()


def _event(event: StationEvent) -> dict[str, object]:
    return {"ts": round(event.changed, 3), "kind": "event", "id": event.id, "rule": event.rule,
            "state": event.state.value, "message": event.message, "cause": event.cause,
            "started": round(event.started, 3), "escalation_h": event.escalation_h, "deadline": _time(event.deadline),
            "ended": _time(event.ended), "duration_s": round(event.duration_s, 3),
            "value": None if event.value is None else round(event.value, 3),
            "refund_pct": event.refund_pct}


def device_status(status: DeviceStatus, seq: int) -> bytes:
    """A device's online/offline change on ``events`` (``kind: device``; through the outbox, so the
    historian keeps every one). ``reason`` is the poller's ``<reason>: <detail>``, empty when online."""
    return _dumps({"seq": seq, "ts": round(status.timestamp, 3), "kind": "device", "id": status.device,
                   "state": "online" if status.online else "offline", "reason": status.reason})


def event_transition(seq: int, event: StationEvent) -> bytes:
    """A station event's start, escalation or end on ``events`` (through the outbox)."""
    return _dumps({"seq": seq, **_event(event)})


def open_events(events: Sequence[StationEvent], now: float) -> bytes:
    """The retained ``events/open`` summary: every station event not yet ended (``count`` is what
    the historian stores of it)."""
    return _dumps({"ts": round(now, 3), "count": len(events), "open": [_event(event) for event in events]})


# -- text fields as bounded codes -------------------------------------------------------------------

OTHER = "other"
OTHER_CODE = -1
"""The code of a text no table knows: stored as ``other``, never as the text itself."""


@dataclass(frozen=True, slots=True)
class CodeTable:
    """A closed set of names a text field of the contract can take, each with a stable code.

    A database keeps the code as an integer field (numbers-only databases keep nothing else) and,
    where it takes labels, the name as a tag: both bounded, whatever a station sends. The codes
    never change meaning; a new name gets a new code. ``before_colon`` tables name the text up to
    its first colon (``refused: out of range`` is ``refused``); ``aliases`` map a spelling that is
    no label (an empty string, a space) to its name.
    """

    key: str
    codes: Mapping[str, int]
    aliases: Mapping[str, str] = field(default_factory=dict)
    before_colon: bool = False

    def name(self, text: str) -> str:
        """The table's name for ``text``, or ``other``."""
        name = text.split(":", 1)[0].strip() if self.before_colon else text
        name = self.aliases.get(name, name)
        return name if name in self.codes else OTHER

    def code(self, text: str) -> int:
        return self.codes.get(self.name(text), OTHER_CODE)


SEASON = CodeTable("season", {"off": 0, "cold_circulation": 1, "commissioning": 2, "heating": 3, "extension": 4})
OUTDOOR_SOURCE = CodeTable("outdoor_source", {"sensor": 0, "dispatch": 1, "last_good": 2, "default": 3})
PHASE = CodeTable("phase", {"day": 0, "coast": 1, "night": 2, "preheat": 3})
CLAMPED = CodeTable("clamped", {"none": 0, "min": 1, "max": 2}, {"": "none"})
WRITE_STATUS = CodeTable("write_status", {"none": 0, "written": 1, "unchanged": 2, "refused": 3, "failed": 4,
                                          "disabled": 5}, {"": "none", "controller disabled": "disabled"},
                         before_colon=True)
CONTROL_CODES: Mapping[str, CodeTable] = {table.key: table for table in (SEASON, OUTDOOR_SOURCE, PHASE, CLAMPED,
                                                                           WRITE_STATUS)}
"""The controller state's coded text fields, by their own key (a circuit's ``phase`` is stored as
``circuits_<circuit>_phase_code``). Its other strings are free text (reasons, room names) and are
not stored."""

STATION_STATE = CodeTable("state", {"offline": 0, "online": 1})
STATION_REASON = CodeTable("reason", {"none": 0, "shutdown": 1, "connection_lost": 2},
                           {"": "none", "connection lost": "connection_lost"})
"""Why a station went offline: its own clean stop, or the broker's last will."""
DEVICE_STATE = CodeTable("state", {"offline": 0, "online": 1})
DEVICE_REASON = CodeTable("reason", {"none": 0, "timeout": 1, "connection_lost": 2, "exception": 3, "bad_reply": 4,
                                     "decode_error": 5, "out_of_range": 6, "no_value": 7, "not_refreshed": 8,
                                     "removed": 9},
                          {"": "none"}, before_colon=True)
"""Why a device went offline: the poller's reason (``drivers.base.Reason``), its detail left out,
or ``removed`` when a reload took it out of the station file (``gateway.samples.REMOVED``)."""


# -- end-to-end delivery: the historian's confirmation and its replay requests ----------------------

DELIVERED_TOPIC = "delivered"
"""Below ``<prefix>/<station>/``: retained, published by the historian, read by the station."""
REPLAY_COMMAND = "replay"
"""The command (``cmd/replay``) a historian sends to have a range of sequence numbers sent again."""
REPLAY_MAX_MESSAGES = 500
"""At most this many sequence numbers per replay request: the station resends them within one
command's time limit, and its memory holds one request's messages at a time. The historian asks
for longer holes in pieces of this size."""
DELIVERED_MAX_RANGES = 64
"""Ranges beyond ``upto`` one confirmation carries at most; the rest are confirmed by a later one."""


class ContractError(ValueError):
    """A payload that does not have the shape the MQTT contract gives it."""


@dataclass(frozen=True, slots=True)
class Delivered:
    """What a historian holds durably of one station: every ``seq <= upto``, and ``ranges`` beyond.

    "Holds" means written to the database, or confirmed by the station itself as no longer
    available (a cap drop the historian has counted as lost): either way the station may forget it.
    """

    upto: int
    ranges: tuple[tuple[int, int], ...] = ()

    @property
    def highest(self) -> int:
        return max([self.upto, *(last for _, last in self.ranges)])


def delivered(confirmation: Delivered, now: float) -> bytes:
    """``{"upto": N, "ranges": [[first, last], ...], "ts": T}``, retained on ``<station>/delivered``."""
    return _dumps({"upto": confirmation.upto, "ranges": [list(span) for span in confirmation.ranges],
                   "ts": round(now, 3)})


def parse_delivered(payload: bytes) -> Delivered:
    """Inverse of ``delivered``; raises ``ContractError`` rather than confirm something by accident."""
    data = _object(payload)
    upto, ranges = data.get("upto"), data.get("ranges", [])
    if not _count(upto) or not isinstance(ranges, list) or len(ranges) > DELIVERED_MAX_RANGES:
        raise ContractError("delivered needs a non-negative integer upto and at most "
                            f"{DELIVERED_MAX_RANGES} ranges")
    spans = []
    for span in ranges:
        if not (isinstance(span, list) and len(span) == 2 and _count(span[0]) and _count(span[1])
                and upto < span[0] <= span[1]):
            raise ContractError(f"delivered range {span!r} is not [first, last] above upto")
        spans.append((span[0], span[1]))
    return Delivered(upto, tuple(spans))


def replay_command(command_id: str, origin: str, expires: float, first: int, last: int) -> bytes:
    """A ``cmd/replay`` envelope asking the station to send ``first..last`` again."""
    return _dumps({"id": command_id, "origin": origin, "expires": round(expires, 3),
                   "args": {"from_seq": first, "to_seq": last}})


@dataclass(frozen=True, slots=True)
class ReplayAnswer:
    """The station's answer to a replay request (the ``result`` of ``cmd/replay/result``).

    ``resent`` messages of ``first..last`` were sent again; ``dropped`` (a range, or None) are
    numbers the station's outbox cap dropped before they were confirmed: they are lost, and this
    is the station saying so. ``absent`` counts the numbers neither resent nor dropped: deleted
    because a historian had confirmed them.
    """

    first: int
    last: int
    resent: int
    dropped: tuple[int, int] | None
    absent: int

    def result(self) -> dict[str, int]:
        """The command result's ``result`` object."""
        detail = {"from_seq": self.first, "to_seq": self.last, "resent": self.resent, "absent": self.absent}
        if self.dropped is not None:
            detail["dropped_first"], detail["dropped_last"] = self.dropped
        return detail


def parse_replay_answer(payload: bytes) -> ReplayAnswer | str:
    """A ``cmd/replay/result`` payload: the answer, or the station's refusal reason (a string)."""
    data = _object(payload)
    if data.get("ok") is not True:
        return str(data.get("reason") or "refused without a reason")
    detail = data.get("result")
    if not isinstance(detail, dict):
        raise ContractError("replay result without a result object")
    first, last = _number(detail, "from_seq"), _number(detail, "to_seq")
    dropped = None
    if "dropped_first" in detail or "dropped_last" in detail:
        dropped = (_number(detail, "dropped_first"), _number(detail, "dropped_last"))
        if not first <= dropped[0] <= dropped[1] <= last:
            raise ContractError("replay result's dropped range is not inside the request")
    return ReplayAnswer(first, last, _number(detail, "resent"), dropped, _number(detail, "absent"))


def _object(payload: bytes) -> dict[str, object]:
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ContractError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ContractError("payload is not a JSON object")
    return data


def _count(value: object) -> TypeGuard[int]:
    """A non-negative integer, and not a boolean (JSON ``true`` is not 1)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(data: dict[str, object], key: str) -> int:
    value = data.get(key)
    if not _count(value):
        raise ContractError(f"{key} must be a non-negative integer")
    return value
