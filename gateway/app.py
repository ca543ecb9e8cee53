"""Assemble the gateway from its configuration and run it until told to stop.

This is the only module that knows every part; the parts only know the bus and their own job
(the poller does not know who consumes samples, the write queue does not know who writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from drivers.modbus.link import ModbusLink
from gateway.bus import Bus
from gateway.config import GatewayConfig, load_gateway_config
from gateway.logs import kv
from gateway.mqtt.commands import CommandRegistry, standard_commands
from gateway.mqtt.service import MqttService
from gateway.poller import DevicePoller
from gateway.tagmap import link_key, make_link
from gateway.writes import WriteQueue

log = logging.getLogger(__name__)


class Gateway:
    """The running gateway: pollers feeding the bus, the write queue, and (when the configuration
    has an ``mqtt`` section and a state directory is given for the outbox) telemetry and commands
    over MQTT. Use ``async with``."""

    def __init__(self, config: GatewayConfig, bus: Bus | None = None, *, state_dir: Path | None = None) -> None:
        self.config = config
        self.bus = bus or Bus()
        links: dict[tuple[str, ...], ModbusLink] = {}
        self.pollers: dict[str, DevicePoller] = {}
        for name, device in config.devices.items():
            key = link_key(device, name)
            if key not in links:
                links[key] = make_link(device)
            self.pollers[name] = DevicePoller(name, device, config.groups, links[key], self.bus)
        self.writes = WriteQueue(self.pollers)
        self.commands: CommandRegistry = standard_commands(self.writes)
        self.mqtt: MqttService | None = None
        if config.mqtt is not None and state_dir is None:
            log.warning("mqtt is configured but no state directory was given for the outbox: MQTT is off",
                        extra=kv(station=config.station.id))
        elif config.mqtt is not None and state_dir is not None:
            # Built before the pollers start, so the outbox's bus subscription sees the first sample.
            self.mqtt = MqttService(config, self.bus, state_dir, self.commands, started=time.time())
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Gateway:
        if self.mqtt is not None:
            await self.mqtt.__aenter__()
        for name, poller in self.pollers.items():
            self._tasks.append(asyncio.create_task(poller.run(), name=f"poll:{name}"))
        self._tasks.append(asyncio.create_task(self.writes.run(), name="writes"))
        log.info("gateway started", extra=kv(station=self.config.station.id, devices=len(self.pollers),
                                             tags=sum(len(p.tags) for p in self.pollers.values())))
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await _cancel(self._tasks)
        self._tasks.clear()
        if self.mqtt is not None:
            # After the pollers: the outbox stores everything they published before it closes.
            await self.mqtt.__aexit__(kind, exc, tb)
        log.info("gateway stopped", extra=kv(station=self.config.station.id))


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
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.error("task failed", extra=kv(task=task.get_name()), exc_info=task.exception())


async def run_until_signalled(config_path: Path, state_dir: Path) -> None:
    """``heatgw run``: start the gateway, stop cleanly on SIGTERM or SIGINT."""
    config = load_gateway_config(config_path)
    stop = asyncio.Event()
    with _signals_set(stop):
        async with Gateway(config, state_dir=state_dir):
            await stop.wait()


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
