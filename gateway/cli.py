"""The ``heatgw`` command: one entry point for operators, systemd units and the demo."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gateway.config import check_gateway_document
from gateway.curves import CurveFile
from gateway.logs import setup_logging
from gateway.validation import validate_document
from gateway.yaml_source import ConfigError, load_yaml
from gateway.historian.cli import app as historian_app
from sim.cli import app as sim_app

app = typer.Typer(
    name="heatgw",
    help="SCADA edge gateway for district-heating heat-exchange stations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(sim_app, name="sim", help="Run the simulated station and inject faults into it.")
app.add_typer(historian_app, name="historian", help="Bridge station telemetry from MQTT into an InfluxDB-API database.")
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

EXIT_INVALID_CONFIG = 2


@app.callback()
def _root(
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Set up structured logging before any subcommand runs."""
    setup_logging(log_level)


@app.command()
def check(
    files: Annotated[list[Path], typer.Argument(help="station or curve YAML files to validate")],
) -> None:
    """Validate configuration files without running anything (exit 2 if any is invalid).

    A file with a top-level ``curve:`` key is checked as a heating curve, one with ``controller:``
    and no ``devices:`` as controller settings (with its curves), one with ``influxdb:`` as
    historian settings, anything else as a station configuration.
    """
    failed = False
    for path in files:
        try:
            console.print(f"[green]ok[/green] {path}: {_check_one(path)}", highlight=False)
        except ConfigError as exc:
            failed = True
            for message in exc.messages:
                errors.print(message, markup=False, highlight=False)
        except Exception as exc:  # noqa: BLE001 - a bug in a check is still no reason for a traceback
            failed = True
            errors.print(f"{path}: cannot check: internal error {type(exc).__name__}: {exc} (please report)",
                         markup=False, highlight=False)
    if failed:
        raise typer.Exit(EXIT_INVALID_CONFIG)


def _check_one(path: Path) -> str:
    """Validate one file and describe what it holds in a few words."""
    document = load_yaml(path)
    top = document.data if isinstance(document.data, dict) else {}
    if "curve" in top:
        heating_curve = validate_document(document, CurveFile).curve
        return f"curve {heating_curve.name!r} v{heating_curve.version} ({heating_curve.circuit}, {heating_curve.date})"
    if "influxdb" in top and "devices" not in top:
        from gateway.historian.settings import load_historian_settings

        historian = load_historian_settings(path)
        return f"historian {historian.instance!r}"
    if "controller" in top and "devices" not in top:
        from gateway.control.loader import load_controller_config

        controller = load_controller_config(path)
        return "controller: " + ", ".join(f"{name} on {c.identity}" for name, c in controller.curves.items())
    config = check_gateway_document(document)
    tag_count = sum(len(device.tags) for device in config.devices.values())
    return f"station {config.station.id!r}: {len(config.devices)} devices, {tag_count} tags, {len(config.groups)} groups"


@app.command()
def report(
    historian: Annotated[str, typer.Option(help="the historian's URL (VictoriaMetrics, e.g. http://127.0.0.1:8428)")],
    start: Annotated[str, typer.Option("--from", help="first local day, YYYY-MM-DD")],
    end: Annotated[str, typer.Option("--to", help="last local day, YYYY-MM-DD (included)")],
    config: Annotated[Path, typer.Option(help="the station file")] = Path("/etc/heatgw/station.yaml"),
    controller: Annotated[Path | None, typer.Option(
        help="controller settings: the rooms and comfort contract (default: the station file's controller: section)")] = None,
    csv_dir: Annotated[Path | None, typer.Option("--csv", help="write rooms.csv, summary.csv, first-week.csv here")] = None,
    html_file: Annotated[Path | None, typer.Option("--html", help="write a self-contained HTML page with plots")] = None,
) -> None:
    """Report what the regulations count: each room's daily compliance and refund tier, the season
    summary (heat, GJ/m², comfort share, refund room-days) and the first-week hourly report."""
    import datetime as dt

    from gateway.config import load_gateway_config
    from gateway.control.loader import load_controller_config
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
    config: Annotated[Path, typer.Option(help="station configuration file")] = Path("/etc/heatgw/station.yaml"),
    state_dir: Annotated[Path, typer.Option(help="writable directory for the MQTT outbox, the controller's memory and its operating points")] = Path("/var/lib/heatgw"),
    controller: Annotated[Path | None, typer.Option(
        help="controller settings (default: the station file's own controller: section, if any)")] = None,
) -> None:
    """Run the gateway until SIGTERM: poll, control, serve writes, send telemetry over MQTT.

    SIGHUP (systemctl reload heatgw) re-reads the controller settings and curves; a bad file is
    refused and the running configuration stays in force.
    """
    from gateway.app import run_until_signalled

    try:
        asyncio.run(run_until_signalled(config, state_dir, controller))
    except ConfigError as exc:
        for message in exc.messages:
            errors.print(message, markup=False, highlight=False)
        raise typer.Exit(EXIT_INVALID_CONFIG) from None


