"""Structured logging: one line per event, ``key=value`` pairs an operator can grep at 3 a.m.

journald already stamps time and unit, but the same lines also go to a terminal during
commissioning, so the format carries its own UTC timestamp and level. Call sites pass context
through ``extra={"fields": {...}}`` or the ``kv`` helper, never by formatting it into the message,
so ``grep device=plc`` works.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def kv(**fields: Any) -> dict[str, dict[str, Any]]:
    """``log.info("device lost", extra=kv(device="plc", reason="timeout"))``."""
    return {"fields": fields}


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
"""Characters that could end or rewrite a log line (newline, carriage return, terminal escapes,
Unicode line separators) or not encode at all (lone surrogates): always written escaped, so a
value taken from a message can never forge a line of its own."""


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(char) or f"\\u{ord(char):04x}"


def _quote(value: Any) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    if text == "" or any(c in text for c in ' ="') or _CONTROL.search(text):
        text = '"' + _CONTROL.sub(_escape_control, text.replace("\\", "\\\\").replace('"', '\\"')) + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=info logger=gateway.poller msg="device lost" device=plc reason=timeout``."""

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


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not when logging was set up.

    Test runners and the rich live view swap ``sys.stderr``; a handler bound to the old stream
    would write to a closed file ("Logging error") once the swap is undone.
    """

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup_logging(level: str = "info") -> None:
    """Route every logger (ours and the libraries') through one logfmt handler on stderr."""
    handler = _CurrentStderrHandler()
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pymodbus logs every retry at ERROR; the poller reports device state itself, once.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
