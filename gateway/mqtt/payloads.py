"""Every payload of the MQTT contract (README "MQTT contract"), in one place: telemetry, status,
meta, command results, alarm transitions and states, station event updates and the open events.
The contract is the gateway's public API; keeping its shapes together makes a change to it one
reviewable diff.

Telemetry is sized for cellular links: samples are positional arrays, the tag's unit and
description travel once in the retained ``meta`` message instead of in every sample, times are
millisecond offsets from the message's ``t0``, quality is one letter, and every value is rounded
to the resolution its register actually has (``0.1`` scale gives one decimal, a float32 gives seven
significant digits) so ``79.60000000000001`` never crosses the link.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from drivers.base import Quality
from gateway.alarms.engine import Transition
from gateway.alarms.events import StationEvent
from gateway.config import GatewayConfig, TagConfig
from gateway.samples import Sample, Value

QUALITY_LETTER = {Quality.GOOD: "g", Quality.BAD: "b", Quality.STALE: "s"}
MAX_DECIMALS = 9
SIGNIFICANT_DIGITS = {"float32": 7, "float64": 15}  # what the IEEE format really carries


def _dumps(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def config_hash(config: GatewayConfig) -> str:
    """``sha256:<hex>`` of the canonical configuration (sorted keys), shown in status and meta."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _decimals(number: float) -> int:
    """Decimal places needed to write ``number`` exactly (0.001 -> 3, 0.25 -> 2, 10 -> 0)."""
    exponent = Decimal(repr(number)).normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # finite by construction of the config
    return min(MAX_DECIMALS, max(0, -exponent))


def resolution(tag: TagConfig) -> int:
    """How a tag's values are rounded: ``n >= 0`` decimal places for scaled integers (the register's
    own resolution), ``-n`` significant digits for floating-point registers."""
    digits = SIGNIFICANT_DIGITS.get(tag.data_type)
    if digits is not None:
        return -digits
    return max(_decimals(tag.scale), _decimals(tag.offset))


class TelemetryEncoder:
    """Turns samples into telemetry payloads; knows each tag's resolution.

    The JSON text is assembled directly rather than through ``json.dumps`` of nested lists: every
    polled value passes through here, and this is three times faster. Tag names and reasons are
    still JSON-escaped (once per tag, cached).
    """

    def __init__(self, resolutions: Mapping[str, int]) -> None:
        self._resolutions = dict(resolutions)  # see ``resolution``
        self._names: dict[str, str] = {}

    @classmethod
    def for_config(cls, config: GatewayConfig) -> TelemetryEncoder:
        return cls({tag: resolution(cfg) for tag, (_device, cfg) in config.tags().items()})

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
        places = self._resolutions.get(tag, -SIGNIFICANT_DIGITS["float64"])
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
            name = names.get(tag)
            if name is None:
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


def meta(config: GatewayConfig, digest: str) -> bytes:
    """Retained station and tag metadata, so telemetry need not carry units and descriptions."""
    tags = {tag: {"unit": cfg.unit, "device": device, "description": cfg.description}
            for tag, (device, cfg) in config.tags().items()}
    return _dumps({"config_hash": digest, "site": config.station.site, "tags": tags})


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


def _event(event: StationEvent) -> dict[str, object]:
    return {"ts": round(event.changed, 3), "kind": "event", "id": event.id, "rule": event.rule,
            "state": event.state.value, "message": event.message, "cause": event.cause,
            "started": round(event.started, 3), "escalation_h": event.escalation_h, "deadline": _time(event.deadline),
            "ended": _time(event.ended), "duration_s": round(event.duration_s, 3),
            "value": None if event.value is None else round(event.value, 3),
            "refund_pct": event.refund_pct}


def event_transition(seq: int, event: StationEvent) -> bytes:
    """A station event's start, escalation or end on ``events`` (through the outbox)."""
    return _dumps({"seq": seq, **_event(event)})


def open_events(events: Sequence[StationEvent], now: float) -> bytes:
    """The retained ``events/open`` summary: every station event not yet ended (``count`` is what
    the historian stores of it)."""
    return _dumps({"ts": round(now, 3), "count": len(events), "open": [_event(event) for event in events]})
