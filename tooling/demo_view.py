"""The demo's live view: what the gateway reads, what the controller decided and why, what got out.

Everything on screen comes from the gateway's own state (latest values with their quality, the
pollers' counters, the MQTT session, the controller's published ``ControllerState``), never from
the simulator, so the view shows what an operator at the station would see. Times are the
simulation's, in the station's time zone, because the comfort schedule (day from 06:00, the night
coast, the morning boost) is local time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from rich.console import Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from drivers.base import Quality
from gateway.app import Gateway
from gateway.control.model import CircuitState, ControllerState, LimiterState
from gateway.latest import LatestValues
from gateway.samples import Sample

UNIT_SPELLING = {"degC": "°C", "degc": "°C", "C": "°C", "m3/h": "m³/h", "m3": "m³"}
"""One spelling for units on screen, whatever a station file writes."""

COMPACT_BELOW_LINES = 44  # a terminal shorter than this gets the compact view (it fits 80 x 24)


def display_unit(unit: str) -> str:
    return UNIT_SPELLING.get(unit, unit)


def room_sensors(gateway: Gateway) -> list[tuple[str, str, str | None]]:
    """``(room, temperature tag, sensor-age tag)`` of each representative room the controller reads."""
    if gateway.controller is None:
        return []
    return [(room, sensor.temp_tag, sensor.age_tag)
            for circuit in gateway.controller.settings.circuits.values() for room, sensor in circuit.rooms.items()]


def station_rows(gateway: Gateway) -> list[tuple[str, str]]:
    """``(label, tag)`` for the station table, built from the configuration the gateway runs: the
    tags the controller reads and writes first (outdoor, supply, setpoint, limiters), then every
    other tag in the order of the station file; the rooms have their own table."""
    rooms = {tag for _room, temp, age in room_sensors(gateway) for tag in (temp, age) if tag is not None}
    first = list(gateway.controller.settings.tags()) if gateway.controller is not None else []
    known = gateway.config.tags()
    ordered = [tag for tag in dict.fromkeys([*first, *known]) if tag not in rooms and tag in known]
    return [(tag.replace("_", " ").capitalize(), tag) for tag in ordered]


PHASES = {
    "day": "[green]day[/]: rooms held at the day target",
    "coast": "[blue]night coast[/]: supply cut, the rooms cool on their own inertia",
    "night": "[blue]night[/]: holding the night floor",
    "preheat": "[magenta]morning boost[/]: maximum supply to be warm by the day start",
}


@dataclass
class DemoState:
    """What the screen and the final summary need besides the gateway's own state."""

    cycles: int = 0
    writes: int = 0
    last_written: tuple[float, float] | None = None  # (value, simulated time)
    stored_points: int | None = None
    stored_states: int | None = None

    def count(self, state: ControllerState) -> None:
        """Account for one published controller cycle."""
        self.cycles += 1
        for circuit in state.circuits:
            if circuit.written_c is not None:
                self.writes += 1
                self.last_written = (circuit.written_c, state.timestamp)


def good_number(sample: Sample | None) -> float | None:
    """The sample's value if it is a good number, else None."""
    if sample is None or sample.quality is not Quality.GOOD or not isinstance(sample.value, int | float):
        return None
    return float(sample.value)


def render(gateway: Gateway, state: DemoState, sim_now: float, height: int | None = None) -> Group:
    """The live view: station values, rooms, devices, the controller, the alarms, the dispatch side.

    A terminal shorter than ``COMPACT_BELOW_LINES`` gets the compact view: as many station values
    as fit, the controller in a few lines, the most urgent alarms and one line of the dispatch side.
    """
    zone = ZoneInfo(gateway.config.station.timezone)
    title = f"{gateway.config.station.name}  (simulated time {_local(sim_now, zone, '%Y-%m-%d %H:%M %Z')})"
    controller = gateway.controller.state if gateway.controller is not None else None
    if height is not None and height < COMPACT_BELOW_LINES:
        return _compact(gateway, state, title, controller, sim_now, height)
    readings = Table.grid(expand=True)  # side by side, so the whole view fits a 40-line terminal
    readings.add_column(ratio=1)
    readings.add_column(ratio=1)
    rows = FULL_STATION_ROWS if height is None else max(FULL_STATION_ROWS, height - FULL_FIXED_LINES)
    readings.add_row(_station(gateway, title, rows), Group(_rooms(gateway), _devices(gateway)))
    return Group(readings, controller_panel(controller, state, zone), alarm_panel(gateway, sim_now),
                 _dispatch(gateway, state))


