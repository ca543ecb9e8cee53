"""Assemble the gateway from its configuration and run it until told to stop.

This is the only module that knows every part; the parts only know the bus and their own job
(the poller does not know who consumes samples, the write queue does not know who writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from types import TracebackType

from gateway.alarms.engine import AlarmEngine
from gateway.alarms.events import EventEngine
from gateway.alarms.service import AlarmService, alarm_tick_s
from gateway.alarms.settings import AlarmSettings
from gateway.alarms.state import AlarmState
from gateway.alarms.store import store_path
from gateway.acquisition.device import Device
from gateway.bus import Bus
from gateway.config import GatewayConfig
from gateway.control.settings import ControllerConfig
from gateway.control.memory import FILE_NAME as MEMORY_FILE_NAME
from gateway.control.memory import MemoryFile
from gateway.control.operating_points import FILE_NAME as POINTS_FILE_NAME
from gateway.control.operating_points import OperatingPointLog
from gateway.control.model import ControllerState
from gateway.control.task import ControllerTask
from gateway.latest import LatestValues
from gateway.logs import kv
from gateway.metrics import GatewayCollector, refresh_outbox
from gateway.metrics_server import MetricsServer
from gateway.mqtt.batcher import Durable
from gateway.mqtt.commands import Command, CommandRegistry, OutdoorArgs, Refused, SetpointOffsetArgs, standard_commands
from gateway.mqtt.payloads import CONTROL_TOPIC, EVENTS_TOPIC, control_payload, device_status
from gateway.mqtt.service import MqttService
from gateway.preflight import load_startup
from gateway.protocols import build_devices
from gateway.reload import Reloader, StationReload
from gateway.samples import DeviceStatus
from gateway.systemd_notify import Notifier, keep_alive
from gateway.writes import WriteQueue

log = logging.getLogger(__name__)

OUTBOX_PATIENCE_S = 60.0
"""A call waiting this long on the outbox thread means a wedged disk: a commit takes milliseconds
even on slow industrial flash (bench/outbox.py), so this never fires on a healthy station."""


class Gateway:
    """The running gateway: devices feeding the bus, the write queue, and (when the configuration
    has an ``mqtt`` section and a state directory is given for the outbox) telemetry and commands
    over MQTT. Use ``async with``.

    ``controller_clock`` and ``controller_time_scale`` put the controller on another time than the
    wall clock the devices stamp samples with (the demo: the simulator's, 600 times faster); see
    ``ControllerTask``. Alarms and station events are timed on ``alarm_clock`` (default: the
    controller's clock), so an interruption escalates after a simulated hour. A station leaves
    all of them alone.
    """

    def __init__(self, config: GatewayConfig, bus: Bus | None = None, *, state_dir: Path | None = None,
                 controller: ControllerConfig | None = None, controller_clock: Callable[[], float] = time.time,
                 controller_time_scale: float = 1.0, alarm_clock: Callable[[], float] | None = None) -> None:
        self.config = config
        self.bus = bus or Bus()
        self.state_dir = state_dir
        self.devices: dict[str, Device] = build_devices(config.devices, config.groups, self.bus, state_dir=state_dir)
        self.writes = WriteQueue(self.devices)
        self.commands: CommandRegistry = standard_commands(self.writes)
        self.mqtt: MqttService | None = None
        if config.mqtt is not None and state_dir is None:
            log.warning("mqtt is configured but no state directory was given for the outbox: MQTT is off",
                        extra=kv(station=config.station.id))
        elif config.mqtt is not None and state_dir is not None:
            # Built before the devices start, so the outbox's bus subscription sees the first sample.
            # The controller's state and the devices' online/offline changes are durable: they go
            # through the outbox, numbered with the telemetry, so the historian keeps every one.
            self.mqtt = MqttService(config, self.bus, state_dir, self.commands, started=time.time(),
                                    durable={ControllerState: Durable(CONTROL_TOPIC, control_payload),
                                             DeviceStatus: Durable(EVENTS_TOPIC, device_status)},
                                    rooms=room_tags(config, controller))
        # Subscribed before the devices start, like the outbox: the first fault is seen.
        clock = self._alarm_clock = alarm_clock or controller_clock
        engine, events = self.engines_for(config, controller)
        self.alarms = AlarmService(
            engine, self.bus, events=events, clock=clock, tick_s=alarm_tick_s(controller_time_scale),
            store_path=None if state_dir is None else store_path(state_dir, config.station.id),
            outbox=None if self.mqtt is None else self.mqtt.outbox,
            publisher=None if self.mqtt is None else self.mqtt.publisher)
        self.alarms.provide_commands(self.commands)
        self.latest = LatestValues(config)
        self._latest_feed = self.bus.subscribe("latest-values", maxsize=4096)
        self.controller: ControllerTask | None = None
        if controller is not None:
            memory = None if state_dir is None else MemoryFile(state_dir / MEMORY_FILE_NAME)
            points = None if state_dir is None else OperatingPointLog(state_dir / POINTS_FILE_NAME)
            self.controller = ControllerTask(controller, config, self.latest, self.writes, self.bus, memory=memory,
                                             operating_points=points,
                                             clock=controller_clock, time_scale=controller_time_scale,
                                             sample_clock=time.time)
            self._provide_controller_commands(self.controller, controller_clock)
        self._tasks: list[asyncio.Task[None]] = []
        self.metrics: GatewayCollector | None = None
        self._metrics_server: MetricsServer | None = None
        if config.metrics is not None:
            self.metrics = GatewayCollector(self)
            self._metrics_server = MetricsServer(config.metrics, self.metrics)
        self._stopping = False

    def engines_for(self, config: GatewayConfig, controller: ControllerConfig | None
                    ) -> tuple[AlarmEngine, EventEngine | None]:
        """The alarm and event engines of ``config`` (at start, and for a reload that changes them)."""
        tag_devices = {tag: device for tag, (device, _) in config.tags().items()}
        engine = AlarmEngine(config.alarms or AlarmSettings(), tag_devices, controller=controller is not None,
                             now=self._alarm_clock())
        events = None if config.events is None else EventEngine(
            config.events, config.station.timezone, config.report.refund_tiers,
            None if controller is None else controller.settings)
        if events is not None and config.events is not None and config.events.rooms is not None and not events.rooms:
            log.warning("events.rooms: no room to watch; list its tags, or run a controller with rooms",
                        extra=kv(station=config.station.id))
        return engine, events

    def start_devices(self, devices: Mapping[str, Device]) -> None:
        """Poll ``devices`` from now on: every device at start, those a reload adds or restarts."""
        for name, device in list(devices.items()):
            self.devices[name] = device
            task = asyncio.create_task(device.run(), name=f"poll:{name}")
            task.add_done_callback(self._report_if_died)
            self._tasks.append(task)

    async def stop_devices(self, names: Collection[str]) -> None:
        """Stop polling ``names`` (a reload removes or restarts them): their tasks are cancelled and
        awaited, which closes their connections; the other devices poll on undisturbed."""
        ending = {f"poll:{name}" for name in names}
        await _cancel([task for task in self._tasks if task.get_name() in ending])
        # Only once they ended: a stop that is itself cancelled leaves them to the gateway's own stop.
        self._tasks = [task for task in self._tasks if task.get_name() not in ending]
        for name in names:
            self.devices.pop(name, None)

    async def restate(self, config: GatewayConfig, controller: ControllerConfig | None) -> None:
        """A reload's new station configuration, for what reads it as a whole: the latest values'
        freshness, the retained status and meta (config hash, tag list, rooms)."""
        self.config = config
        self.latest.reconfigure(config)
        if self.mqtt is not None:
            await self.mqtt.restate(config, room_tags(config, controller))

    def _provide_controller_commands(self, task: ControllerTask, clock: Callable[[], float]) -> None:
        """Dispatch's offset and outdoor value reach the controller through MQTT commands; the
        offset's end is reported on the controller's ``clock``, the one it expires on."""
        async def offset(args: SetpointOffsetArgs, command: Command) -> dict[str, float]:
            if (refusal := task.set_dispatch_offset(args.offset_k, args.duration_s, command.origin)) is not None:
                raise Refused(refusal)
            return {"offset_k": args.offset_k, "until": clock() + args.duration_s}

        async def outdoor(args: OutdoorArgs, command: Command) -> dict[str, float]:
            if (refusal := task.set_dispatch_outdoor(args.value_c, command.origin)) is not None:
                raise Refused(refusal)
            return {"value_c": args.value_c}

        self.commands.provide("setpoint_offset", offset)
        self.commands.provide("outdoor", outdoor)

    async def _consume_bus(self) -> None:
        """Keep the latest values current."""
        async for item in self._latest_feed:
            self.latest.update(item)

    async def __aenter__(self) -> Gateway:
        if self.mqtt is not None:
            await self.mqtt.__aenter__()
        try:
            await self.alarms.__aenter__()  # after the outbox opens: restored transitions go out through it
        except BaseException as exc:
            if self.mqtt is not None:
                await self.mqtt.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._tasks.append(asyncio.create_task(self.alarms.run(), name="alarms"))
        self._tasks.append(asyncio.create_task(self.writes.run(), name="writes"))
        self._tasks.append(asyncio.create_task(self._consume_bus(), name="latest-values"))
        if self.controller is not None:
            self._tasks.append(asyncio.create_task(self.controller.run(), name="controller"))
        if self.metrics is not None and self.mqtt is not None:
            self._tasks.append(asyncio.create_task(refresh_outbox(self.metrics, self.mqtt.outbox), name="metrics"))
        for task in self._tasks:
            task.add_done_callback(self._report_if_died)
        self.start_devices(self.devices)
        if self._metrics_server is not None:
            self._metrics_server.__enter__()
        log.info("gateway started", extra=kv(station=self.config.station.id, devices=len(self.devices),
                                             tags=sum(len(d.tags) for d in self.devices.values())))
        return self

    def stalled(self) -> list[str]:
        """The parts that made no progress within their own patience (the systemd watchdog)."""
        now = asyncio.get_running_loop().time()
        parts = [f"poller:{name}" for name, device in self.devices.items() if device.stalled(now)]
        if self.mqtt is not None and self.mqtt.outbox.busy_s(now) > OUTBOX_PATIENCE_S:
            parts.append("outbox")
        if self.controller is not None and self.controller.stalled(now):
            parts.append("controller")
        parts.extend(f"task:{task.get_name()}" for task in self._tasks if task.done())
        return parts

    async def status_line(self) -> str:
        """One line for ``systemctl status``: devices online, outbox backlog, controller phase, alarms."""
        online = sum(1 for device in self.devices.values() if device.online)
        parts = [f"devices {online}/{len(self.devices)} online"]
        if self.mqtt is not None:
            stats = await self.mqtt.outbox.stats()
            link = "connected" if self.mqtt.publisher.connected.is_set() else "disconnected"
            parts.append(f"mqtt {link}, outbox {stats.pending_messages} pending")
        if self.controller is not None and (state := self.controller.state) is not None:
            phases = ",".join(sorted({circuit.phase for circuit in state.circuits}))
            parts.append(f"controller {state.season.value} {phases}")
        open_alarms = self.alarms.engine.open_alarms()
        unacknowledged = sum(t.record.state is not AlarmState.ACKNOWLEDGED for t in open_alarms)
        parts.append(f"alarms {len(open_alarms)} open, {unacknowledged} unacknowledged")
        return "; ".join(parts)

    def _report_if_died(self, task: asyncio.Task[None]) -> None:
        """Every task of the gateway runs until the gateway stops: one that ends by itself is a
        defect that leaves the station without polling, writes or control, so it is logged at error
        at once (and its exception with it), never found later by its silence."""
        if task.cancelled() or (self._stopping and task.exception() is None):
            return
        log.error("gateway task stopped: the station runs without it until the gateway restarts",
                  extra=kv(task=task.get_name()), exc_info=task.exception())

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stopping = True
        if self._metrics_server is not None:
            self._metrics_server.__exit__(kind, exc, tb)
        await _cancel(self._tasks)
        self._tasks.clear()
        # Before the outbox closes: the transitions still queued are stored and sent.
        await self.alarms.__aexit__(kind, exc, tb)
        if self.mqtt is not None:
            # After the devices: the outbox stores everything they published before it closes.
            await self.mqtt.__aexit__(kind, exc, tb)
        log.info("gateway stopped", extra=kv(station=self.config.station.id))


def room_tags(config: GatewayConfig, controller: ControllerConfig | None) -> set[str]:
    """The representative rooms' temperature tags: the controller's rooms and the rooms the
    station's events watch (the same list when both are configured)."""
    tags = set()
    if controller is not None:
        tags |= {sensor.temp_tag for circuit in controller.settings.circuits.values()
                 for sensor in circuit.rooms.values()}
    if config.events is not None and config.events.rooms is not None:
        tags |= set(config.events.rooms.tags)
    return tags


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again those that survive a cancellation.

    On Python 3.11 a poller can swallow one ``cancel()`` (pymodbus's ``wait_for`` returns the reply
    when the reply and the cancellation arrive together, CPython gh-86296); a stop that waited for
    it forever would never send the offline status nor close the outbox.
    """
    for task in tasks:
        task.cancel()
    pending = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, timeout=0.1)
        for task in pending:
            task.cancel()


def tune_garbage_collector() -> None:
    """Keep the collector from pausing the event loop for tens of milliseconds.

    A poll allocates many short-lived objects, so with the default thresholds full collections run
    every few seconds and each one walks every object alive since start-up (configuration,
    pymodbus, the other libraries): ~60 ms with the loop stopped, which was the p99 of poll lateness at 100
    devices (bench/poll.py). Start-up objects are frozen out of the collector's sight, and young
    garbage is collected in larger, cheaper rounds.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


async def run_until_signalled(config_path: Path, state_dir: Path, controller_path: Path | None = None) -> None:
    """``heatgw run``: start the gateway, reload the station file and the controller on SIGHUP
    (``gateway.reload``), stop on SIGTERM or SIGINT.

    The controller's settings come from ``controller_path``, else from the station file's own
    ``controller:`` section, if it has one.
    """
    startup = load_startup(config_path, controller_path, state_dir)  # the same check as `heatgw check`
    tune_garbage_collector()
    stop = asyncio.Event()
    notifier = Notifier.from_environment()
    with _signals_set(stop):
        async with Gateway(startup.station, state_dir=state_dir, controller=startup.controller) as gateway:
            reloader = Reloader(StationReload(gateway, config_path, controller_path, state_dir, startup))
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reloader)
            notifier.ready(await gateway.status_line())
            watchdog = asyncio.create_task(keep_alive(notifier, gateway.stalled, gateway.status_line), name="watchdog")
            try:
                await stop.wait()
            finally:
                notifier.stopping()
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
                await _cancel([watchdog])
                await reloader.close()
    notifier.close()


@contextlib.contextmanager
def _signals_set(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
