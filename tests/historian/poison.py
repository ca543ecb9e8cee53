"""A corpus of poison messages: what a broken or hostile station (or peer) could publish.

Each entry says where it is published, the exact bytes, and what the bridge must make of it:

* ``refused``: the whole message is refused (``PayloadError``), counted in ``invalid_messages``,
  quarantined and acknowledged;
* ``partial``: the message is written without the samples that cannot be (``skipped_samples``),
  and a copy quarantined;
* ``ignored``: a ``meta`` or peer report that is not used (counted in ``invalid_messages``); the
  metadata thread carries on.

Times are built around ``now`` so that the well-formed parts sit inside the bridge's window.
Used by the pure schema tests and, through the real broker and database, by the bridge tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.historian.schema import PayloadLimits

MAX_BYTES = 1 << 20
PAST_S = 3650 * 86_400
FUTURE_S = 86_400
DEEP = 10_000


def limits(now: float) -> PayloadLimits:
    """The limits the tests run the bridge with (``validation`` in ``historian.yaml``), clock fixed."""
    return PayloadLimits(max_bytes=MAX_BYTES, max_depth=32, past_s=PAST_S, future_s=FUTURE_S, clock=lambda: now)


VALIDATION = {"max_message_bytes": MAX_BYTES, "max_depth": 32, "max_past_days": PAST_S / 86_400,
              "max_future_s": FUTURE_S}
"""The same limits as a ``validation:`` section."""


@dataclass(frozen=True)
class Poison:
    id: str
    topic: str
    """After ``<prefix>/<station>/``: telemetry, control, alarms/<id>, events/<id>, meta; or ``peer``."""
    payload: bytes
    outcome: str
    station: str = "poison"
    reason: str = ""
    """A part of the refusal reason (``refused``) or of the first skipped sample's (``partial``)."""


def _telemetry(now: float, samples: list[Any] | None = None, **fields: Any) -> bytes:
    data = {"seq": 7, "t0": round(now - 60, 3), "s": samples if samples is not None else [["tag_00", 1.5, 0, "g"]]}
    data.update(fields)
    return json.dumps(data).encode()


def _raw_telemetry(now: float, seq: str = "7", t0: str | None = None, sample: str = '["tag_00", 1.5, 0, "g"]') -> bytes:
    """Telemetry with literal JSON text in place: spellings ``json.dumps`` would never write."""
    return f'{{"seq": {seq}, "t0": {t0 or repr(round(now - 60, 3))}, "s": [{sample}]}}'.encode()


def _state(now: float, **fields: Any) -> bytes:
    return json.dumps({"ts": round(now - 30, 3), **fields}).encode()