FULL_STATION_ROWS = 14  # the station table's rows when the height is unknown or small
FULL_FIXED_LINES = 36  # the controller, alarm and dispatch panels and the table's own frame


COMPACT_FIXED_LINES = 13  # title, controller (3 + borders), alarms (3 + borders), dispatch line, margin


def _compact(gateway: Gateway, state: DemoState, title: str, controller: ControllerState | None, now: float,
             height: int) -> Group:
    values = Table.grid(expand=True, padding=(0, 1))
    for _ in range(2):
        values.add_column(ratio=3, no_wrap=True, overflow="ellipsis")
        values.add_column(ratio=2, justify="right", no_wrap=True)
    tags = gateway.config.tags()
    cells = [(label, _compact_cell(gateway.latest, tag, tags[tag][1].unit)) for label, tag in station_rows(gateway)]
    rooms = room_sensors(gateway)
    capacity = 2 * max(2, height - COMPACT_FIXED_LINES - len(controller.circuits if controller else ()) - bool(rooms))
    shown = cells[:capacity]
    if len(cells) > capacity:
        shown[-1] = ("", f"[dim]+{len(cells) - capacity + 1} more")
    for left, right in zip(shown[::2], [*shown[1::2], ("", "")], strict=False):
        values.add_row(left[0], left[1], right[0], right[1])
    heading = [f"[bold]{escape(title)}[/]"] + ([f"Coldest room: {_coldest_room(gateway, rooms)}"] if rooms else [])
    return Group(*heading, values, _compact_controller(controller, state),
                 alarm_panel(gateway, now, rows=3), _dispatch_line(gateway, state))


def _compact_cell(latest: LatestValues, tag: str, unit: str) -> str:
    reading, quality = _cells(latest, tag, display_unit(unit))
    return reading if "good" in quality else f"{reading} {quality}"


def _coldest_room(gateway: Gateway, rooms: list[tuple[str, str, str | None]]) -> str:
    readings = [(value, room) for room, temp, _age in rooms if (value := good_number(gateway.latest.get(temp))) is not None]
    if not readings:
        return "[yellow]no valid room"
    value, room = min(readings)
    colour = "red" if value < 16 else "yellow" if value < 18 else "green"
    return f"[{colour}]{value:.1f} °C[/] in {escape(room)} ({len(readings)} of {len(rooms)} rooms reporting)"


def _compact_controller(state: ControllerState | None, demo: DemoState) -> Panel:
    if state is None:
        return Panel("[yellow]waiting for the first cycle", title="Supply-curve controller")
    signals = ", ".join(f"[yellow]{signal.value}[/]" for signal in state.signals) or "[green]no signal"
    lines = [f"{state.season.value}, outdoor {state.outdoor_c:.1f} °C from {state.outdoor_source.value}; "
             f"{demo.writes} writes in {demo.cycles} cycles; {signals}"]
    for c in state.circuits:
        written = "-" if c.written_c is None else f"{c.written_c:.1f} °C"
        lines.append(f"[bold]{escape(c.circuit)}[/] {PHASES.get(c.phase, c.phase).split(':')[0]}: curve {c.curve_c:.1f}, "
                     f"decided {c.setpoint_c:.1f}, written {written} {escape(c.write_status)}")
    return Panel("\n".join(lines), title="Supply-curve controller")


def _dispatch_line(gateway: Gateway, state: DemoState) -> str:
    online = sum(1 for device in gateway.devices.values() if device.online)
    devices = f"devices {online}/{len(gateway.devices)} online"
    if gateway.mqtt is None:
        return f"{devices}; MQTT off"
    link = "[green]connected[/]" if gateway.mqtt.publisher.connected.is_set() else "[red]disconnected[/]"
    points = "?" if state.stored_points is None else f"{state.stored_points:,}"
    return (f"{devices}; MQTT {link}, seq {gateway.mqtt.outbox.last_seq}; historian {points} points  "
            "[dim]Ctrl-C stops")


