"""``heatgw sim``: run the simulated station, and poke a running one through its control port.

``heatgw sim run`` owns the simulator process; every other command is a short-lived client of
its JSON-lines control port (see ``sim.runner``), so faults can be injected from a second
terminal while a gateway polls the station.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sim.faults import WIRED_SENSORS, describe_fault_kinds
from sim.modbus_server import SerialLine
from sim.runner import JsonObject, SimRunner, send_control
from sim.weather import SeasonDates, heating_season

log = logging.getLogger(__name__)

app = typer.Typer(
    name="sim",
    help="Simulated heat-exchange station (PLC + heat meter over Modbus TCP, PLC over OPC UA) for demos and tests.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

DEFAULT_CONTROL_PORT = 5021
HostOption = Annotated[str, typer.Option(help="address of the simulator")]
ControlPortOption = Annotated[int, typer.Option(help="the simulator's control port")]


class WordOrderChoice(StrEnum):
    big = "big"
    little = "little"


@app.command()
def run(
    host: Annotated[str, typer.Option(help="address to listen on (keep it loopback unless you mean it)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Modbus TCP port of the PLC (unit 1) and, by default, the meter")] = 5020,
    meter_port: Annotated[int | None, typer.Option(help="serve the heat meter (unit 2) on its own port")] = None,
    meter_word_order: Annotated[WordOrderChoice, typer.Option(help="float32/uint32 word order of the meter")] = (
        WordOrderChoice.big
    ),
    meter_serial: Annotated[str | None, typer.Option(
        help="serve the heat meter as Modbus RTU on this serial port (e.g. one end of a socat pty pair)")] = None,
    meter_baudrate: Annotated[int, typer.Option(help="baud rate for --meter-serial")] = 9600,
    speed: Annotated[float, typer.Option(help="simulated seconds per wall-clock second")] = 600.0,
    tick: Annotated[float, typer.Option(help="wall-clock seconds between physics steps")] = 0.2,
    control_port: Annotated[int, typer.Option(help="JSON-lines control port on the same host")] = DEFAULT_CONTROL_PORT,
    opcua_port: Annotated[int | None, typer.Option(
        help="serve the PLC over OPC UA too, on this port (opc.tcp://HOST:PORT/heatgw/station)")] = None,
    seed: Annotated[int | None, typer.Option(
        help="seed for weather, noise and sensor timing (default: the station file's, else 1)")] = None,
    station_file: Annotated[Path | None, typer.Option(
        "--station", help="a station file (config/stations/*.yaml): its buildings, circuits, climate and "
                          "season; default: the demo station")] = None,
    start: Annotated[str | None, typer.Option(
        help="simulated start time, ISO 8601 (naive = UTC); default 2026-01-10T00:00Z, a January day")] = None,
    season: Annotated[bool, typer.Option(
        help="start instead at the beginning of the heating season (the station's, 15 Nov by default) "
             "that --start falls in")] = False,
) -> None:
    """Run the station until Ctrl-C or SIGTERM."""
    from sim.plant import Plant, PlantParams  # the physics is only needed here
    from sim.params import StationParams
    from sim.registers import RegisterMap
    from sim.station import DEFAULT_START, Station
    from sim.station_file import StationFileError, load_station_file

    try:
        start_at = _parse_start(start) if start is not None else DEFAULT_START
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--start") from None
    plant_params: PlantParams | None = None
    if station_file is not None:
        try:
            plant_params = load_station_file(station_file)
        except StationFileError as exc:
            for message in exc.messages:
                errors.print(message, markup=False, highlight=False)
            raise typer.Exit(2) from None
    if season:
        if plant_params is not None:
            start_at = _season_start(start_at, plant_params.utc_offset_h, plant_params.season)
        else:
            start_at = _season_start(start_at, StationParams().site_utc_offset_h)
    station: Station | Plant
    if plant_params is None:
        station = Station(start=start_at, seed=1 if seed is None else seed)
        register_map = RegisterMap()
    else:
        station = Plant(plant_params, start=start_at, seed=seed)
        register_map = RegisterMap(station.layout)
    runner = SimRunner(
        station, host=host, port=port, meter_port=meter_port, meter_word_order=meter_word_order.value,
        meter_serial=SerialLine(meter_serial, meter_baudrate) if meter_serial else None, speed=speed, tick_s=tick,
        control_port=control_port, register_map=register_map, opcua_port=opcua_port,
    )
    try:
        asyncio.run(_serve(runner))
    except OSError as exc:
        errors.print(f"cannot listen: {exc}", markup=False, highlight=False)
        raise typer.Exit(1) from None


@app.command()
def status(host: HostOption = "127.0.0.1", control_port: ControlPortOption = DEFAULT_CONTROL_PORT) -> None:
    """Show simulated time, ports, communication faults and the main measurements."""
    state = _request(host, control_port, {"cmd": "status"})
    values = _request(host, control_port, {"cmd": "snapshot"})
    stats = _request(host, control_port, {"cmd": "stats"})
    console.print(f"simulated time [bold]{state['sim_time']}[/bold]  speed x{state['speed']:g}  "
                  f"PLC port {state['plc_port']}  meter port {state['meter_port']}  requests {stats['total']}")
    for unit, faults in state["comm"].items():
        if faults["offline"] or faults["delay_s"] or faults["exception_ranges"]:
            console.print(f"unit {unit}: {_describe_comm(faults)}", highlight=False)
    for name, detail in state["faults"].items():
        console.print(f"[red]fault[/red] {name}" + ("" if detail is True else f" {json.dumps(detail)}"))
    table = Table("measurement", "value", box=None)
    for name in ("outdoor_c", "primary_supply_c", "primary_return_c", "primary_flow_m3h", "valve_pct",
                 "secondary_supply_c", "secondary_return_c", "secondary_flow_m3h", "pump_frequency_hz",
                 "tank_level_pct"):
        table.add_row(name, _number(values[name]))
    for name in ("pump_running", "makeup_pump_running"):
        table.add_row(name, "yes" if values[name] else "no")
    for name in ("pump_fault", "makeup_pump_fault", "pit_flooded", "overtemp_trip", "overpressure_trip",
                 "primary_supply_lost"):
        table.add_row(name, "[red]yes[/red]" if values[name] else "no")
    table.add_row("meter power kW", _number(values["meter"]["power_kw"]))
    table.add_row("meter energy GJ", _number(values["meter"]["energy_gj"]))
    console.print(table)


FAULT_HELP = "\n\n".join([
    "Inject a station fault; its arguments follow as --name value (or name=value).",
    "\b\nKinds:\n" + "\n".join(f"  {line}" for line in describe_fault_kinds()),
    "Sensors: " + ", ".join(WIRED_SENSORS) + ", or a room's name. On a station file's plant with several "
    "circuits, pump, leak, interlock and secondary-sensor faults also take --circuit N (default 0).",
    "Examples: 'fault sensor_open --sensor outdoor', 'fault leak --m3h 2', 'fault pump_trip', "
    "'fault clear --name leak'. Values are read as JSON when they parse (numbers, true/false).",
])


@app.command(help=FAULT_HELP, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def fault(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(metavar="KIND", help="one of the kinds listed above")],
    host: HostOption = "127.0.0.1",
    control_port: ControlPortOption = DEFAULT_CONTROL_PORT,
) -> None:
    try:
        kwargs = _parse_kwargs(ctx.args)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="fault arguments") from None
    result = _request(host, control_port, {"cmd": "fault", "kind": kind, "args": kwargs})
    console.print(f"fault {kind} injected" + (f": {result}" if result is not None else ""), highlight=False)


@app.command()
def comm(
    unit: Annotated[int, typer.Option(help="Modbus unit id: 1 PLC, 2 heat meter")],
    offline: Annotated[bool | None, typer.Option("--offline/--online", help="swallow every request")] = None,
    delay: Annotated[float | None, typer.Option(help="answer this many seconds late")] = None,
    exception_range: Annotated[list[str] | None, typer.Option(
        metavar="FC:ADDRESS[+COUNT]", help="FC:ADDRESS[+COUNT] answered with exception 02; repeatable; 'none' clears")] = None,
    host: HostOption = "127.0.0.1",
    control_port: ControlPortOption = DEFAULT_CONTROL_PORT,
) -> None:
    """Change how one unit behaves on the wire; options left out keep their current setting."""
    request: JsonObject = {"cmd": "comm", "unit": unit}
    if offline is not None:
        request["offline"] = offline
    if delay is not None:
        request["delay_s"] = delay
    if exception_range is not None:
        try:
            request["exception_ranges"] = _parse_ranges(exception_range)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--exception-range") from None
    faults = _request(host, control_port, request)
    console.print(f"unit {unit}: {_describe_comm(faults)}", highlight=False)


@app.command()
def opcua(
    offline: Annotated[bool | None, typer.Option("--offline/--online", help="stop serving OPC UA / serve again")] = None,
    delay: Annotated[float | None, typer.Option(help="answer Read and Write this many seconds late")] = None,
    bad: Annotated[list[str] | None, typer.Option(
        help="NODE=StatusCode: the node's value goes bad (e.g. PrimarySide.Flow=BadSensorFailure); "
             "repeatable; 'none' clears")] = None,
    remove: Annotated[list[str] | None, typer.Option(
        help="delete a node from the address space; repeatable; 'none' restores every removed node")] = None,
    subscriptions: Annotated[bool | None, typer.Option(
        "--subscriptions/--no-subscriptions", help="accept CreateSubscription, or refuse it (Read only)")] = None,
    host: HostOption = "127.0.0.1",
    control_port: ControlPortOption = DEFAULT_CONTROL_PORT,
) -> None:
    """Change how the PLC's OPC UA server behaves; options left out keep their current setting."""
    request: JsonObject = {"cmd": "opcua"}
    if offline is not None:
        request["offline"] = offline
    if delay is not None:
        request["delay_s"] = delay
    if subscriptions is not None:
        request["subscriptions"] = subscriptions
    if bad is not None:
        try:
            request["bad"] = {} if bad == ["none"] else dict(_node_status(item) for item in bad)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--bad") from None
    if remove is not None:
        request["removed"] = [] if remove == ["none"] else remove
    faults = _request(host, control_port, request)
    console.print(json.dumps(faults), highlight=False)


