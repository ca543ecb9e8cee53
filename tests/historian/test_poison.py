"""Poison messages, pure: every message of the corpus is refused (or loses only its bad samples) with
a ``PayloadError``, never an uncaught error; every line that is produced is one a database takes."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from pathlib import Path

import pytest

from gateway.historian.bridge import Throttle
from gateway.historian.quarantine import Quarantine
from gateway.historian.schema import (
    INT64_MAX,
    MAX_TIMESTAMP_MS,
    Encoded,
    Kind,
    LineEncoder,
    PayloadError,
    StationMeta,
    TagInfo,
    Topic,
    line_problem,
    load_json,
    nesting_depth,
    parse_meta,
    parse_peer_report,
    parse_topic,
)
from gateway.historian.settings import QuarantineSettings
from gateway.logs import LogfmtFormatter
from tests.historian.poison import FUTURE_S, PAST_S, Poison, corpus, limits

NOW = 1_795_456_034.777
CORPUS = corpus(NOW)
MESSAGES = [poison for poison in CORPUS if poison.outcome != "ignored"]
META_AND_PEER = [poison for poison in CORPUS if poison.outcome == "ignored"]


def encode(poison: Poison, encoder: LineEncoder | None = None) -> Encoded:
    encoder = encoder or LineEncoder("default", limits=limits(NOW))
    topic = parse_topic("heatgw", f"heatgw/{poison.station}/{poison.topic}")
    assert topic is not None, poison.topic
    if topic.kind is Kind.TELEMETRY:
        return encoder.telemetry(topic.station, None, poison.payload)
    return encoder.state(topic, None, poison.payload)


def test_the_corpus_holds_at_least_30_poison_messages_of_every_kind() -> None:
    assert len(CORPUS) >= 30
    kinds = {poison.topic.split("/")[0] for poison in CORPUS}
    assert kinds == {"telemetry", "control", "alarms", "events", "meta", "peer"}


@pytest.mark.parametrize("poison", [p for p in MESSAGES if p.outcome == "refused"], ids=lambda p: p.id)
def test_a_poison_message_is_refused_whole_with_a_reason(poison: Poison) -> None:
    with pytest.raises(PayloadError) as refused:
        encode(poison)
    assert poison.reason in str(refused.value)


@pytest.mark.parametrize("poison", [p for p in MESSAGES if p.outcome == "partial"], ids=lambda p: p.id)
def test_a_message_with_poison_samples_loses_only_those_and_says_why(poison: Poison) -> None:
    encoded = encode(poison)
    assert encoded.skipped >= 1 and poison.reason in encoded.skip_reason
    for line in encoded.lines:
        assert line_problem(line) is None, line
        line.encode("utf-8")


@pytest.mark.parametrize("poison", META_AND_PEER, ids=lambda p: p.id)
def test_a_poison_meta_or_peer_report_is_refused_whole(poison: Poison) -> None:
    parse = parse_peer_report if poison.topic == "peer" else parse_meta
    with pytest.raises(PayloadError):
        parse(poison.payload, limits(NOW))


def test_good_samples_next_to_poison_samples_are_written() -> None:
    payload = (b'{"seq": 3, "t0": 1795455974.777, "s": [["a", 1.0, Infinity, "g"], ["b", 2.0, 5, "g"], '
               b'["c\\n", 3.0, 0, "g"], ["d", 4.0, 1e30, "g"]]}')
    encoded = LineEncoder("default", limits=limits(NOW)).telemetry("st1", None, payload)
    assert encoded.lines == ["telemetry,site=default,station=st1,tag=b value=2.0,quality=0i 1795455974782"]
    assert encoded.skipped == 3 and encoded.seq == 3


@pytest.mark.parametrize(("payload", "depth"), [
    (b"1", 0), (b"[]", 1), (b'{"a": [1, {"b": [2]}]}', 4), (b'["[[[", "]]]]]]", "{"]', 1),
    (b'["\\"[[[\\\\", [["\\\\"]]]', 3), (b"[" * 10_000, 10_000), (b'{"a": "\\u005b"}', 1),
])
def test_nesting_depth_counts_brackets_outside_strings_only(payload: bytes, depth: int) -> None:
    assert nesting_depth(payload) == depth


def test_json_is_parsed_up_to_the_depth_bound_and_refused_one_beyond_without_recursing() -> None:
    bounded = limits(NOW)
    assert load_json(b"[" * 32 + b"]" * 32, bounded) == _nested_lists(32)
    with pytest.raises(PayloadError, match="nested 33 deep"):
        load_json(b"[" * 33 + b"]" * 33, bounded)
    with pytest.raises(PayloadError, match="nested 1000000 deep"):
        load_json(b"[" * 1_000_000, bounded)


def _nested_lists(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_integers_are_accepted_up_to_int64_and_refused_one_beyond() -> None:
    assert load_json(f"[{INT64_MAX}, {-INT64_MAX - 1}]".encode()) == [INT64_MAX, -INT64_MAX - 1]
    for number in (INT64_MAX + 1, -INT64_MAX - 2):
        with pytest.raises(PayloadError, match="int64"):
            load_json(f"[{number}]".encode())


def test_the_time_window_runs_from_max_past_to_max_future_around_now() -> None:
    encoder = LineEncoder("default", limits=limits(NOW))
    for t0 in (NOW - PAST_S + 1, NOW + FUTURE_S - 1):
        payload = json.dumps({"seq": 1, "t0": t0, "s": [["a", 1.0, 0, "g"]]}).encode()
        assert encoder.telemetry("st1", None, payload).values == 1
    for t0 in (NOW - PAST_S - 1, NOW + FUTURE_S + 1):
        payload = json.dumps({"seq": 1, "t0": t0, "s": [["a", 1.0, 0, "g"]]}).encode()
        with pytest.raises(PayloadError, match="window"):
            encoder.telemetry("st1", None, payload)


def test_without_a_window_only_what_int64_nanoseconds_carry_is_accepted() -> None:
    encoder = LineEncoder("default")
    last = json.dumps({"seq": 1, "t0": MAX_TIMESTAMP_MS / 1000, "s": [["a", 1.0, 0, "g"]]}).encode()
    assert encoder.telemetry("st1", None, last).lines[0].endswith(f" {MAX_TIMESTAMP_MS}")
    beyond = json.dumps({"seq": 1, "t0": MAX_TIMESTAMP_MS / 1000, "s": [["a", 1.0, 1, "g"]]}).encode()
    assert encoder.telemetry("st1", None, beyond).skip_reason == "sample time outside the accepted window"


def test_commas_spaces_equals_quotes_and_backslashes_are_escaped_per_part() -> None:
    meta = StationMeta(site="north", tags={'t a,b=c"\\': TagInfo("plc\\", 'unit "x"')})
    payload = json.dumps({"seq": 1, "t0": 1.0, "s": [['t a,b=c"\\', 1.0, 0, "b", 'line\none "q" \\ end']]}).encode()
    [line] = LineEncoder("default", write_reason=True).telemetry('st,1 ="\\', meta, payload).lines
    assert line == ('telemetry,device=plc\\\\,site=north,station=st\\,1\\ \\="\\\\,tag=t\\ a\\,b\\=c"\\\\,'
                    'unit=unit\\ "x" value=1.0,quality=1i,reason="line one \\"q\\" \\\\ end" 1000')
    assert line_problem(line) is None


def test_newlines_and_other_control_characters_never_reach_a_line() -> None:
    meta = parse_meta(json.dumps({"site": "a\nb", "tags": {"t": {"device": "plc\r", "unit": "degC\x1b[2J"}}}).encode())
    assert meta == StationMeta(site="", tags={"t": TagInfo("", "")}), "left out: they cannot be tag values"
    [line] = LineEncoder("default").telemetry("st1", meta, b'{"seq": 1, "t0": 1.0, "s": [["t", 1.0, 0, "g"]]}').lines
    assert line == "telemetry,site=default,station=st1,tag=t value=1.0,quality=0i 1000"


def test_field_names_no_database_takes_are_dropped_and_listed() -> None:
    payload = json.dumps({"ts": 1.0, "": 1, "_x": 2, "time": 3, "a\nb": 4, "station": 5, "ok": 6,
                          "nested": {"": 7, "fine": 8}}).encode()
    encoded = LineEncoder("default").state(Topic(Kind.CONTROL, "st1"), None, payload)
    assert encoded.lines == ["control,site=default,station=st1 ok=6.0,nested_=7.0,nested_fine=8.0 1000"]
    assert sorted(encoded.unknown_strings) == sorted(["", "_x", "time", "a?b", "station"])


@pytest.mark.parametrize("line", [
    "telemetry,device=plc,site=demo-city,station=demo-01,tag=outdoor_temp,unit=degC value=-4.5,quality=0i 1795456034777",
    "alarm,alarm=overtemp,severity=high,site=demo-city,station=demo-01 state=1i,value=96.5 1795456034500",
    'telemetry,station=a\\ b\\,c\\=d\\\\ reason="q \\" b \\\\",value=1e+20 0',
])
def test_lines_a_database_takes_pass_the_check(line: str) -> None:
    assert line_problem(line) is None


@pytest.mark.parametrize("line", [
    "telemetry,station=a b value=1.0 1000",            # unescaped space in a tag
    "telemetry,station=a\nb value=1.0 1000",           # newline
    "telemetry,station= value=1.0 1000",               # empty tag value
    "telemetry,=x value=1.0 1000",                     # empty tag key
    "telemetry =1.0 1000",                             # empty field key
    "telemetry value=inf 1000",                        # no spelling for infinity
    "telemetry value=nan 1000",
    "telemetry value=1.0 99999999999999999",           # beyond int64 nanoseconds
    "telemetry value=1.0 -5",
    'telemetry reason="a\nb" 1000',
    "telemetry,station=\ud800 value=1.0 1000",         # no UTF-8 form
    "#telemetry value=1.0 1000",                       # a comment
    "telemetry value=1.0",                             # no time
])
def test_lines_a_database_would_refuse_are_caught(line: str) -> None:
    assert line_problem(line) is not None


def test_a_peer_report_is_read_whole_when_every_span_is_sound() -> None:
    report = json.dumps({"instance": "b", "seen": {"st01": [[1, 5], [9, 9]], "st02": []}}).encode()
    assert parse_peer_report(report) == ("b", [("st01", 1, 5), ("st01", 9, 9)])


def test_the_quarantine_keeps_one_json_line_per_message_and_rotates_within_its_cap(tmp_path: Path) -> None:
    settings = QuarantineSettings(max_file_bytes=4096, keep_files=2, max_payload_bytes=256)
    quarantine = Quarantine(tmp_path / "state", "a", settings)
    payloads = [b"\xff\xfe binary\n", "line\nbreak \u2028 \x1b[2J".encode(), b"x" * 1000, "é".encode() * 200]
    for i in range(60):
        quarantine.keep(f"heatgw/st\n{i}/telemetry", payloads[i % 4], "why\nnot", "st\n", i, now=NOW)
    files = quarantine.files()
    assert [path.name for path in files] == ["quarantine-a.jsonl", "quarantine-a.jsonl.1", "quarantine-a.jsonl.2"]
    assert all(path.stat().st_size <= 4096 for path in files)
    records = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert records and quarantine.kept == 60
    last = records[-1]
    assert last["topic"] == "heatgw/st\n59/telemetry" and last["seq"] == 59 and last["reason"] == "why\nnot"
    assert last["received"] == "2026-11-23T17:47:14.777Z"
    by_size = {record["bytes"]: record for record in records}
    assert base64.b64decode(by_size[len(payloads[0])]["payload_base64"]) == payloads[0]
    assert by_size[1000]["truncated"] is True and by_size[1000]["payload"] == "x" * 256
    assert by_size[1000]["sha256"] == hashlib.sha256(payloads[2]).hexdigest()
    assert by_size[400]["payload"] == "é" * 128, "a character cut by the truncation is dropped, the text kept"


def test_a_station_name_cannot_forge_or_rewrite_a_log_line() -> None:
    record = logging.LogRecord("gateway.historian.bridge", logging.WARNING, "", 0, "message refused", None, None)
    record.fields = {"station": "st01\nts=2026-01-01 level=error msg=forged", "topic": "a\rb\x1b[2J\u2028"}
    line = LogfmtFormatter().format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u2028" not in line
    assert 'station="st01\\nts=2026-01-01 level=error msg=forged"' in line
    assert 'topic="a\\rb\\u001b[2J\\u2028"' in line


def test_log_throttling_stays_bounded_under_a_flood_of_station_names() -> None:
    throttle = Throttle(interval_s=60)
    for i in range(30_000):
        assert throttle.allow(f"invalid:st{i}", now=100.0 + i / 1000) == 0
    assert len(throttle._last) <= 10_001
    assert throttle.allow("invalid:st29999", now=131.0) is None, "still throttled within the minute"
