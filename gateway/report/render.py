"""A report in the three forms dispatch uses: a terminal table, CSV files, an offline HTML page.

The HTML page is one file with its plots embedded (matplotlib SVG), so it can be mailed to the
heating company or opened on a laptop without a network.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gateway.report.build import Report
from gateway.report.compliance import RoomDay


def _celsius(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _tier(row: RoomDay) -> str:
    return "" if row.tier is None else f"{row.tier.refund_pct:g} %"


def summary_lines(report: Report) -> list[tuple[str, str]]:
    """The season summary as (figure, value) pairs, the same in every form."""
    summary = report.summary
    compliance = summary.compliance
    lines = [
        ("station", f"{report.station} ({report.name})"),
        ("period", f"{report.start} to {report.end - dt.timedelta(days=1)} ({report.zone.key})"),
        ("heat used", "-" if summary.heat_gj is None else f"{summary.heat_gj:.1f} GJ"),
        ("heat per m²", "-" if summary.heat_gj_per_m2 is None else f"{summary.heat_gj_per_m2:.3f} GJ/m²"),
        ("comfort hours with every room warm",
         "-" if compliance is None else f"{summary.compliant_hours} of {summary.comfort_hours} ({100 * compliance:.2f} %)"),
    ]
    for refund, days in sorted(summary.refund_room_days.items()):
        lines.append((f"room-days refunded {refund:g} %", str(days)))
    if not summary.refund_room_days:
        lines.append(("room-days refunded", "0"))
    total_h = sum(event.duration_s for event in report.interruptions) / 3600
    lines.append(("supply interruptions", f"{len(report.interruptions)}, {total_h:.2f} h in all"))
    return lines


def interruption_rows(report: Report) -> list[tuple[str, str, str, str]]:
    """Each supply interruption as (started, ended, duration in hours, last escalation), local times;
    one still open at the last stored update says so instead of an end."""
    rows = []
    for event in report.interruptions:
        started = dt.datetime.fromtimestamp(event.started, report.zone).isoformat(timespec="seconds")
        ended = ("open" if event.ended is None
                 else dt.datetime.fromtimestamp(event.ended, report.zone).isoformat(timespec="seconds"))
        rows.append((started, ended, f"{event.duration_s / 3600:.2f}", f"{event.escalation_h:g}"))
    return rows


INTERRUPTION_COLUMNS = ("started", "ended", "duration_h", "escalated_h")


def print_report(report: Report, console: Console) -> None:
    """Summary, then the room-days that missed the contract (all of them with ``verbose``)."""
    table = Table(title="Season summary", show_header=False)
    for name, value in summary_lines(report):
        table.add_row(name, value)
    console.print(table)
    missed = [row for row in report.room_days if row.tier is not None or row.hours_below_night_c]
    rooms = Table(title=f"Room-days below the contract ({len(missed)} of {len(report.room_days)})")
    for column in ("day", "room", "lowest 06-21 h °C", "h < day target", "h < night floor", "refund"):
        rooms.add_column(column)
    for row in missed:
        rooms.add_row(str(row.day), row.room, _celsius(row.lowest_day_hour_c), str(row.hours_below_day_c),
                      str(row.hours_below_night_c), _tier(row))
    console.print(rooms)
    interruptions = Table(title=f"Supply interruptions ({len(report.interruptions)})")
    for column in INTERRUPTION_COLUMNS:
        interruptions.add_column(column)
    for row in interruption_rows(report):
        interruptions.add_row(*row)
    console.print(interruptions)


def write_csv(report: Report, directory: Path) -> list[Path]:
    """``rooms.csv`` (every room-day), ``summary.csv``, ``interruptions.csv`` and, when configured,
    ``first-week.csv``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    path = directory / "rooms.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["day", "room", "lowest_day_hour_c", "hours_below_day_c", "hours_below_night_c",
                         "hours_with_data", "refund_pct"])
        for row in report.room_days:
            writer.writerow([row.day.isoformat(), row.room, "" if row.lowest_day_hour_c is None else
                             f"{row.lowest_day_hour_c:.2f}", row.hours_below_day_c, row.hours_below_night_c,
                             row.hours_with_data, "" if row.tier is None else f"{row.tier.refund_pct:g}"])
    written.append(path)
    path = directory / "summary.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows([("figure", "value"), *summary_lines(report)])
    written.append(path)
    path = directory / "interruptions.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows([INTERRUPTION_COLUMNS, *interruption_rows(report)])
    written.append(path)
    if report.first_week:
        path = directory / "first-week.csv"
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["report_at", "hour", *report.first_week_tags])
            for hour in report.first_week:
                writer.writerow([hour.report_at.isoformat(), hour.hour.isoformat(),
                                 *("" if hour.means[tag] is None else f"{hour.means[tag]:.3f}"
                                   for tag in report.first_week_tags)])
        written.append(path)
    return written


