"""The ``heatgw`` command: one entry point for operators, systemd units and the demo."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from gateway.control.curve_cli import POINT_COLUMNS, curve_command
from gateway.control.loader import load_controller_config, load_curve
from gateway.control.settings import ControllerConfig
from gateway.config import GatewayConfig
from gateway.logs import LogLevel, setup_logging
from gateway.preflight import load_startup
from gateway.yaml_source import ConfigError, load_yaml
from gateway.historian.cli import app as historian_app

TOOLING_COMMANDS = ("demo", "sim")


class _WithTooling(TyperGroup):
    """The production commands, plus ``demo`` and ``sim`` from the tooling package, imported only when
    one of them is named (or help lists them): ``heatgw run``, ``check`` and ``read`` load no demo
    module and nothing of the simulator. This is the production code's one import of ``tooling``."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return [*super().list_commands(ctx), *TOOLING_COMMANDS]

    def get_command(self, ctx: typer.Context, cmd_name: str) -> TyperCommand | TyperGroup | None:  # type: ignore[override]
        if cmd_name in TOOLING_COMMANDS:
            from tooling.cli import command

            return command(cmd_name)
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="heatgw",
    cls=_WithTooling,
    help="SCADA edge gateway for district-heating heat-exchange stations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(historian_app, name="historian", help="Bridge station telemetry from MQTT into an InfluxDB-API database.")
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

EXIT_INVALID_CONFIG = 2
EXIT_NO_ANSWER = 1
DEFAULT_STATION = Path("/etc/heatgw/station.yaml")
T = TypeVar("T")


def _print_version(wanted: bool) -> None:
    if wanted:
        console.print(f"heatgw {version('heatgw')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    log_level: Annotated[LogLevel, typer.Option(case_sensitive=False, help="how much to log (to stderr)")] = LogLevel.info,
    show_version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                               help="print the version and exit")] = False,
) -> None:
    """Set up structured logging before any subcommand runs."""
    setup_logging(log_level.value)


@app.command()
def check(
    files: Annotated[list[Path] | None, typer.Argument(
        metavar="FILE", help="station, controller, curve or historian YAML files, recognised by their content")] = None,
    config: Annotated[Path | None, typer.Option(help="the station file, as `heatgw run --config` takes it")] = None,
    controller: Annotated[Path | None, typer.Option(
        help="controller settings, as `heatgw run --controller` takes them (needs --config)")] = None,
    state_dir: Annotated[Path | None, typer.Option(
        help="the state directory, as `heatgw run --state-dir` takes it: writable by the user running the check "
             "(needs --config)")] = None,
) -> None:
    """Validate configuration files without running anything (exit 2 if any is invalid).

    `heatgw check --config S --controller C` checks exactly what `heatgw run --config S --controller C`
    starts with, and reports the same problems in the same words: the files themselves, the
    controller's tags against the station's (known, and writable where written), its curve files,
    and the password and certificate files the station names (readable by the user running the check),
    and with --state-dir that directory (writable by that user).

    Files given by name: one with a top-level `curve:` key is a heating curve, one with
    `controller:` and no `devices:` controller settings (checked against the station's tags when
    one station file is given with it), one with `influxdb:` historian settings, anything else a
    station configuration.
    """
    if controller is not None and config is None:
        raise typer.BadParameter("--controller is checked against a station: give --config too", param_hint="--controller")
    if state_dir is not None and config is None:
        raise typer.BadParameter("--state-dir is checked with a station: give --config too", param_hint="--state-dir")
    stations, controllers = ([config] if config is not None else []), ([controller] if controller is not None else [])
    problems: list[str] = []
    for path in files or []:
        kind = _guarded(problems, path, _kind_of, path)
        if kind == "station":
            stations.append(path)
        elif kind == "controller":
            controllers.append(path)
        elif kind is not None:
            _guarded(problems, path, _check_one, path, kind)
    if not stations and not controllers and not files:
        raise typer.BadParameter("name the files to check, or give --config", param_hint="FILES")
    pairs = [(station, c) for station in stations for c in (controllers or [None])] if len(stations) == 1 else \
        [(station, None) for station in stations] + [(None, c) for c in controllers]
    for station, paired in pairs:
        path = station or paired
        assert path is not None
        _guarded(problems, path, _check_startup, station, paired, state_dir if station == config else None)
    for message in dict.fromkeys(problems):  # a station checked with two controller files: its problems once
        errors.print(message, markup=False, highlight=False)
    if problems:
        raise typer.Exit(EXIT_INVALID_CONFIG)


def _guarded(problems: list[str], path: Path, step: Callable[..., T], *args: object) -> T | None:
    """One check; its ConfigError (or a bug in it, reported as such, never as a traceback) noted."""
    try:
        return step(*args)
    except ConfigError as exc:
        problems.extend(exc.messages)
    except Exception as exc:  # noqa: BLE001 - a bug in a check is still no reason for a traceback
        problems.append(f"{path}: cannot check: internal error {type(exc).__name__}: {exc} (please report)")
    return None


