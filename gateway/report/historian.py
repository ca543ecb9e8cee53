"""Reading a station's recorded series and events back from the historian, for reports.

``Historian`` is everything the report asks of a database; ``VictoriaMetricsHistorian`` is its one
implementation, through VictoriaMetrics' export API (raw samples, no downsampling). A reader for
another database (InfluxDB's query API) implements the same two methods.

The bridge writes telemetry as the ``telemetry`` measurement with ``value`` and ``quality``
fields, tagged by station and tag (docs: dispatch/historian.md); a numbers-only database such as
VictoriaMetrics names them ``telemetry_value`` and ``telemetry_quality``. A sample whose quality
is not good carries no value: in the series handed to the report it is a NaN, which ends the
previous value's hold (the time-weighted means treat it as a hole, never as a reading).

Station events are the ``event`` measurement, one point per start, escalation and end, each
carrying the event's ``started`` time and, once over, its ``ended`` time; the points of one event
are the ones with the same ``event`` tag and the same ``started``.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Protocol

from drivers.base import Quality
from gateway.mqtt.payloads import QUALITY_CODES, QUALITY_LETTER
from gateway.report.compliance import Series

GOOD = QUALITY_CODES[QUALITY_LETTER[Quality.GOOD]]


class HistorianError(Exception):
    """The historian could not be read; ``str()`` says why in an operator's words."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One station event as the historian holds it: ``ended`` is None while it was still open at
    the last update stored (``last_update``)."""

    id: str
    started: float
    ended: float | None
    last_update: float
    escalation_h: float

    @property
    def duration_s(self) -> float:
        """To the end, or to the last update stored while it was still open."""
        return (self.ended if self.ended is not None else self.last_update) - self.started


class Historian(Protocol):
    """What a report reads from the historian database."""

    def series(self, station: str, tag: str, start: float, end: float) -> Series:
        """Samples of ``tag`` in ``[start, end)``, good ones with their value, others as NaN."""
        ...

    def events(self, station: str, rule: str, start: float, end: float) -> list[StoredEvent]:
        """The events of ``rule`` with an update stored in ``[start, end)``, by start time."""
        ...


class VictoriaMetricsHistorian:
    """Reads through VictoriaMetrics' export API (``/api/v1/export``), raw samples, no downsampling."""

    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self._timeout_s = timeout_s

    def series(self, station: str, tag: str, start: float, end: float) -> Series:
        selector = f'{{__name__=~"telemetry_(value|quality)",station="{_quote(station)}",tag="{_quote(tag)}"}}'
        rows = self._export(selector, start, end)
        values: dict[int, float] = {}
        qualities: dict[int, float] = {}
        for row in rows:
            target = values if row["metric"]["__name__"] == "telemetry_value" else qualities
            target.update(zip(row["timestamps"], row["values"], strict=True))
        merged = []
        for at_ms in sorted(qualities):
            if at_ms >= end * 1000:
                break  # the export's end is inclusive; a reading at midnight belongs to the next day
            good = qualities[at_ms] == GOOD and at_ms in values
            merged.append((at_ms / 1000.0, float(values[at_ms]) if good else math.nan))
        return merged

    def events(self, station: str, rule: str, start: float, end: float) -> list[StoredEvent]:
        selector = (f'{{__name__=~"event_(started|ended|escalation_h)",station="{_quote(station)}",'
                    f'rule="{_quote(rule)}"}}')
        updates: dict[tuple[str, int], dict[str, float]] = {}  # (event id, update time ms) -> field -> value
        for row in self._export(selector, start, end):
            name = row["metric"]["__name__"].removeprefix("event_")
            event_id = str(row["metric"].get("event", ""))
            for at_ms, value in zip(row["timestamps"], row["values"], strict=True):
                if at_ms < end * 1000:
                    updates.setdefault((event_id, at_ms), {})[name] = float(value)
        found: dict[tuple[str, float], StoredEvent] = {}
        for (event_id, at_ms), fields in sorted(updates.items(), key=lambda item: item[0][1]):
            started = fields.get("started")
            if started is None:
                continue
            key = (event_id, started)
            earlier = found.get(key)
            ended = fields.get("ended", earlier.ended if earlier is not None else None)
            escalation = max(fields.get("escalation_h", 0.0), earlier.escalation_h if earlier is not None else 0.0)
            found[key] = StoredEvent(event_id, started, ended, at_ms / 1000.0, escalation)
        return sorted(found.values(), key=lambda event: event.started)

    def _export(self, selector: str, start: float, end: float) -> list[dict]:  # type: ignore[type-arg]
        query = urllib.parse.urlencode({"match[]": selector, "start": f"{start:.3f}", "end": f"{end:.3f}"})
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=self._timeout_s) as reply:
                text = reply.read().decode()
        except (urllib.error.URLError, OSError) as exc:
            raise HistorianError(f"cannot read {self.url}: {getattr(exc, 'reason', exc)}") from None
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise HistorianError(f"{self.url} answered something that is not an export: {exc}") from None


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
