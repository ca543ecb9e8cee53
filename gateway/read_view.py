"""How ``heatgw read`` prints a poll: one plain-text table per device, columns aligned.

Plain text rather than a rich table: the output goes into tickets, chat and commissioning
reports, and is read in terminals of every width, so nothing may be wrapped or cut.
"""

from __future__ import annotations

from collections.abc import Sequence

from drivers.base import Quality
from gateway.acquisition.reading import DeviceReading, TagReading


def render(readings: Sequence[DeviceReading], *, raw: bool = False) -> list[str]:
    """The lines for one poll of ``readings``; ``raw`` adds the registers in hex."""
    lines: list[str] = []
    for reading in readings:
        if not reading.answered:
            lines.append(f"{reading.device} ({reading.link}): NO ANSWER: {reading.reason}")
            continue
        lines.append(f"{reading.device} ({reading.link}): answered")
        header = ["tag", "address", *(["raw"] if raw else []), "value", "quality", "reason"]
        rows = [[t.tag, t.where, *([t.raw] if raw else []), value_text(t), t.quality.value, _remark(t)]
                for t in reading.tags]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
        for row in [header, *rows]:
            lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
                         + "  " + row[-1])
        lines[-len(rows) - 1:] = [line.rstrip() for line in lines[-len(rows) - 1:]]
        if reading.hint:
            lines.append(f"  HINT: {reading.hint}")
    return lines


def value_text(reading: TagReading) -> str:
    """``72.5 degC``, ``true``, or ``-`` when there is no value."""
    value = reading.value
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = f"{value:.7g}" if isinstance(value, float) else str(value)
    return f"{text} {reading.unit}" if reading.unit else text


def _remark(reading: TagReading) -> str:
    parts = [reading.reason] if reading.quality is not Quality.GOOD and reading.reason else []
    if reading.hint:
        parts.append(f"HINT: {reading.hint}")
    return "; ".join(parts)