def _report_ok(path: Path, description: str) -> None:
    console.print(f"[green]ok[/green] {path}: {description}", highlight=False)


def _kind_of(path: Path) -> str:
    """What a file holds, by its top-level keys."""
    top = load_yaml(path).data
    top = top if isinstance(top, dict) else {}
    if "curve" in top:
        return "curve"
    if "influxdb" in top and "devices" not in top:
        return "historian"
    if "controller" in top and "devices" not in top:
        return "controller"
    return "station"


def _check_one(path: Path, kind: str) -> None:
    """Validate a curve or historian file and say in a few words what it holds."""
    if kind == "curve":
        heating_curve = load_curve(path)
        _report_ok(path, f"curve {heating_curve.name!r} v{heating_curve.version} ({heating_curve.circuit}, {heating_curve.date})")
        return
    from gateway.historian.settings import load_historian_settings

    _report_ok(path, f"historian {load_historian_settings(path).instance!r}")


def _check_startup(station_path: Path | None, controller_path: Path | None, state_dir: Path | None = None) -> None:
    """A station (with its controller) as `heatgw run` loads it, or a controller file on its own."""
    if station_path is None:
        assert controller_path is not None
        _report_ok(controller_path, _describe_controller(load_controller_config(controller_path)))
        return
    startup = load_startup(station_path, controller_path, state_dir)
    config = startup.station
    tag_count = sum(len(device.tags) for device in config.devices.values())
    described = f"station {config.station.id!r}: {len(config.devices)} devices, {tag_count} tags, {len(config.groups)} groups"
    if startup.controller is not None and startup.controller_path == station_path:
        described += "; " + _describe_controller(startup.controller)
    _report_ok(station_path, described)
    if startup.controller is not None and startup.controller_path != station_path:
        _report_ok(controller_path or station_path, _describe_controller(startup.controller) + f", tags of {station_path}")


def _describe_controller(controller: ControllerConfig) -> str:
    return "controller: " + ", ".join(f"{name} on {c.identity}" for name, c in controller.curves.items())