@app.command()
def curve(
    file: Annotated[Path, typer.Argument(help="heating curve file")],
    png: Annotated[Path | None, typer.Option(help="draw the curve into this PNG")] = None,
    points: Annotated[Path | None, typer.Option(help="CSV of operating points (outdoor_c,supply_c) to draw")] = None,
) -> None:
    """Print a heating curve as a table, and draw it with its limits and operating points."""
    from gateway.control.curve_cli import curve_command

    raise typer.Exit(curve_command(file, png, points))


REPO_CONFIG = Path(__file__).resolve().parents[1] / "config"


@app.command()
def demo(
    config: Annotated[Path, typer.Option(help="station configuration")] = REPO_CONFIG / "station.yaml",
    controller: Annotated[Path, typer.Option(help="controller settings the gateway runs (a file with a controller: section)")] = REPO_CONFIG / "controller.yaml",
    port: Annotated[int, typer.Option(help="Modbus TCP port for the simulated station")] = 5020,
    control_port: Annotated[int, typer.Option(help="simulator fault-injection port")] = 5021,
    mqtt_port: Annotated[int, typer.Option(help="port of the demo's private MQTT broker")] = 18830,
    tsdb_port: Annotated[int, typer.Option(help="port of the demo's private time-series database")] = 18428,
    speed: Annotated[float, typer.Option(help="simulated seconds per wall-clock second")] = 600.0,
    duration: Annotated[float | None, typer.Option(help="stop after this many wall-clock seconds")] = None,
    live: Annotated[bool, typer.Option(help="show the live terminal view")] = True,
) -> None:
    """Run the whole chain locally (simulator, gateway with its supply-curve controller, broker,
    historian, database), with a live view.

    The controller runs on the simulator's time: at --speed 600 a 60 s cycle takes 0.1 s and a
    simulated day 2.4 minutes. Write intervals are scaled to simulated time, value limits are not.
    """
    from gateway.control.loader import load_controller_config
    from gateway.demo import DemoStopped, run_demo
    from gateway.devstack import PortInUse

    try:
        settings = load_controller_config(controller)
        state = asyncio.run(run_demo(config, settings, port=port, control_port=control_port,
                                     mqtt_port=mqtt_port, tsdb_port=tsdb_port, speed=speed,
                                     duration_s=duration, live=live))
    except ConfigError as exc:
        for message in exc.messages:
            errors.print(message, markup=False, highlight=False)
        raise typer.Exit(EXIT_INVALID_CONFIG) from None
    except PortInUse as exc:
        errors.print(f"demo not started: {exc}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    except (KeyboardInterrupt, DemoStopped) as exc:
        console.print(f"{str(exc) or 'demo stopped by Ctrl-C'}; every process it started is stopped", markup=False)
        return
    console.print(f"demo stopped after {state.cycles} controller cycles and {state.writes} setpoint writes; "
                  f"the historian stored {state.stored_points or 0} points and {state.stored_states or 0} controller states")


def main() -> None:
    """Entry point for ``python -m gateway``."""
    app()
