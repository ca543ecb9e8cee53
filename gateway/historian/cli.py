"""``heatgw historian``: run the bridge, or check its configuration.

A typer sub-app so the main CLI mounts it with one line
(``app.add_typer(historian_app, name="historian")``), and so it also runs alone as
``python -m gateway.historian`` where the gateway's own dependencies are not wanted.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from gateway.historian.settings import load_historian_settings
from gateway.logs import LogLevel, setup_logging
from gateway.yaml_source import ConfigError

app = typer.Typer(
    name="historian",
    help="Bridge station telemetry, controller state and alarms from MQTT into an InfluxDB v2 API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

EXIT_INVALID_CONFIG = 2
EXIT_FAILED = 1
DEFAULT_CONFIG = Path("/etc/heatgw/historian.yaml")


@app.callback()
def _root(
    log_level: Annotated[LogLevel, typer.Option(case_sensitive=False, help="how much to log (to stderr)")] = LogLevel.info,
) -> None:
    """Set up structured logging (also when run alone, without the main ``heatgw`` callback)."""
    setup_logging(log_level.value)


@app.command()
def check(
    config: Annotated[Path, typer.Option(help="historian configuration file, as `historian run --config` takes it")] = (
        DEFAULT_CONFIG),
    file: Annotated[Path | None, typer.Argument(metavar="FILE", help="the same file given by position (older form)")] = None,
) -> None:
    """Validate the configuration without connecting to anything (exit 2 if invalid)."""
    if file is not None and config != DEFAULT_CONFIG and file != config:
        raise typer.BadParameter(f"two files given: {file} and --config {config}", param_hint="FILE")
    file = file or config
    try:
        settings = load_historian_settings(file)
    except ConfigError as exc:
        _print_errors(exc)
        raise typer.Exit(EXIT_INVALID_CONFIG) from None
    console.print(
        f"[green]ok[/green] {file}: historian {settings.instance!r}, broker {settings.mqtt.host}:{settings.mqtt.port}, "
        f"group {settings.topics.share_group!r}, database {settings.influxdb.url} bucket {settings.influxdb.bucket!r}",
        highlight=False,
    )


@app.command()
def run(
    config: Annotated[Path, typer.Option(help="historian configuration file")] = DEFAULT_CONFIG,
) -> None:
    """Run the bridge until SIGTERM; exit 2 on a configuration error, 1 if it fails."""
    from gateway.historian.bridge import run_bridge

    try:
        settings = load_historian_settings(config)
    except ConfigError as exc:
        _print_errors(exc)
        raise typer.Exit(EXIT_INVALID_CONFIG) from None
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if not run_bridge(settings, stop):
        raise typer.Exit(EXIT_FAILED)


def _print_errors(exc: ConfigError) -> None:
    for message in exc.messages:
        errors.print(message, markup=False, highlight=False)