@app.command()
def report(
    historian: Annotated[str, typer.Option(help="the historian's URL (VictoriaMetrics, e.g. http://127.0.0.1:8428)")],
    start: Annotated[str, typer.Option("--from", help="first local day, YYYY-MM-DD")],
    end: Annotated[str, typer.Option("--to", help="last local day, YYYY-MM-DD (included)")],
    config: Annotated[Path, typer.Option(help="the station file")] = DEFAULT_STATION,
    controller: Annotated[Path | None, typer.Option(
        help="controller settings: the rooms and comfort contract (default: the station file's controller: section)")] = None,
    csv_dir: Annotated[Path | None, typer.Option("--csv", help="write rooms.csv, summary.csv, first-week.csv here")] = None,
    html_file: Annotated[Path | None, typer.Option("--html", help="write a self-contained HTML page with plots")] = None,
) -> None:
    """Report what the regulations count: each room's daily compliance and refund tier, the season
    summary (heat, GJ/m², comfort share, refund room-days) and the first-week hourly report."""
    import datetime as dt

    from gateway.config import load_gateway_config
    from gateway.report.build import build_report
    from gateway.report.historian import HistorianError, VictoriaMetricsHistorian
    from gateway.report.render import print_report, write_csv, write_html

    try:
        first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    except ValueError as exc:
        errors.print(f"--from/--to: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID_CONFIG) from None
    if last < first:
        errors.print("--to is before --from", markup=False)
        raise typer.Exit(EXIT_INVALID_CONFIG)
    try:
        station = load_gateway_config(config)
        controller_path = controller or (config if station.controller is not None else None)
        if controller_path is None:
            raise ConfigError([f"{config}: no controller section and no --controller: the report needs the rooms"])
        settings = load_controller_config(controller_path)
    except ConfigError as exc:
        for message in exc.messages:
            errors.print(message, markup=False, highlight=False)
        raise typer.Exit(EXIT_INVALID_CONFIG) from None
    try:
        result = build_report(station, settings, VictoriaMetricsHistorian(historian), first,
                              last + dt.timedelta(days=1))
    except HistorianError as exc:
        errors.print(f"historian: {exc}", markup=False)
        raise typer.Exit(1) from None
    print_report(result, console)
    if csv_dir is not None:
        for path in write_csv(result, csv_dir):
            console.print(f"wrote {path}", highlight=False)
    if html_file is not None:
        write_html(result, html_file)
        console.print(f"wrote {html_file}", highlight=False)


@app.command()
def run(
    config: Annotated[Path, typer.Option(help="station configuration file")] = DEFAULT_STATION,
    state_dir: Annotated[Path, typer.Option(help="writable directory for the MQTT outbox, the controller's memory and its operating points")] = Path("/var/lib/heatgw"),
    controller: Annotated[Path | None, typer.Option(
        help="controller settings (default: the station file's own controller: section, if any)")] = None,
) -> None:
    """Run the gateway until SIGTERM: poll, control, serve writes, send telemetry over MQTT.

    SIGHUP (systemctl reload heatgw) re-reads the station file and the controller settings and
    curves, checked as `heatgw check` checks them, and applies what changed: devices, tags, poll
    groups, alarms, events, report and controller; unchanged devices poll on without a pause.
    A file with any problem, or one that changes station:, mqtt: or metrics: (those need a
    restart), is refused whole and the running configuration stays in force.
    """
    from gateway.app import run_until_signalled

    try:
        asyncio.run(run_until_signalled(config, state_dir, controller))
    except ConfigError as exc:
        for message in exc.messages:
            errors.print(message, markup=False, highlight=False)
        raise typer.Exit(EXIT_INVALID_CONFIG) from None


@app.command()
def read(
    file: Annotated[Path | None, typer.Argument(metavar="CONFIG", help="the station file (or give --config)")] = None,
    config: Annotated[Path, typer.Option(help="the station file, as `heatgw run --config` takes it")] = DEFAULT_STATION,
    device: Annotated[list[str] | None, typer.Option(metavar="NAME", help="read only this device (repeatable)")] = None,
    tag: Annotated[list[str] | None, typer.Option(metavar="NAME", help="read only this tag (repeatable)")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="also show the registers (or bits) each value came from, in hex")] = False,
    count: Annotated[int, typer.Option(min=1, max=10_000, help="poll this many times")] = 1,
    interval: Annotated[float, typer.Option(min=0.0, max=3600.0, help="seconds between polls")] = 1.0,
) -> None:
    """Poll each device once (or --count times) and print every value as the gateway would publish
    it: tag, address, value with unit, quality and reason, and a HINT where a 32/64-bit value reads
    like its words are swapped (`looks like word_order: little`). Writes nothing.

    Exit 1 when a device does not answer, 2 on a configuration error.
    """
    import time as wall

    from gateway.config import load_gateway_config
    from gateway.protocols import read_devices
    from gateway.read_view import render

    if file is not None and config != DEFAULT_STATION and file != config:
        raise typer.BadParameter(f"two files given: {file} and --config {config}", param_hint="CONFIG")
    try:
        station = _selected(load_gateway_config(file or config), device or [], tag or [])
    except ConfigError as exc:
        for message in exc.messages:
            errors.print(message, markup=False, highlight=False)
        raise typer.Exit(EXIT_INVALID_CONFIG) from None
    silent = False
    for poll in range(count):
        if poll:
            wall.sleep(interval)
        readings = asyncio.run(read_devices(station.devices, station.groups))
        if count > 1:
            console.print(f"poll {poll + 1} of {count}", highlight=False)
        for line in render(readings, raw=raw):
            console.print(line, markup=False, highlight=False)
        silent = silent or not all(reading.answered for reading in readings)
    if silent:
        raise typer.Exit(EXIT_NO_ANSWER)


def _selected(station: GatewayConfig, devices: list[str], tags: list[str]) -> GatewayConfig:
    """The station with only the named devices and tags (all when none are named)."""
    unknown = [f"unknown device {name!r} (devices: {', '.join(station.devices)})"
               for name in devices if name not in station.devices]
    owners = station.tags()
    unknown += [f"unknown tag {name!r}" for name in tags if name not in owners]
    if unknown:
        raise ConfigError(unknown)
    kept = {}
    for name, config in station.devices.items():
        if devices and name not in devices:
            continue
        wanted = {tag: cfg for tag, cfg in config.tags.items() if not tags or tag in tags}
        if wanted:
            kept[name] = config.model_copy(update={"tags": wanted})
    return station.model_copy(update={"devices": kept})


@app.command()
def curve(
    file: Annotated[Path, typer.Argument(help="heating curve file")],
    png: Annotated[Path | None, typer.Option(help="draw the curve into this PNG")] = None,
    points: Annotated[Path | None, typer.Option(
        help=f"CSV of operating points to draw: columns {' and '.join(POINT_COLUMNS)} (a circuit column, if any, "
             "selects the curve's circuit; <state-dir>/operating-points.csv has them)")] = None,
) -> None:
    """Print a heating curve as a table, and draw it with its limits and operating points
    (--png needs matplotlib, which the `plot` extra installs: pip install '/path/to/heatgw[plot]')."""

    raise typer.Exit(curve_command(file, png, points))


def main() -> None:
    """Entry point for ``python -m gateway``."""
    app()
