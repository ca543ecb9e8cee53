"""Where the station really ran: every circuit's hourly operating points, kept on the station PC.

``heatgw curve FILE --png OUT --points <state_dir>/operating-points.csv`` draws them on the filed
curve, so the engineer at the station (or over SSH) sees how the season has gone without a
historian: by day the points sit on the curve shifted by what the rooms said, at night below it
(the setback), and a curve that is too steep or too flat for the buildings shows as a cloud that
leans away from it.

One row per circuit and hour of heating: the hour (UTC), the hourly means of the outdoor
temperature in use, of the outdoor value the curve was read at, of the curve, of the setpoint
decided and of the coldest valid room, the phase the hour spent most cycles in, and how many
cycles the row stands for. A row is appended when its hour is over (and the hour in progress when
the task stops), so a crash loses at most one hour; the file keeps the last ``keep_rows`` rows
(by default a season and a half of one circuit), so it cannot fill the disk. Like the
controller's memory, a disk problem is logged and never stops the controller.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from gateway.control.model import CircuitState, ControllerState
from gateway.logs import kv

log = logging.getLogger(__name__)

FILE_NAME = "operating-points.csv"
COLUMNS = ("hour_utc", "circuit", "outdoor_c", "outdoor_curve_c", "curve_c", "setpoint_c", "room_c", "phase",
           "cycles")
KEEP_ROWS = 24 * 200
"""About a season and a half (a heating season is 121 days) of one circuit, some 300 kB."""
_SLACK = 1.1
"""The file is cut back to ``keep_rows`` once it holds this many times more, not at every row."""


@dataclass
class _Hour:
    """The running means of one circuit's hour."""

    start: float
    cycles: int = 0
    outdoor: float = 0.0
    outdoor_curve: float = 0.0
    curve: float = 0.0
    setpoint: float = 0.0
    room: float = 0.0
    rooms: int = 0
    phases: Counter[str] = field(default_factory=Counter)

    def add(self, outdoor_c: float, circuit: CircuitState) -> None:
        self.cycles += 1
        self.outdoor += outdoor_c
        self.outdoor_curve += circuit.outdoor_curve_c
        self.curve += circuit.curve_c
        self.setpoint += circuit.setpoint_c
        if circuit.room_used_c is not None:
            self.room += circuit.room_used_c
            self.rooms += 1
        self.phases[circuit.phase] += 1

    def row(self, circuit: str) -> list[str]:
        n = self.cycles
        hour = dt.datetime.fromtimestamp(self.start, dt.UTC).strftime("%Y-%m-%dT%H:%MZ")
        room = f"{self.room / self.rooms:.2f}" if self.rooms else ""
        return [hour, circuit, f"{self.outdoor / n:.2f}", f"{self.outdoor_curve / n:.2f}", f"{self.curve / n:.2f}",
                f"{self.setpoint / n:.2f}", room, self.phases.most_common(1)[0][0], str(n)]


class OperatingPointLog:
    """Collects each cycle's ``ControllerState`` into hourly rows appended to a CSV file."""

    def __init__(self, path: Path, keep_rows: int = KEEP_ROWS) -> None:
        self.path = path
        self.keep_rows = keep_rows
        self._hours: dict[str, _Hour] = {}
        self._rows = self._count_rows()

    def add(self, state: ControllerState) -> None:
        """Take one cycle's state; a circuit that is not heating (off, cut out) adds nothing."""
        start = state.timestamp - state.timestamp % 3600.0
        for circuit in state.circuits:
            hour = self._hours.get(circuit.circuit)
            if hour is not None and hour.start != start:
                self._write([hour.row(circuit.circuit)])
                hour = None
                del self._hours[circuit.circuit]
            if not circuit.heating:
                continue
            if hour is None:
                hour = self._hours[circuit.circuit] = _Hour(start)
            hour.add(state.outdoor_c, circuit)

    def close(self) -> None:
        """Write the hours in progress (a partial row: its ``cycles`` say how much it stands for)."""
        rows = [hour.row(name) for name, hour in self._hours.items()]
        self._hours.clear()
        if rows:
            self._write(rows)

    def _count_rows(self) -> int:
        try:
            with self.path.open(encoding="utf-8") as handle:
                header = handle.readline().strip()
                if header != ",".join(COLUMNS):
                    raise ValueError("unexpected header")
                return sum(1 for _ in handle)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.error("operating points file unreadable", extra=kv(file=self.path, error=exc))
            return 0
        except (ValueError, UnicodeDecodeError) as exc:
            # Not ours, or an older format: keep it aside, never append to it.
            aside = self.path.with_name(self.path.name + ".old")
            log.warning("operating points file not recognised: kept aside, starting a new one",
                        extra=kv(file=self.path, moved_to=aside, reason=exc))
            try:
                os.replace(self.path, aside)
            except OSError as move_error:
                log.error("operating points file could not be moved aside", extra=kv(file=self.path, error=move_error))
            return 0

    def _write(self, rows: list[list[str]]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists()
            with self.path.open("a", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                if new:
                    writer.writerow(COLUMNS)
                    self._rows = 0
                writer.writerows(rows)
            self._rows += len(rows)
            if self._rows > self.keep_rows * _SLACK:
                self._cut_back()
        except OSError as exc:
            log.error("operating points not written", extra=kv(file=self.path, rows=len(rows), error=exc))

    def _cut_back(self) -> None:
        """Keep the newest ``keep_rows`` rows (rewritten atomically: a crash leaves the longer file)."""
        with self.path.open(encoding="utf-8") as handle:
            header, *rows = handle.readlines()
        kept = rows[-self.keep_rows:]
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write(header)
            handle.writelines(kept)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        self._rows = len(kept)