def _node_status(item: str) -> tuple[str, str]:
    node, sep, code = item.partition("=")
    if not sep or not node or not code:
        raise ValueError(f"expected NODE=StatusCode, got {item!r}")
    return node, code


@app.command()
def stats(
    reset: Annotated[bool, typer.Option(help="zero the counters after showing them")] = False,
    host: HostOption = "127.0.0.1",
    control_port: ControlPortOption = DEFAULT_CONTROL_PORT,
) -> None:
    """Show Modbus requests received per unit and function code."""
    result = _request(host, control_port, {"cmd": "stats", "reset": reset})
    table = Table("unit", "function", "requests", box=None)
    for unit, functions in result["requests"].items():
        for function, count in functions.items():
            table.add_row(unit, f"FC{int(function):02d}", str(count))
    console.print(table)
    console.print(f"total {result['total']}")


@app.command()
def clear(host: HostOption = "127.0.0.1", control_port: ControlPortOption = DEFAULT_CONTROL_PORT) -> None:
    """Clear every injected fault: communication and station."""
    _request(host, control_port, {"cmd": "clear"})
    console.print("all faults cleared")


# --- helpers --------------------------------------------------------------------------------

async def _serve(runner: SimRunner) -> None:
    """Run until SIGINT/SIGTERM, or until the physics fails (whose error is then raised)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with runner:
        ports = runner.server.ports
        opcua = f", PLC over OPC UA at {runner.opcua.endpoint}" if runner.opcua is not None else ""
        console.print(f"simulated station: PLC unit 1 on {ports['plc_port']}, meter unit 2 on {ports['meter_port']}"
                      f"{opcua}, control on {runner.control_port}, speed x{runner.speed:g}; Ctrl-C stops",
                      highlight=False)
        stopped = asyncio.create_task(stop.wait())
        failed = asyncio.create_task(runner.wait())
        done, pending = await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if failed in done:
            failed.result()
    log.info("simulator stopped")


def _request(host: str, port: int, request: JsonObject) -> Any:
    """Send one control request; print the reason and exit 1 if it fails."""
    try:
        reply = asyncio.run(send_control(host, port, request))
    except (OSError, TimeoutError) as exc:
        errors.print(f"no simulator control port at {host}:{port} ({exc or type(exc).__name__})",
                     markup=False, highlight=False)
        raise typer.Exit(1) from None
    if not reply.get("ok"):
        errors.print(f"refused: {reply.get('error')}", markup=False, highlight=False)
        raise typer.Exit(1)
    return reply.get("result")


def _parse_start(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _season_start(moment: datetime, utc_offset_h: float, dates: SeasonDates = SeasonDates()) -> datetime:
    """First day (site local midnight) of the heating season ``moment`` falls in; in summer, the coming one."""
    first_year = moment.year if moment.month >= 7 else moment.year - 1
    return heating_season(first_year, utc_offset_h, dates)[0].astimezone(UTC)


def _parse_kwargs(tokens: list[str]) -> dict[str, Any]:
    """``--name value``, ``--name=value``, ``name=value`` or a bare ``--flag`` (true) -> keyword arguments."""
    kwargs: dict[str, Any] = {}
    queue = list(tokens)
    while queue:
        token = queue.pop(0)
        if token.startswith("--"):
            key, sep, text = token[2:].partition("=")
            if not sep:
                text = queue.pop(0) if queue and not queue[0].startswith("--") else "true"
        else:
            key, sep, text = token.partition("=")
            if not sep:
                raise ValueError(f"expected --name value or name=value, got {token!r}")
        key = key.replace("-", "_")
        if not key.isidentifier():
            raise ValueError(f"{key!r} is not an argument name")
        try:
            kwargs[key] = json.loads(text)
        except json.JSONDecodeError:
            kwargs[key] = text
    return kwargs


def _parse_ranges(specs: list[str]) -> list[dict[str, int]]:
    if specs == ["none"]:
        return []
    ranges = []
    for spec in specs:
        try:
            function, _, span = spec.partition(":")
            address, _, count = span.partition("+")
            ranges.append({"function": int(function), "address": int(address), "count": int(count or 1)})
        except ValueError:
            raise ValueError(f"expected FC:ADDRESS[+COUNT], got {spec!r}") from None
    return ranges


def _describe_comm(faults: dict[str, Any]) -> str:
    ranges = ", ".join(f"FC{r['function']:02d} {r['address']}+{r['count']}" for r in faults["exception_ranges"])
    parts = ["offline" if faults["offline"] else "online"]
    if faults["delay_s"]:
        parts.append(f"delay {faults['delay_s']:g} s")
    if ranges:
        parts.append(f"exception 02 for {ranges}")
    return ", ".join(parts)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
