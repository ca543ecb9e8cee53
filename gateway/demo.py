"""``heatgw demo``: the whole chain, from a simulated station to the dispatch centre's database.

The simulator runs as its own process (``heatgw sim run``), exactly as it would on a test bench,
and the gateway talks to it over Modbus TCP on loopback. The gateway publishes to a private
Mosquitto, and a historian bridge process writes what arrives into a private VictoriaMetrics
through the InfluxDB v2 write API. What the screen shows is what the *gateway* read, with its
quality, plus the sequence numbers it published and the points the historian stored, so a
newcomer sees every link working. A plain curve follower writes the supply setpoint through the
gateway's write queue (with its limits and read-back), standing in for the supply-curve
controller until that lands.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from drivers.base import Quality
from gateway.app import Gateway
from gateway.config import GatewayConfig
from gateway.curves import Curve
from gateway.demo_stack import DispatchSide, dispatch_side
from gateway.latest import LatestValues
from gateway.logs import kv
from gateway.samples import Sample
from gateway.writes import WriteResult

log = logging.getLogger(__name__)

STATION_ROWS = (
    ("outdoor_temp", "Outdoor"),
    ("primary_supply_temp", "Primary supply"),
    ("primary_return_temp", "Primary return"),
    ("primary_flow", "Primary flow"),
    ("valve_position", "Control valve"),
    ("supply_setpoint", "Supply setpoint"),
    ("secondary_supply_temp", "Secondary supply"),
    ("secondary_return_temp", "Secondary return"),
    ("secondary_flow", "Circulation flow"),
    ("pump_frequency", "Pump frequency"),
    ("meter_power", "Heat meter power"),
    ("meter_energy_gj", "Heat meter energy"),
    ("makeup_total", "Make-up water total"),
    ("tank_level", "Softened-water tank"),
)


@dataclass
class DemoState:
    """What the screen needs besides the latest values."""

    last_write: WriteResult | None = None
    writes: int = 0
    stored_points: int | None = None


def demo_config(config_path: Path, port: int, mqtt_port: int) -> GatewayConfig:
    """The station config with every TCP device on the local simulator and MQTT on the local broker."""
    data = copy.deepcopy(yaml.safe_load(config_path.read_text()))
    for device in data["devices"].values():
        if device.get("protocol") == "modbus_tcp":
            device["host"], device["port"] = "127.0.0.1", port
    data["mqtt"] = {**data.get("mqtt", {}), "host": "127.0.0.1", "port": mqtt_port}
    return GatewayConfig.model_validate(data)


@contextlib.asynccontextmanager
async def simulator_process(port: int, control_port: int, speed: float) -> AsyncIterator[subprocess.Popen[bytes]]:
    """Run ``heatgw sim run`` as a child process until the block ends."""
    command = [sys.executable, "-m", "gateway", "--log-level", "warning", "sim", "run",
               "--port", str(port), "--control-port", str(control_port), "--speed", str(speed)]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    try:
        await _wait_for_port(port, process, timeout_s=20)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the simulator exited early with code {process.returncode}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the simulator did not open port {port} within {timeout_s} s")


async def follow_curve(gateway: Gateway, latest: LatestValues, curve: Curve, state: DemoState) -> None:
    """Write the curve's setpoint for the current outdoor temperature, in allowed steps."""
    limits = gateway.config.tags()["supply_setpoint"][1].writable
    assert limits is not None
    period = max(limits.min_interval_s, 1.0) + 0.5
    while True:
        outdoor = good_number(latest.get("outdoor_temp"))
        current = good_number(latest.get("supply_setpoint"))
        if outdoor is not None and current is not None:
            target = float(curve.supply_at(outdoor))
            step = limits.max_step or abs(target - current)
            wanted = min(max(target, current - step), current + step)
            wanted = round(min(max(wanted, limits.min), limits.max), 1)
            if abs(wanted - current) >= 0.1:
                state.last_write = await gateway.writes.write("supply_setpoint", wanted, origin="demo-curve")
                state.writes += 1
                await asyncio.sleep(period)
                continue
        await asyncio.sleep(0.5)


def good_number(sample: Sample | None) -> float | None:
    """The sample's value if it is a good number, else None."""
    if sample is None or sample.quality is not Quality.GOOD or not isinstance(sample.value, int | float):
        return None
    return float(sample.value)


