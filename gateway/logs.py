"""Structured logging: one line per event, ``key=value`` pairs an operator can grep at 3 a.m.

journald already stamps time and unit, but the same lines also go to a terminal during
commissioning, so the format carries its own UTC timestamp and level. Call sites pass context
through ``extra={"fields": {...}}`` or the ``kv`` helper, never by formatting it into the message,
so ``grep device=plc`` works.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from enum import StrEnum
from typing import Any

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def kv(**fields: Any) -> dict[str, dict[str, Any]]:
    """``log.info("device lost", extra=kv(device="plc", reason="timeout"))``."""
    return {"fields": fields}


class Throttle:
    """At most one log line per key per interval; the next one that passes says how many were held
    back. Every "log this once per N seconds" in the gateway, the historian and the demo is one of these.

    Keys may be made of message content (a station's name in a flood of hostile messages), so the
    memory stays bounded: past 10 000 keys the quiet ones are forgotten, past 5 000 still active all.
    """

    def __init__(self, interval_s: float = 60.0) -> None:
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str, now: float) -> int | None:
        """None if this occurrence should stay quiet; else how many were held back before it."""
        if len(self._last) > 10_000:
            self._last = {k: t for k, t in self._last.items() if now - t < self._interval_s}
            if len(self._last) > 5_000:
                self._last = {}  # a flood of names: forget rather than prune on every call
            self._held = {k: n for k, n in self._held.items() if k in self._last}
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators: any of them in a
# value from outside (a device's reply, a command's origin, a message's name) could end the line or
# forge another one; lone surrogates would not encode at all.
_NEEDS_QUOTES = re.compile('[ ="\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]')
_TO_ESCAPE = re.compile('[\\\\"\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]')


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or f"\\u{ord(char):04x}"


def _quote(value: Any) -> str:
    """One ``key=value`` value: quoted when it holds a space, ``=``, a quote or a control character,
    and then with every backslash, quote and control character escaped, so whatever it holds, the
    record stays one line and no text in it can pass for another field or another record."""
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    if text == "" or _NEEDS_QUOTES.search(text):
        text = '"' + _TO_ESCAPE.sub(_escape, text) + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=info logger=drivers.modbus.poller msg="device lost" device=plc reason=timeout``."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        parts = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        parts.update(getattr(record, "fields", {}))
        parts.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED and k != "fields"})
        line = " ".join(f"{key}={_quote(value)}" for key, value in parts.items())
        if record.exc_info:
            line += " exc=" + _quote(self.formatException(record.exc_info))
        return line


SYSLOG_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


def stderr_is_journal() -> bool:
    """Whether stderr is connected to journald (systemd sets ``JOURNAL_STREAM`` to its device and
    inode; a child whose stderr was redirected elsewhere inherits the variable but not the stream)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in stream.split(":"))
        status = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (status.st_dev, status.st_ino) == (device, inode)


class JournalPriorityFormatter(LogfmtFormatter):
    """Logfmt with the ``<N>`` syslog-priority prefix journald reads from a service's stderr, so
    ``journalctl -u heatgw -p warning`` shows warnings and worse; the line itself is unchanged."""

    def format(self, record: logging.LogRecord) -> str:
        priority = SYSLOG_PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        return f"<{priority}>" + super().format(record)


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not when logging was set up.

    Test runners and the rich live view swap ``sys.stderr``; a handler bound to the old stream
    would write to a closed file ("Logging error") once the swap is undone.
    """

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class LogLevel(StrEnum):
    """What ``--log-level`` takes: the CLI lists these in its help and refuses anything else with
    a one-line message (``verbose`` is not a level), never a traceback."""

    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def setup_logging(level: str = "info") -> None:
    """Route every logger (ours and the libraries') through one logfmt handler on stderr."""
    handler = _CurrentStderrHandler()
    handler.setFormatter(JournalPriorityFormatter() if stderr_is_journal() else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pymodbus logs every retry at ERROR; the poller reports device state itself, once.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    # asyncua logs a lost connection from several of its tasks, at ERROR with tracebacks, and chats at
    # INFO on every request; the OPC UA device reports the session's state itself, once.
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
