"""The bus's per-consumer loss policy, and the reconnect pacing every retry loop takes from ``Backoff.delay``."""

from __future__ import annotations

import asyncio
import random

import pytest

from gateway.bus import Bus
from gateway.config_base import Backoff
from gateway.samples import DeviceStatus


def status(n: int) -> DeviceStatus:
    return DeviceStatus("plc", True, float(n))


async def test_lossy_consumer_drops_oldest_and_counts_while_lossless_gets_everything() -> None:
    bus = Bus()
    live_view = bus.subscribe("view", maxsize=3)
    outbox = bus.subscribe("outbox", maxsize=100, lossless=True)
    for n in range(10):
        await bus.publish(status(n))
    assert live_view.dropped == 7
    assert [live_view.get_nowait().timestamp for _ in range(3)] == [7.0, 8.0, 9.0]  # type: ignore[union-attr]
    assert live_view.get_nowait() is None
    assert [outbox.get_nowait().timestamp for _ in range(10)] == [float(n) for n in range(10)]  # type: ignore[union-attr]


async def test_a_full_lossless_consumer_makes_the_producer_wait_instead_of_dropping() -> None:
    bus = Bus()
    outbox = bus.subscribe("outbox", maxsize=2, lossless=True)
    await bus.publish(status(0))
    await bus.publish(status(1))
    blocked = asyncio.create_task(bus.publish(status(2)))
    await asyncio.sleep(0.05)
    assert not blocked.done(), "the producer went on although the lossless consumer was full"
    assert outbox.get_nowait() is not None
    await asyncio.wait_for(blocked, 1.0)
    assert [outbox.get_nowait().timestamp for _ in range(2)] == [1.0, 2.0]  # type: ignore[union-attr]


@pytest.mark.parametrize("seed", range(5))
async def test_backoff_doubles_within_its_jitter_and_stops_at_the_cap(seed: int) -> None:
    backoff = Backoff(initial_s=1.0, max_s=30.0, jitter=0.2)
    rng = random.Random(seed)
    for failures, base in ((1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (50, 30.0)):
        delay = backoff.delay(failures, rng)
        assert base * 0.8 <= delay <= base * 1.2 and delay <= backoff.longest_s(), (failures, delay)


async def test_jitter_spreads_a_fleet_reconnecting_after_the_same_outage() -> None:
    delays = {round(Backoff(initial_s=10.0, jitter=0.2).delay(1, random.Random(seed)), 3) for seed in range(20)}
    assert len(delays) > 15
