"""In-process fan-out bus: one producer side, many independent consumers.

Producers (the Modbus poller today, OPC UA subscriptions later) publish; each consumer reads its
own bounded queue, so a slow consumer never stalls polling. What happens when a consumer falls
behind is its own declared policy:

* ``lossless=True`` (the durable outbox): the producer waits for room. Losing telemetry is worse
  than a late poll, and the outbox drains in microseconds unless the disk is failing.
* ``lossless=False`` (a live view, a metrics counter): the oldest item is dropped and counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gateway.logs import kv
from gateway.samples import BusItem

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Subscription:
    """One consumer's view of the bus; iterate it with ``async for``."""

    name: str
    lossless: bool
    queue: asyncio.Queue[BusItem]
    dropped: int = field(default=0)

    def __aiter__(self) -> AsyncIterator[BusItem]:
        return self._items()

    async def _items(self) -> AsyncIterator[BusItem]:
        while True:
            yield await self.queue.get()

    def get_nowait(self) -> BusItem | None:
        """The next item if one is waiting (for consumers that poll, like a UI refresh)."""
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return None


class Bus:
    """Fan-out of bus items to every subscription."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []

    def subscribe(self, name: str, *, maxsize: int = 1024, lossless: bool = False) -> Subscription:
        """Add a consumer. Subscribe before producers start, or the early items are not seen."""
        subscription = Subscription(name, lossless, asyncio.Queue(maxsize))
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.remove(subscription)

    async def publish(self, item: BusItem) -> None:
        """Deliver ``item`` to every subscription according to its policy."""
        for subscription in self._subscriptions:
            if subscription.lossless:
                await subscription.queue.put(item)
                continue
            if subscription.queue.full():
                subscription.queue.get_nowait()
                subscription.dropped += 1
                if subscription.dropped in (1, 10, 100) or subscription.dropped % 1000 == 0:
                    log.warning("bus consumer is falling behind, dropping oldest", extra=kv(
                        consumer=subscription.name, dropped=subscription.dropped))
            subscription.queue.put_nowait(item)
