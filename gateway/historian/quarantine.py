"""The quarantine: refused messages kept, bounded, for whoever has to find out why.

A message the bridge cannot write (not the contract, outside the numeric domain or time window,
too large, too deep, ...) is counted, logged (throttled) and then *acknowledged*, so that one
station's bad message never blocks the queue of every station behind it, and never comes back
after a restart to stop the bridge again. Acknowledged, it would be gone; so a copy goes here first.

* **One JSON object per line** in ``<state_dir>/quarantine-<instance>.jsonl``: when it arrived,
  the topic, station, seq (when it could be read), why it was refused, the payload's size and
  SHA-256, and the payload itself (as text when it is UTF-8, else base64), cut to
  ``max_payload_bytes`` (``truncated: true``). JSON escapes every control character, so a record
  is always exactly one line, whatever the message held.
* **Bounded**: when the file would pass ``max_file_bytes`` it is renamed ``.1`` (``.1`` to ``.2``,
  and so on); ``keep_files`` old files are kept, the oldest deleted. At most
  ``(keep_files + 1) × max_file_bytes`` of disk, however long a station misbehaves.
* **Never in the way**: a quarantine that cannot be written (disk full, permissions) is reported
  by the caller and the message is acknowledged all the same; the counter still counts it.

A message received twice (a redelivery after a crash before its acknowledgement) is kept twice.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path

from gateway.historian.settings import QuarantineSettings


class Quarantine:
    """Appends refused messages to a rotating, size-capped JSON-lines file. Single writer (the worker)."""

    def __init__(self, directory: Path, instance: str, settings: QuarantineSettings) -> None:
        self.path = directory / f"quarantine-{instance}.jsonl"
        self._settings = settings
        self.kept = 0

    def keep(self, topic: str, payload: bytes, reason: str, station: str, seq: int | None,
             now: float | None = None) -> None:
        """Append one record, rotating first if it would not fit; raise OSError if the disk refuses."""
        line = json.dumps(self.record(topic, payload, reason, station, seq, time.time() if now is None else now),
                          ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(line) > self._settings.max_file_bytes:
            self._rotate()
        with self.path.open("ab") as file:
            file.write(line)
        self.kept += 1

    def record(self, topic: str, payload: bytes, reason: str, station: str, seq: int | None,
               now: float) -> dict[str, object]:
        """The JSON record of one refused message."""
        limit = self._settings.max_payload_bytes
        cut = payload[:limit]
        ms = round(now * 1000)
        record: dict[str, object] = {
            "received": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z",
            "topic": topic, "station": station, "seq": seq, "reason": reason,
            "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest(),
        }
        text = _utf8(cut, truncated=len(payload) > limit)
        if text is not None:
            record["payload"] = text
        else:
            record["payload_base64"] = base64.b64encode(cut).decode("ascii")
        if len(payload) > limit:
            record["truncated"] = True
        return record

    def files(self) -> list[Path]:
        """The current file and the rotated ones that exist, newest first."""
        candidates = [self.path] + [self._rotated(n) for n in range(1, self._settings.keep_files + 1)]
        return [path for path in candidates if path.exists()]

    def _rotated(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def _rotate(self) -> None:
        keep = self._settings.keep_files
        self._rotated(keep).unlink(missing_ok=True)
        for n in range(keep - 1, 0, -1):
            if self._rotated(n).exists():
                os.replace(self._rotated(n), self._rotated(n + 1))
        os.replace(self.path, self._rotated(1))


def _utf8(data: bytes, truncated: bool) -> str | None:
    """``data`` as text if it is UTF-8 (a character cut by the truncation is dropped); else None."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if truncated and exc.start >= len(data) - 3 and exc.reason == "unexpected end of data":
            return data[:exc.start].decode("utf-8")
        return None
