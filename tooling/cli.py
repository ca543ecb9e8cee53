"""``heatgw demo`` and ``heatgw sim``: the commands that run the simulator.

``gateway.cli`` mounts them lazily (``TOOLING_COMMANDS``), so the production commands never import
this module, the demo or the simulator.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand, TyperGroup

from gateway.cli import EXIT_INVALID_CONFIG, console, errors
from gateway.control.loader import load_controller_config
from gateway.yaml_source import ConfigError
from sim.cli import app as sim_app

tools = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)  # as gateway.cli.app, which mounts these
tools.add_typer(sim_app, name="sim", help="Run the simulated station and inject faults into it.")


def command(name: str) -> TyperCommand | TyperGroup:
    """The command ``heatgw NAME`` runs (``demo`` or ``sim``)."""
    found = typer.main.get_group(tools).commands[name]
    assert isinstance(found, TyperCommand | TyperGroup)
    return found


def _example_config() -> Path:
    """The example station: shipped in the wheel as ``tooling/config``, the repository's ``config/`` in a checkout."""
    shipped = Path(__file__).resolve().with_name("config")
    return shipped if shipped.is_dir() else Path(__file__).resolve().parents[1] / "config"


EXAMPLE_CONFIG = _example_config()


@tools.command()
def demo(
    config: Annotated[Path, typer.Option(help="station configuration")] = EXAMPLE_CONFIG / "station.yaml",
    controller: Annotated[Path, typer.Option(help="controller settings the gateway runs (a file with a controller: section)")] = EXAMPLE_CONFIG / "controller.yaml",
    port: Annotated[int, typer.Option(help="Modbus TCP port for the simulated station")] = 5020,
    opcua_port: Annotated[int, typer.Option(
        help="OPC UA port of the simulated PLC, served when the station file has an opcua device")] = 4840,
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
    from tooling.demo import DemoStopped, run_demo
    from tooling.devstack import PortInUse

    try:
        settings = load_controller_config(controller)
        state = asyncio.run(run_demo(config, settings, port=port, control_port=control_port,
                                     mqtt_port=mqtt_port, tsdb_port=tsdb_port, speed=speed,
                                     duration_s=duration, live=live, opcua_port=opcua_port))
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
