"""``heatgw demo``: the whole chain, from a simulated station to the dispatch centre's database.

The simulator runs as its own process (``heatgw sim run``), exactly as it would on a test bench,
and the gateway talks to it over Modbus TCP on loopback. The gateway publishes to a private
Mosquitto, and a historian bridge process writes what arrives into a private VictoriaMetrics
through the InfluxDB v2 write API. The gateway runs the real supply-curve controller
(``config/controller.yaml``), writing the supply setpoint through its write queue (limits,
read-back), on the simulator's time: at 600 times real time a cycle of 60 simulated seconds is a
tenth of a second, and a simulated day, with its night coast and morning boost, lasts 2.4 minutes.
What the screen shows is what the *gateway* read, with its quality, what the controller decided
and why, the sequence numbers it published and the points the historian stored, so a newcomer
sees every link working.

On accelerated time only what is measured in time is adapted, never a value limit: the station's
write intervals and poll groups (``demo_config``), the controller's clock (``tooling.sim_clock``)
and its sample ages and cycle (``ControllerTask``'s ``time_scale``); and the controller's write log
is thinned to one line every ``WRITE_LOG_EVERY_S`` (``tooling.demo_logs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rich.live import Live

from gateway.app import Gateway
from gateway.bus import Subscription
from gateway.config import GatewayConfig, check_gateway_document
from gateway.control.settings import ControllerConfig
from gateway.control.model import ControllerState
from gateway.control.task import ORIGIN as CONTROLLER_ORIGIN
from tooling.demo_logs import throttled
from tooling.demo_stack import DispatchSide, dispatch_side
from tooling.devstack import claim_port, die_with_parent
from gateway.yaml_source import load_yaml
from tooling.demo_view import DemoState, render
from gateway.logs import kv
from tooling.sim_clock import SimClock, keep_anchored, sim_clock

log = logging.getLogger(__name__)

WRITE_LOG_EVERY_S = 10.0
"""Wall seconds between two ``write done`` lines of the controller (see ``tooling.demo_logs``)."""


def demo_config(config_path: Path, port: int, mqtt_port: int, speed: float, opcua_port: int = 4840) -> GatewayConfig:
    """The station config with every TCP device on the local simulator (Modbus on ``port``, OPC UA
    on ``opcua_port``) and MQTT on the local broker, and its time-based settings fitted to a
    simulator ``speed`` times faster than the wall clock.

    The write queue and the pollers keep wall time. A write's ``min_interval_s`` is divided by the
    speed, so "10 s between two setpoint writes" still means 10 simulated seconds (unscaled, it
    would be 100 simulated minutes at 600x and refuse the controller most cycles); the value limits
    (``min``, ``max``, ``max_step``) are never touched. Polling cannot be scaled as far (600 polls
    a second is no demo), so a group's interval is divided by the speed but not below the fastest
    configured one: at 600x the slow group's 10 s would be 100 simulated minutes, and the room
    sensors it reads would be older than the controller's ``max_age_s`` (30 minutes) most of the
    time. At speed 1 nothing changes.
    """
    document = load_yaml(config_path)
    check_gateway_document(document)  # the file as written: its mistakes reported with file:line
    data: dict[str, Any] = copy.deepcopy(document.data)
    templates: dict[str, Any] = data.get("templates") or {}
    for device in [*data["devices"].values(), *templates.values()]:
        for tag in (device.get("tags") or {}).values():
            if "min_interval_s" in (tag.get("writable") or {}):
                tag["writable"]["min_interval_s"] /= speed
    for device in data["devices"].values():
        kind = templates.get(device.get("template"), {})  # a device of a template takes what it leaves out
        protocol, endpoint = device.get("protocol", kind.get("protocol")), device.get("endpoint", kind.get("endpoint"))
        if protocol == "modbus_tcp":
            device["host"], device["port"] = "127.0.0.1", port
        elif protocol == "opcua" and endpoint is not None:
            device["endpoint"] = f"opc.tcp://127.0.0.1:{opcua_port}{urlparse(endpoint).path}"
    fastest = min(group["interval_s"] for group in data["groups"].values())
    for group in data["groups"].values():
        group["interval_s"] = max(group["interval_s"] / speed, fastest)
    data["mqtt"] = {**data.get("mqtt", {}), "host": "127.0.0.1", "port": mqtt_port}
    edited = dataclasses.replace(document, data=data)  # validated as the file is: templates and all
    config = check_gateway_document(edited)
    return check_gateway_document(edited) if _fit_silence_alarms(data, config, speed) else config


def _fit_silence_alarms(data: dict[str, Any], config: GatewayConfig, speed: float) -> bool:
    """Quality alarms time a tag's silence on the alarm clock, which in the demo is the
    simulator's, ``speed`` times faster than the polls: a tag's normal pause
    (``max_silence_s``) lasts ``speed`` times longer on it. A quality alarm shorter than that would
    fire between every two good values, so its ``after_s`` is raised to it. Whether any was."""
    silence = config.max_silence_s()
    raised = False
    for alarm in ((data.get("alarms") or {}).get("definitions") or {}).values():
        if alarm.get("kind") == "quality" and alarm.get("tag") in silence:
            pause_s = silence[alarm["tag"]] * speed
            if alarm.get("after_s", 0) < pause_s:
                alarm["after_s"], raised = pause_s, True
    return raised


@contextlib.asynccontextmanager
async def simulator_process(port: int, control_port: int, speed: float,
                            opcua_port: int | None = None) -> AsyncIterator[subprocess.Popen[bytes]]:
    """Run ``heatgw sim run`` as a child process until the block ends (serving OPC UA too if given a port)."""
    command = [sys.executable, "-m", "gateway", "--log-level", "warning", "sim", "run",
               "--port", str(port), "--control-port", str(control_port), "--speed", str(speed)]
    claim_port(port, "simulator (--port)")
    claim_port(control_port, "simulator (--control-port)")
    if opcua_port is not None:
        command += ["--opcua-port", str(opcua_port)]
        claim_port(opcua_port, "simulator (--opcua-port)")
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent, start_new_session=True)
    try:
        for opened in (port, control_port):  # the control port opens just after the servers
            await _wait_for_port(opened, process, timeout_s=20)
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


async def run_demo(config_path: Path, controller: ControllerConfig, *, port: int, control_port: int,
                   mqtt_port: int, tsdb_port: int, speed: float, duration_s: float | None, live: bool,
                   opcua_port: int = 4840) -> DemoState:
    """Run the whole chain (+ live view) for ``duration_s`` or until cancelled.

    SIGTERM and SIGHUP (a closed terminal) cancel it like Ctrl-C does, so every child process is
    stopped and the working directory removed on the way out; ``DemoStopped`` then says which.
    """
    config = demo_config(config_path, port, mqtt_port, speed, opcua_port)
    serves_opcua = any(device.protocol == "opcua" for device in config.devices.values())
    received: list[signal.Signals] = []
    with _signals_cancel_this_task(received):
        try:
            return await _run_chain(config, controller, port=port, control_port=control_port, mqtt_port=mqtt_port,
                                    tsdb_port=tsdb_port, speed=speed, duration_s=duration_s, live=live,
                                    opcua_port=opcua_port if serves_opcua else None)
        except asyncio.CancelledError:
            if received:
                raise DemoStopped(received[0]) from None
            raise


class DemoStopped(Exception):
    """The demo was stopped by a signal; everything it started has been stopped."""

    def __init__(self, received: signal.Signals) -> None:
        super().__init__(f"demo stopped by {received.name}")
        self.signal = received


@contextlib.contextmanager
def _signals_cancel_this_task(received: list[signal.Signals]) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def stop(which: signal.Signals) -> None:
        received.append(which)
        task.cancel()

    for which in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(which, stop, which)
    try:
        yield
    finally:
        for which in (signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(which)


async def _run_chain(config: GatewayConfig, controller: ControllerConfig, *, port: int, control_port: int,
                     mqtt_port: int, tsdb_port: int, speed: float, duration_s: float | None, live: bool,
                     opcua_port: int | None) -> DemoState:
    with tempfile.TemporaryDirectory(prefix="heatgw-demo-") as workdir, \
            dispatch_side(Path(workdir), mqtt_port, tsdb_port) as dispatch, \
            throttled("gateway.writes", CONTROLLER_ORIGIN, WRITE_LOG_EVERY_S):
        async with simulator_process(port, control_port, speed, opcua_port):
            clock = await sim_clock("127.0.0.1", control_port)
            gateway = Gateway(config, state_dir=Path(workdir) / "gateway", controller=controller,
                              controller_clock=clock, controller_time_scale=clock.speed)
            state = await _run_gateway(gateway, clock, dispatch, control_port, duration_s, live)
    log.info("demo finished", extra=kv(cycles=state.cycles, writes=state.writes, stored_points=state.stored_points,
                                       stored_states=state.stored_states))
    return state


async def _run_gateway(gateway: Gateway, clock: SimClock, dispatch: DispatchSide, control_port: int,
                       duration_s: float | None, live: bool) -> DemoState:
    state = DemoState()
    controller_feed = gateway.bus.subscribe("demo-controller", maxsize=4096)
    async with gateway:
        helpers = [asyncio.create_task(keep_anchored(clock, "127.0.0.1", control_port), name="sim-clock"),
                   asyncio.create_task(_count_cycles(controller_feed, state), name="demo-counter")]
        deadline = None if duration_s is None else time.monotonic() + duration_s
        started = clock()
        try:
            with Live(render(gateway, state, clock()), refresh_per_second=4, transient=False,
                      vertical_overflow="crop") if live else contextlib.nullcontext() as screen:
                while deadline is None or time.monotonic() < deadline:
                    state.stored_points = await dispatch.stored_points()
                    state.stored_states = await dispatch.stored_states(started, clock())
                    if screen is not None:
                        screen.update(render(gateway, state, clock(), height=screen.console.size.height))
                    await asyncio.sleep(0.5)
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
    return state


async def _count_cycles(feed: Subscription, state: DemoState) -> None:
    """Count the controller's cycles and writes from what it publishes (every one, also unseen)."""
    async for item in feed:
        if isinstance(item, ControllerState):
            state.count(item)