def _station(gateway: Gateway, title: str, rows: int) -> Table:
    table = Table(title=title, expand=True)
    for column in ("Value", "Reading", "Quality"):
        table.add_column(column, justify="right" if column == "Reading" else "left", no_wrap=True,
                         overflow="ellipsis")
    tags = gateway.config.tags()
    listed = station_rows(gateway)
    for label, tag in listed[:rows]:
        table.add_row(label, *_cells(gateway.latest, tag, display_unit(tags[tag][1].unit)))
    if len(listed) > rows:
        table.add_row(f"[dim]+{len(listed) - rows} more", "", "")
    return table


def _rooms(gateway: Gateway) -> Table:
    table = Table(title="Representative rooms (the controller's)", expand=True)
    for column in ("Room", "Temperature", "Sensor age", "Quality"):
        table.add_column(column)
    latest = gateway.latest
    for room, temp, age_tag in room_sensors(gateway):
        age = good_number(latest.get(age_tag)) if age_tag is not None else None
        age_text = "-" if age is None else f"{age / 60:.0f} min"
        reading, quality = _cells(latest, temp, "°C")
        table.add_row(escape(room), reading, age_text, quality)
    return table


def _devices(gateway: Gateway) -> Table:
    table = Table(title="Devices", expand=True)
    for column in ("Device", "State", "Polls", "Requests", "Failures"):
        table.add_column(column)
    for name, device in gateway.devices.items():
        online = {True: "[green]online", False: "[red]lost", None: "[yellow]connecting"}[device.online]
        table.add_row(name, online, str(device.stats.polls), str(device.stats.requests), str(device.stats.failures))
    return table


def controller_panel(state: ControllerState | None, demo: DemoState, zone: ZoneInfo) -> Panel:
    """Why the setpoint is what it is, in the order of the cycle (docs: controller/index.md, "One cycle")."""
    if state is None:
        return Panel("[yellow]waiting for the first cycle", title="Supply-curve controller")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    outdoor_raw = "-" if state.outdoor_raw_c is None else f"{state.outdoor_raw_c:.1f} °C"
    rejected = f" [red](sensor rejected: {escape(state.outdoor_fault)})[/]" if state.outdoor_fault else ""
    grid.add_row("Season", f"{state.season.value} ({escape(state.season_reason)})")
    grid.add_row("Outdoor", f"raw {outdoor_raw}, in use {state.outdoor_c:.1f} °C from {state.outdoor_source.value}{rejected}")
    for circuit in state.circuits:
        _circuit_rows(grid, circuit)
    last = "none yet" if demo.last_written is None else \
        f"last {demo.last_written[0]:.1f} °C at {_local(demo.last_written[1], zone, '%H:%M')}"
    grid.add_row("Writes", f"{demo.writes} in {demo.cycles} cycles, {last}")
    signals = ", ".join(f"[yellow]{signal.value}[/]" for signal in state.signals) or "[green]none"
    grid.add_row("Signals", signals)
    return Panel(grid, title="Supply-curve controller")


ALARM_ROWS = 5  # the most urgent; the rest are counted, so the view still fits a 40-line terminal
PRIORITY_COLOURS = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}


def alarm_panel(gateway: Gateway, now: float, rows: int = ALARM_ROWS) -> Panel:
    """The alarm list (most urgent first: priority, state, age on the alarms' clock, message) and
    the open station events; ``rows`` alarms at most, the rest counted."""
    alarms = gateway.alarms.engine.open_alarms()
    lines = []
    for transition in alarms[:rows]:
        record = transition.record
        colour = PRIORITY_COLOURS[transition.priority.value]
        age = _age(now - (record.activated if record.activated is not None else record.changed))
        lines.append(f"[{colour}]{transition.priority.value:<8}[/] {record.state.value:<12} {age:>6}  "
                     f"{escape(record.id)}: {escape(transition.message)}")
    if len(alarms) > rows:
        lines.append(f"[dim]and {len(alarms) - rows} more")
    events = gateway.alarms.events.open_events if gateway.alarms.events is not None else []
    if events:
        lines.append("Events: " + ", ".join(
            f"[yellow]{escape(e.id)}[/] {_age(now - e.started)}" + (f" (past {e.escalation_h:g} h)" if e.escalation_h else "")
            for e in events))
    if not lines:
        return Panel("[green]no open alarm, no open event", title="Alarms")
    # One line each, cut at the panel's edge: the list must keep its height (the full text is in the log).
    return Panel(Group(*map(_one_line, lines)), title="Alarms")