def _nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def corpus(now: float) -> list[Poison]:
    year = 365.25 * 86_400
    telemetry = [
        Poison("value 10^400", "telemetry", _raw_telemetry(now, sample=f'["tag_00", 1{"0" * 400}, 0, "g"]'),
               "refused", reason="int64"),
        Poison("value of 5000 digits", "telemetry", _raw_telemetry(now, sample=f'["tag_00", 1{"0" * 5000}, 0, "g"]'),
               "refused", reason="int64"),
        Poison("value -2^63-1", "telemetry", _raw_telemetry(now, sample=f'["tag_00", {-(2**63) - 1}, 0, "g"]'),
               "refused", reason="int64"),
        Poison("dt_ms Infinity", "telemetry", _raw_telemetry(now, sample='["tag_00", 1.5, Infinity, "g"]'),
               "partial", reason="dt_ms"),
        Poison("dt_ms NaN", "telemetry", _raw_telemetry(now, sample='["tag_00", 1.5, NaN, "g"]'), "partial", reason="dt_ms"),
        Poison("dt_ms 1e30", "telemetry", _raw_telemetry(now, sample='["tag_00", 1.5, 1e30, "g"]'),
               "partial", reason="window"),
        Poison("dt_ms 10^25 integer", "telemetry", _raw_telemetry(now, sample=f'["tag_00", 1.5, 1{"0" * 25}, "g"]'),
               "refused", reason="int64"),
        Poison("dt_ms as a string", "telemetry", _telemetry(now, [["tag_00", 1.5, "12", "g"]]), "partial", reason="dt_ms"),
        Poison("t0 1e308", "telemetry", _raw_telemetry(now, t0="1e308"), "refused", reason="window"),
        Poison("t0 Infinity", "telemetry", _raw_telemetry(now, t0="Infinity"), "refused", reason="t0"),
        Poison("t0 -Infinity", "telemetry", _raw_telemetry(now, t0="-Infinity"), "refused", reason="t0"),
        Poison("t0 NaN", "telemetry", _raw_telemetry(now, t0="NaN"), "refused", reason="t0"),
        Poison("t0 1e999 (parses as inf)", "telemetry", _raw_telemetry(now, t0="1e999"), "refused", reason="t0"),
        Poison("t0 in 1980, before the window", "telemetry", _telemetry(now, t0=315_532_800.0), "refused", reason="window"),
        Poison("t0 in the year 3000", "telemetry", _telemetry(now, t0=32_503_680_000.0), "refused", reason="window"),
        Poison("t0 in 2262, past int64 ns", "telemetry", _telemetry(now, t0=9_300_000_000.0), "refused", reason="window"),
        Poison("t0 two days ahead", "telemetry", _telemetry(now, t0=round(now + 2 * 86_400, 3)), "refused", reason="window"),
        Poison("t0 eleven years back", "telemetry", _telemetry(now, t0=round(now - 11 * year, 3)), "refused",
               reason="window"),
        Poison("seq 2^63", "telemetry", _raw_telemetry(now, seq=str(2**63)), "refused", reason="int64"),
        Poison("seq 10^30", "telemetry", _raw_telemetry(now, seq="1" + "0" * 30), "refused", reason="int64"),
        Poison("seq -1", "telemetry", _telemetry(now, seq=-1), "refused", reason="seq"),
        Poison("seq as a string", "telemetry", _telemetry(now, seq="7"), "refused", reason="seq"),
        Poison("seq 1.5", "telemetry", _telemetry(now, seq=1.5), "refused", reason="seq"),
        Poison("seq true", "telemetry", _telemetry(now, seq=True), "refused", reason="seq"),
        Poison("seq null", "telemetry", _telemetry(now, seq=None), "refused", reason="seq"),
        Poison("telemetry nested 10,000 deep", "telemetry",
               _raw_telemetry(now, sample=_nested(DEEP)), "refused", reason="nested"),
        Poison("telemetry nested 33 deep", "telemetry",
               _raw_telemetry(now, sample=_nested(31)), "refused", reason="nested"),
        Poison("s is an object", "telemetry", _telemetry(now, s={"tag_00": 1.5}), "refused", reason="sample list"),
        Poison("s is a huge array of numbers", "telemetry", _telemetry(now, [0] * 100_000), "partial",
               reason="malformed"),
        Poison("oversize payload", "telemetry",
               _telemetry(now, [["tag_00", 1.5, i % 1000, "g"] for i in range(40_000)]), "refused", reason="limit"),
        Poison("not UTF-8", "telemetry", b'{"seq": 7, "t0": 1.0, "s": [["\xff\xfe", 1, 0, "g"]]}', "refused",
               reason="UTF-8"),
        Poison("UTF-16 with a byte-order mark", "telemetry", '\ufeff{"seq": 7}'.encode("utf-16"), "refused",
               reason="UTF-8"),
        Poison("UTF-8 byte-order mark", "telemetry", b"\xef\xbb\xbf" + _telemetry(now), "refused", reason="JSON"),
        Poison("not JSON at all", "telemetry", b"\x00\x01binary\x02", "refused", reason="JSON"),
        Poison("empty payload", "telemetry", b"", "refused", reason="JSON"),
        Poison("a JSON array", "telemetry", b"[1, 2, 3]", "refused", reason="object"),
        Poison("a lone surrogate as the tag", "telemetry", _telemetry(now, [["\ud800", 1.5, 0, "g"]]), "partial",
               reason="tag name"),
        Poison("a newline in the tag", "telemetry", _telemetry(now, [["tag\nx", 1.5, 0, "g"]]), "partial",
               reason="tag name"),
        Poison("a carriage return in the tag", "telemetry", _telemetry(now, [["tag\rx", 1.5, 0, "g"]]), "partial",
               reason="tag name"),
        Poison("an empty tag", "telemetry", _telemetry(now, [["", 1.5, 0, "g"]]), "partial", reason="tag name"),
        Poison("a 10,000-character tag", "telemetry", _telemetry(now, [["t" * 10_000, 1.5, 0, "g"]]), "partial",
               reason="tag name"),
        Poison("unknown quality and wrong value types", "telemetry",
               _telemetry(now, [["tag_00", 1.5, 0, "x"], ["tag_01", "hot", 0, "g"], ["tag_02", [1], 0, "g"],
                                ["tag_03", {"v": 1}, 0, "g"], ["tag_04", 2.5, 0, "g"]]), "partial", reason="malformed"),
        Poison("a newline in the station id", "telemetry", _telemetry(now), "refused", station="st\nx level=error",
               reason="station"),
    ]
    states = [
        Poison("control 10^400", "control", f'{{"ts": {now - 30}, "setpoint_c": 1{"0" * 400}}}'.encode(), "refused",
               reason="int64"),
        Poison("control ts Infinity", "control", f'{{"ts": Infinity, "setpoint_c": 61.5}}'.encode(), "refused",
               reason="ts"),
        Poison("control ts 1e308", "control", _state(now, ts=1e308, setpoint_c=61.5), "refused", reason="window"),
        Poison("control ts in the year 3000", "control", _state(now, ts=32_503_680_000.0, setpoint_c=61.5), "refused",
               reason="window"),
        Poison("control nested 10,000 deep", "control",
               f'{{"ts": {now - 30}, "c": {_deep_object(DEEP)}}}'.encode(),
               "refused", reason="nested"),
        Poison("control with only an empty key", "control", _state(now, **{"": 1.0}), "refused", reason="no numeric"),
        Poison("control with only a newline key", "control", _state(now, **{"a\nb": 1.0}), "refused",
               reason="no numeric"),
        Poison("control with only reserved names", "control", _state(now, _x=1.0, time=2.0), "refused",
               reason="no numeric"),
        Poison("control with only a field named like a tag", "control", _state(now, station=5.0), "refused",
               reason="no numeric"),
        Poison("control with 20,000 fields", "control", _state(now, **{f"f{i}": float(i) for i in range(20_000)}),
               "refused", reason="longer than"),
        Poison("alarm state 10^400", "alarms/overtemp", f'{{"ts": {now - 30}, "state": 1{"0" * 400}}}'.encode(),
               "refused", reason="int64"),
        Poison("alarm ts 1e30", "alarms/overtemp", _state(now, ts=1e30, state="active"), "refused", reason="window"),
        Poison("alarm ts as a string", "alarms/overtemp", _state(now, ts="now", state="active"), "refused", reason="ts"),
        Poison("alarm nested 10,000 deep", "alarms/overtemp",
               f'{{"ts": {now - 30}, "x": {_nested(DEEP)}}}'.encode(), "refused", reason="nested"),
        Poison("a newline in the alarm id", "alarms/over\ntemp", _state(now, state="active"), "refused",
               reason="alarm id"),
        Poison("event ts -Infinity", "events/leak", f'{{"ts": -Infinity, "state": "started"}}'.encode(), "refused",
               reason="ts"),
        Poison("event without ts", "events/leak", json.dumps({"state": "started"}).encode(), "refused", reason="ts"),
        Poison("event 10^20 count", "events/leak", f'{{"ts": {now - 30}, "count": {10**20}}}'.encode(), "refused",
               reason="int64"),
    ]
    others = [
        Poison("meta nested 10,000 deep", "meta",
               f'{{"tags": {{"tag_00": {_deep_object(DEEP)}}}}}'.encode(), "ignored"),
        Poison("meta 10^400", "meta", f'{{"tags": {{}}, "version": 1{"0" * 400}}}'.encode(), "ignored"),
        Poison("meta not UTF-8", "meta", b'{"tags": {"\xff": {}}}', "ignored"),
        Poison("meta tags a list", "meta", b'{"tags": [1, 2]}', "ignored"),
        Poison("peer report span 1e999", "peer",
               b'{"instance": "evil", "seen": {"st01": [[1, 1e999]]}}', "ignored"),
        Poison("peer report span 2^63", "peer", json.dumps({"instance": "evil", "seen": {"st01": [[1, 2**63]]}}).encode(),
               "ignored"),
        Poison("peer report reversed span", "peer", json.dumps({"instance": "evil", "seen": {"st01": [[9, 2]]}}).encode(),
               "ignored"),
        Poison("peer report negative span", "peer", json.dumps({"instance": "evil", "seen": {"st01": [[-5, 2]]}}).encode(),
               "ignored"),
        Poison("peer report nested 10,000 deep", "peer", f'{{"instance": "evil", "seen": {_nested(DEEP)}}}'.encode(),
               "ignored"),
        Poison("peer report seen a list", "peer", b'{"instance": "evil", "seen": [1]}', "ignored"),
        Poison("peer report station with a newline", "peer",
               json.dumps({"instance": "evil", "seen": {"st\n01": [[1, 2]]}}).encode(), "ignored"),
    ]
    return telemetry + states + others


def _deep_object(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth
