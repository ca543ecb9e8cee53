"""The simulated clock: anchored on the simulator's status, running at its speed, never backwards."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from tooling.sim_clock import SimClock, keep_anchored, sim_clock
from sim.runner import SimRunner
from sim.station import Station
from tests.gateway.conftest import Clock


def test_it_runs_at_the_speed_from_its_anchor() -> None:
    wall = Clock(100.0)
    clock = SimClock(1_768_000_000.0, 600.0, wall=wall)
    assert clock() == 1_768_000_000.0
    wall.now += 0.5
    assert clock() == pytest.approx(1_768_000_300.0)


def test_a_new_anchor_moves_it_forward_at_once_but_never_back() -> None:
    wall = Clock(100.0)
    clock = SimClock(1000.0, 600.0, wall=wall)
    wall.now += 1.0
    clock.anchor(1720.0)  # the simulation is ahead of the estimate (1600)
    assert clock() == 1720.0
    clock.anchor(1660.0)  # a reply from just before the simulator's tick: 60 s behind
    assert clock() == 1720.0  # held...
    wall.now += 0.05
    assert clock() == 1720.0  # ...until the simulation catches up (1690 < 1720)...
    wall.now += 0.15
    assert clock() == pytest.approx(1780.0)  # ...then on at its speed from the new anchor


def test_the_speed_must_be_positive() -> None:
    with pytest.raises(ValueError, match="speed must be positive"):
        SimClock(0.0, 0.0)


async def test_it_follows_a_running_simulator() -> None:
    station = Station(start=datetime(2026, 1, 10, tzinfo=UTC), seed=1)
    async with SimRunner(station, speed=600.0, tick_s=0.05) as runner:
        assert runner.control_port is not None
        clock = await sim_clock("127.0.0.1", runner.control_port)
        assert clock.speed == 600.0
        follower = asyncio.create_task(keep_anchored(clock, "127.0.0.1", runner.control_port, every_s=0.2))
        try:
            await asyncio.sleep(0.5)
            # within two ticks (0.05 s of wall time, 30 simulated seconds each) of the simulation
            assert abs(clock() - runner.station.time_s) <= 60.0 + 1e-6
            runner.tick(3600.0)  # the simulation jumps an hour ahead of the clock's estimate
            await asyncio.sleep(0.5)  # two re-anchors
            assert abs(clock() - runner.station.time_s) <= 60.0 + 1e-6
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