def _one_line(markup: str) -> Text:
    text = Text.from_markup(markup, overflow="ellipsis")
    text.no_wrap = True
    return text


def _age(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _circuit_rows(grid: Table, c: CircuitState) -> None:
    room = "no valid room" if c.room_used_c is None else f"{c.room_used_name} {c.room_used_c:.1f} °C"
    grid.add_row(f"Circuit {c.circuit}", f"{escape(c.curve)}: {'' if c.heating else '[yellow]'}{escape(c.reason)}")
    grid.add_row("Comfort", f"{PHASES.get(c.phase, c.phase)}; floor {c.room_floor_c:.2f} °C, "
                            f"coldest room {room} ({c.rooms_valid}/{c.rooms_total} valid)")
    grid.add_row("Curve", f"{c.curve_c:.1f} °C, read at {c.outdoor_curve_c:.1f} °C "
                          f"(actual and damped outdoor; damped {c.outdoor_damped_c:.1f} °C)")
    grid.add_row("Room trim", f"{c.trim_k:+.2f} K supply for {c.trim_room_k:+.2f} K room "
                              f"(learned {c.trim_integral_k:+.2f} K), boost heat-up {c.heatup_k_per_h:.2f} K/h")
    offset = "none" if c.offset_k == 0 else f"{c.offset_k:+.1f} K from {escape(c.offset_origin)}"
    grid.add_row("Dispatch offset", offset)
    grid.add_row("Limiters", ", ".join(_limiter(limiter) for limiter in c.limiters) or "none configured")
    held = [word for word, on in ((f"clamped at {c.clamped}", bool(c.clamped)), ("ramp-limited", c.ramp_limited)) if on]
    written = "-" if c.written_c is None else f"{c.written_c:.1f} °C"
    colour = "red" if c.write_status.startswith(("refused", "failed")) else "green" if c.write_status == "written" else "dim"
    grid.add_row("Setpoint", f"decided {c.setpoint_c:.2f} °C{' (' + ', '.join(held) + ')' if held else ''}, "
                             f"written {written} [{colour}]{escape(c.write_status)}[/]")


def _limiter(limiter: LimiterState) -> str:
    name = limiter.name.removesuffix("_limit")
    if limiter.fault:
        return f"{name} [red]dropped: {escape(limiter.fault)}[/]"
    measured = "-" if limiter.measured is None else f"{limiter.measured:.1f}"
    text = f"{name} {measured} (line {limiter.limit:.1f}): -{limiter.reduction_k:.1f} K"
    return f"[red]{text}[/]" if limiter.active else text


def _dispatch(gateway: Gateway, state: DemoState) -> Panel:
    text = "MQTT off"
    if gateway.mqtt is not None:
        link = "[green]connected" if gateway.mqtt.publisher.connected.is_set() else "[red]disconnected"
        points = "?" if state.stored_points is None else f"{state.stored_points:,}"
        states = "?" if state.stored_states is None else f"{state.stored_states:,}"
        text = (f"MQTT {link}[/]  last sequence number {gateway.mqtt.outbox.last_seq}, "
                f"acknowledged {gateway.mqtt.publisher.published_messages}   "
                f"historian: {points} telemetry points, {states} controller states stored")
    return Panel(text, title="Dispatch side", subtitle="[dim]Ctrl-C stops")


def _cells(latest: LatestValues, tag: str, unit: str) -> tuple[str, str]:
    sample = latest.get(tag)
    if sample is None:
        return "-", "[yellow]waiting"
    colour = {Quality.GOOD: "green", Quality.STALE: "yellow", Quality.BAD: "red"}[sample.quality]
    value = "-" if sample.value is None else (f"{sample.value:.2f}" if isinstance(sample.value, float) else str(sample.value))
    label = sample.quality.value + (f" ({sample.reason})" if sample.reason else "")
    return f"{value} {unit}", f"[{colour}]{label}"


def _local(timestamp: float, zone: ZoneInfo, pattern: str) -> str:
    return datetime.fromtimestamp(timestamp, zone).strftime(pattern)