def render(gateway: Gateway, latest: LatestValues, state: DemoState, sim_clock: str) -> Group:
    """The live view: station values, rooms, devices, the dispatch side, last write."""
    station = Table(title=f"{gateway.config.station.name}  (simulated time {sim_clock})", expand=True)
    for column in ("Value", "Reading", "Quality"):
        station.add_column(column, justify="right" if column == "Reading" else "left")
    tags = gateway.config.tags()
    for tag, label in STATION_ROWS:
        station.add_row(label, *_cells(latest, tag, tags[tag][1].unit))

    rooms = Table(title="Representative rooms (wireless sensors)", expand=True)
    for column in ("Room", "Temperature", "Sensor age", "Quality"):
        rooms.add_column(column)
    for tag in sorted(t for t in tags if t.startswith("room_") and t.endswith("_temp")):
        age = good_number(latest.get(tag.removesuffix("_temp") + "_age"))
        age_text = "-" if age is None else f"{age / 60:.0f} min"
        reading, quality = _cells(latest, tag, "°C")
        rooms.add_row(tag.removeprefix("room_").removesuffix("_temp"), reading, age_text, quality)

    devices = Table(title="Devices", expand=True)
    for column in ("Device", "State", "Polls", "Requests", "Failures"):
        devices.add_column(column)
    for name, poller in gateway.pollers.items():
        online = {True: "[green]online", False: "[red]lost", None: "[yellow]connecting"}[poller.online]
        devices.add_row(name, online, str(poller.stats.polls), str(poller.stats.requests), str(poller.stats.failures))

    dispatch = "MQTT off"
    if gateway.mqtt is not None:
        link = "[green]connected" if gateway.mqtt.publisher.connected.is_set() else "[red]disconnected"
        stored = "?" if state.stored_points is None else f"{state.stored_points:,}"
        dispatch = (f"MQTT {link}[/]  last sequence number {gateway.mqtt.outbox.last_seq}, "
                    f"acknowledged {gateway.mqtt.publisher.published_messages}   historian: {stored} points stored")

    write = state.last_write
    footer = "no setpoint written yet"
    if write is not None:
        verdict = "[green]accepted" if write.accepted else f"[red]refused: {write.reason}"
        footer = f"writes: {state.writes}, last: supply_setpoint <- {write.requested} ({write.origin}) {verdict}"
    return Group(station, rooms, devices, Panel(dispatch, title="Dispatch side"),
                 Panel(footer + "   [dim]Ctrl-C stops"))


def _cells(latest: LatestValues, tag: str, unit: str) -> tuple[str, str]:
    sample = latest.get(tag)
    if sample is None:
        return "-", "[yellow]waiting"
    colour = {Quality.GOOD: "green", Quality.STALE: "yellow", Quality.BAD: "red"}[sample.quality]
    value = "-" if sample.value is None else (f"{sample.value:.2f}" if isinstance(sample.value, float) else str(sample.value))
    label = sample.quality.value + (f" ({sample.reason})" if sample.reason else "")
    return f"{value} {unit}", f"[{colour}]{label}"


async def run_demo(config_path: Path, curve: Curve, *, port: int, control_port: int, mqtt_port: int,
                   tsdb_port: int, speed: float, duration_s: float | None, live: bool) -> DemoState:
    """Run the whole chain (+ live view) for ``duration_s`` or until cancelled."""
    config = demo_config(config_path, port, mqtt_port)
    with tempfile.TemporaryDirectory(prefix="heatgw-demo-") as workdir, \
            dispatch_side(Path(workdir), mqtt_port, tsdb_port) as dispatch:
        async with simulator_process(port, control_port, speed):
            gateway = Gateway(config, state_dir=Path(workdir) / "gateway")
            state = await _run_gateway(gateway, curve, dispatch, control_port, duration_s, live)
    log.info("demo finished", extra=kv(writes=state.writes, stored_points=state.stored_points))
    return state


async def _run_gateway(gateway: Gateway, curve: Curve, dispatch: DispatchSide, control_port: int,
                       duration_s: float | None, live: bool) -> DemoState:
    from sim.runner import send_control

    state = DemoState()
    latest = gateway.latest
    async with gateway:
        follower = asyncio.create_task(follow_curve(gateway, latest, curve, state))
        deadline = None if duration_s is None else time.monotonic() + duration_s
        sim_clock = "?"
        try:
            with Live(render(gateway, latest, state, sim_clock), refresh_per_second=4,
                      transient=False) if live else contextlib.nullcontext() as screen:
                while deadline is None or time.monotonic() < deadline:
                    reply = await send_control("127.0.0.1", control_port, {"cmd": "status"})
                    sim_clock = str(reply.get("result", {}).get("sim_time", "?"))[:16].replace("T", " ")
                    state.stored_points = await dispatch.stored_points()
                    if screen is not None:
                        screen.update(render(gateway, latest, state, sim_clock))
                    await asyncio.sleep(0.5)
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
    return state
