"""Assemble the gateway from its configuration and run it until told to stop.

This is the only module that knows every part; the parts only know the bus and their own job
(the poller does not know who consumes samples, the write queue does not know who writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from drivers.modbus.link import ModbusLink
from gateway.bus import Bus
from gateway.config import GatewayConfig, load_gateway_config
from gateway.logs import kv
from gateway.poller import DevicePoller
from gateway.tagmap import link_key, make_link
from gateway.writes import WriteQueue

log = logging.getLogger(__name__)


class Gateway:
    """The running gateway: pollers feeding the bus, and the write queue. Use ``async with``."""

    def __init__(self, config: GatewayConfig, bus: Bus | None = None) -> None:
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
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Gateway:
        for name, poller in self.pollers.items():
            self._tasks.append(asyncio.create_task(poller.run(), name=f"poll:{name}"))
        self._tasks.append(asyncio.create_task(self.writes.run(), name="writes"))
        log.info("gateway started", extra=kv(station=self.config.station.id, devices=len(self.pollers),
                                             tags=sum(len(p.tags) for p in self.pollers.values())))
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        log.info("gateway stopped", extra=kv(station=self.config.station.id))


async def run_until_signalled(config_path: Path) -> None:
    """``heatgw run``: start the gateway, stop cleanly on SIGTERM or SIGINT."""
    config = load_gateway_config(config_path)
    stop = asyncio.Event()
    with _signals_set(stop):
        async with Gateway(config):
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