def write_html(report: Report, path: Path) -> None:
    """One self-contained page: the summary, the rooms against the 18/16 °C lines, the room-days."""
    rows = "".join(
        f"<tr><td>{row.day}</td><td>{html.escape(row.room)}</td><td>{_celsius(row.lowest_day_hour_c)}</td>"
        f"<td>{row.hours_below_day_c}</td><td>{row.hours_below_night_c}</td><td>{_tier(row)}</td></tr>"
        for row in report.room_days)
    summary = "".join(f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
                      for name, value in summary_lines(report))
    interruptions = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                            for row in interruption_rows(report))
    interruption_head = "".join(f"<th>{column}</th>" for column in INTERRUPTION_COLUMNS)
    title = html.escape(f"heatgw report: {report.station}, {report.start} to {report.end - dt.timedelta(days=1)}")
    path.write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}</style></head>
<body><h1>{title}</h1>
<h2>Summary</h2><table>{summary}</table>
<h2>Supply interruptions</h2><table><tr>{interruption_head}</tr>{interruptions}</table>
<h2>Rooms</h2>{_rooms_svg(report)}
<h2>Supply against the curve</h2>{_supply_svg(report)}
<h2>Room-days</h2><table><tr><th>day</th><th>room</th><th>lowest 06-21 h °C</th><th>h &lt; day target</th>
<th>h &lt; night floor</th><th>refund</th></tr>{rows}</table>
</body></html>
""", encoding="utf-8")


def _rooms_svg(report: Report) -> str:
    """Hourly room means against the day target and the night floor, as inline SVG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10.0, 4.0), dpi=100)
    for room, means in sorted(report.rooms.items()):
        hours = sorted(means)
        ax.plot([dt.datetime.fromtimestamp(h, report.zone) for h in hours], [means[h] for h in hours], lw=1, label=room)
    for limit in sorted({rule.day_c for rule in report.rules.values()}):
        ax.axhline(limit, color="tab:orange", ls="--", lw=1, label=f"day target {limit:g} °C")
    for limit in sorted({rule.night_c for rule in report.rules.values()}):
        ax.axhline(limit, color="tab:red", ls="--", lw=1, label=f"floor {limit:g} °C")
    ax.set_ylabel("hourly mean, °C")
    ax.legend(fontsize="small", ncol=4)
    fig.autofmt_xdate()
    return _svg(fig, plt)


def _supply_svg(report: Report) -> str:
    """Each circuit's hourly supply temperature against outdoor, with the filed curve."""
    if not any(report.supply.values()):
        return "<p>No supply or outdoor temperature recorded in this period.</p>"
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.5), dpi=100)
    for circuit, points in sorted(report.supply.items()):
        outdoor = [point[0] for point in points]
        ax.scatter(outdoor, [point[1] for point in points], s=6, label=f"{circuit}: supply, hourly mean")
        order = sorted(range(len(points)), key=lambda i: outdoor[i])
        ax.plot([outdoor[i] for i in order], [points[i][2] for i in order], lw=2, label=f"{circuit}: curve")
    ax.set_xlabel("outdoor, °C")
    ax.set_ylabel("supply, °C")
    ax.legend(fontsize="small")
    return _svg(fig, plt)


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend (the report runs without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any, plt: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]
