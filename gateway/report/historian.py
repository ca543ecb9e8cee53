"""Reading a station's recorded series back from the historian, for reports.

The bridge writes telemetry as the ``telemetry`` measurement with ``value`` and ``quality``
fields, tagged by station and tag (README, "Historian schema"); a numbers-only database such as
VictoriaMetrics names them ``telemetry_value`` and ``telemetry_quality``. A sample whose quality
is not good carries no value: in the series handed to the report it is a NaN, which ends the
previous value's hold (the time-weighted means treat it as a hole, never as a reading).
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from typing import Protocol

from gateway.historian.schema import QUALITY_CODES
from gateway.report.compliance import Series

GOOD = QUALITY_CODES["g"]


class HistorianError(Exception):
    """The historian could not be read; ``str()`` says why in an operator's words."""


class Historian(Protocol):
    def series(self, station: str, tag: str, start: float, end: float) -> Series:
        """Samples of ``tag`` in ``[start, end)``, good ones with their value, others as NaN."""
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
