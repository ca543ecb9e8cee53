"""The key=value log: whatever a value holds, one record stays one line that cannot be forged."""

from __future__ import annotations

import logging
import sys

import pytest

from gateway.logs import LogfmtFormatter, kv

HOSTILE = [
    "x\nts=2026-01-01T00:00:00.000Z level=error msg=forged",
    "x\rts=2026-01-01T00:00:00.000Z level=error msg=forged",
    "x\r\nlevel=error",
    "tab\there",
    "bell\x07 esc\x1b[2J nul\x00 del\x7f",
    "c1\x85next line",
    "unicode\u2028line\u2029paragraph",
    'quote" level=error msg="forged',
    "back\\slash\\",
    "",
]


def record(message: str, **fields: object) -> logging.LogRecord:
    rec = logging.LogRecord("gateway.test", logging.WARNING, __file__, 1, message, None, None)
    rec.fields = kv(**fields)["fields"]
    return rec


def fields_of(line: str) -> list[str]:
    """The keys of a logfmt line, reading quoted values with their escapes (as a log parser does)."""
    keys, i = [], 0
    while i < len(line):
        key_end = line.index("=", i)
        keys.append(line[i:key_end])
        i = key_end + 1
        if i < len(line) and line[i] == '"':
            i += 1
            while line[i] != '"':
                i += 2 if line[i] == "\\" else 1
            i += 1
        else:
            while i < len(line) and line[i] != " ":
                i += 1
        i += 1
    return keys


@pytest.mark.parametrize("value", HOSTILE)
def test_no_value_from_outside_can_forge_a_log_line_or_a_field(value: str) -> None:
    line = LogfmtFormatter().format(record(value, origin=value, reason=value))
    assert "\n" not in line and "\r" not in line and "\u2028" not in line and "\u2029" not in line
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in line), repr(line)
    assert fields_of(line) == ["ts", "level", "logger", "msg", "origin", "reason"]


def test_escapes_are_readable_and_plain_values_stay_plain() -> None:
    line = LogfmtFormatter().format(record("write refused", tag="supply_setpoint", reason="a\r\nb\x1b", value=1.5))
    assert line.endswith('msg="write refused" tag=supply_setpoint reason="a\\r\\nb\\u001b" value=1.5')


def test_an_exception_text_stays_on_the_line() -> None:
    try:
        raise ValueError("bad\nreply")
    except ValueError:
        rec = record("failed")
        rec.exc_info = sys.exc_info()
    line = LogfmtFormatter().format(rec)
    assert "\n" not in line and "ValueError: bad\\nreply" in line
