"""The gateway's MQTT side assembled: outbox, batcher and publisher, with one lifetime.

Start order matters: the outbox opens before anything may append to it, and the batcher's bus
subscription exists before the pollers start (it is made in the constructor). Stop order matters
more: the pollers stop first (the gateway does that), then the batcher stores what is left on the
bus, then the publisher says goodbye, then the outbox closes. A clean stop therefore loses nothing
that was polled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import sqlite3
from collections.abc import Collection, Mapping
from importlib.metadata import version
from pathlib import Path
from types import TracebackType

from gateway.bus import Bus
from gateway.config import GatewayConfig
from gateway.logs import kv
from gateway.mqtt.batcher import Batcher, Durable, report_filter
from gateway.mqtt.commands import CommandRegistry
from gateway.mqtt.outbox import AsyncOutbox
from gateway.mqtt.payloads import StationIdentity, TelemetryEncoder, config_hash, meta
from gateway.mqtt.publisher import Publisher
from gateway.yaml_source import ConfigError

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0


def outbox_path(state_dir: Path, station: str) -> Path:
    """One outbox per station id: a renamed station never sends its backlog under the new name."""
    return state_dir / f"outbox-{station}.sqlite"


class MqttService:
    """Telemetry store-and-forward and the command channel of one gateway. Use ``async with``."""

    def __init__(self, config: GatewayConfig, bus: Bus, state_dir: Path, commands: CommandRegistry,
                 started: float, durable: Mapping[type, Durable] | None = None, rooms: Collection[str] = ()) -> None:
        """``durable``: bus items other than samples that go through the outbox (see ``Durable``);
        ``rooms``: the representative rooms' tags, named as such in the retained meta."""
        settings = config.mqtt
        if settings is None:
            raise ValueError("the configuration has no mqtt section")
        digest = config_hash(config)
        self.identity = StationIdentity(config.station.id, version("heatgw"), digest, started)
        self.outbox = AsyncOutbox(outbox_path(state_dir, config.station.id), settings.outbox)
        self.batcher = Batcher(bus, self.outbox, TelemetryEncoder.for_config(config),
                               report_filter(config, settings), settings, durable=durable)
        self.publisher = Publisher(settings, self.identity, self.outbox, commands,
                                   functools.partial(meta, config, digest, rooms))
        self._tasks: list[asyncio.Task[None]] = []

    async def restate(self, config: GatewayConfig, rooms: Collection[str] = ()) -> None:
        """After a reload: the retained status carries the new config hash, the meta the new tags.
        The batcher follows by itself (``StationReloaded`` on the bus); the outbox stays as it is."""
        digest = config_hash(config)
        self.identity = dataclasses.replace(self.identity, config_hash=digest)
        await self.publisher.restate(self.identity, functools.partial(meta, config, digest, rooms))

    async def __aenter__(self) -> MqttService:
        try:
            await self.outbox.open()
        except (OSError, sqlite3.Error) as exc:
            # Not a passing fault: a missing or read-only state directory needs a person (exit 2).
            await self.outbox.close()
            raise ConfigError([f"--state-dir: cannot open the outbox {self.outbox.path}: {exc}"]) from None
        stats = await self.outbox.stats()
        log.info("outbox open", extra=kv(path=self.outbox.path, last_seq=stats.last_seq,
                                         pending_messages=stats.pending_messages,
                                         pending_samples=stats.pending_samples,
                                         dropped_messages=stats.dropped_messages))
        self._tasks = [asyncio.create_task(self.batcher.run(), name="mqtt-batcher"),
                       asyncio.create_task(self.publisher.run(), name="mqtt-publisher")]
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        batcher, publisher = self._tasks
        self.batcher.stop()
        await self._finish(batcher)
        self.publisher.stop()
        await self._finish(publisher)
        await self.outbox.close()

    async def _finish(self, task: asyncio.Task[None]) -> None:
        """Let ``task`` end by itself; cancel it if it does not within ``STOP_TIMEOUT_S``."""
        done, _ = await asyncio.wait([task], timeout=STOP_TIMEOUT_S)
        if not done:
            log.warning("mqtt task did not stop in time; cancelling it", extra=kv(task=task.get_name()))
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        elif not task.cancelled() and task.exception() is not None:
            log.error("mqtt task failed", extra=kv(task=task.get_name()), exc_info=task.exception())
