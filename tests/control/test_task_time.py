"""ControllerTask on accelerated time (the demo): ages and the cycle period follow ``time_scale``.

The task's clock is the station's simulated time; the samples are stamped by a wall clock the test
sets by hand (or the real one, where the event loop's timing is what is tested).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.control.model import ControllerState, Signal
from gateway.samples import Sample, SampleBatch
from tests.control.test_task import Rig
from tests.gateway.conftest import Clock

ROOMS = ("a_1", "a_top_corner", "b_1", "b_top_corner", "c_1", "c_top_corner")
MAX_AGE_S = 1800.0  # room_trim.max_age_s in config/controller.yaml


def reported_just_now(rig: Rig) -> None:
    """Every room sensor reported at the moment of the poll (concentrator age 0)."""
    rig.latest.update(SampleBatch("plc", "slow", tuple(
        Sample(f"room_{room}_age", 0, rig.sample_clock()) for room in ROOMS)))


@pytest.mark.parametrize(("time_scale", "wall_s", "valid"), [
    (600.0, 0.98 * MAX_AGE_S / 600, 6),  # 1764 simulated seconds old: still fresh enough
    (600.0, 1.02 * MAX_AGE_S / 600, 0),  # 1836: too old, although only 3.06 s of wall time passed
    (1.0, 1.02 * MAX_AGE_S / 600, 6),  # unscaled, the same 3.06 s is 3.06 s
])
async def test_a_sample_age_is_the_wall_time_since_its_poll_times_the_scale(
        time_scale: float, wall_s: float, valid: int) -> None:
    wall = Clock(1_800_000_000.0)
    rig = Rig(time_scale=time_scale, sample_clock=wall)
    rig.poll()
    reported_just_now(rig)
    wall.now += wall_s
    state = await rig.task.cycle()
    assert state.circuits[0].rooms_valid == valid
    assert (Signal.ROOMS_NONE_VALID in state.signals) is (valid == 0)


async def test_by_default_samples_are_stamped_on_the_task_clock() -> None:
    rig = Rig()  # no sample_clock: the station's time stamps the samples and measures their age
    rig.poll()
    rig.latest.update(SampleBatch("plc", "slow", tuple(
        Sample(f"room_{room}_age", int(MAX_AGE_S) - 10, rig.station.time_s) for room in ROOMS)))
    assert (await rig.task.cycle()).circuits[0].rooms_valid == 6
    rig.station.step(20.0)  # 20 s more on the task's clock: 1810 s old
    assert (await rig.task.cycle()).circuits[0].rooms_valid == 0


async def cycles_run_within(rig: Rig, seconds: float) -> int:
    """Run the task for ``seconds`` of loop time; how many cycles it published."""
    rig.poll()
    runner = asyncio.create_task(rig.task.run())
    await asyncio.sleep(seconds)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    published = 0
    while (item := rig.published.get_nowait()) is not None:
        published += isinstance(item, ControllerState)
    return published


async def test_a_cycle_lasts_cycle_s_divided_by_the_time_scale() -> None:
    # 60 s cycles at 600x: one every 0.1 s of loop time, so about ten in a second (a busy machine
    # may skip a few slots; the grid never runs two late cycles back to back).
    cycles = await cycles_run_within(Rig(time_scale=600.0, sample_clock=time.time), 1.0)
    assert 5 <= cycles <= 11


async def test_unscaled_a_cycle_lasts_cycle_s() -> None:
    assert await cycles_run_within(Rig(), 0.5) == 1  # the first cycle; the next is 60 s away


async def test_the_ramp_goes_on_from_the_read_back_while_the_poll_lags_the_writes() -> None:
    wall = Clock(1_800_000_000.0)
    rig = Rig(time_scale=600.0, sample_clock=wall)  # starts at midnight: the night coast ramps down
    rig.station.plc.supply_setpoint_c = 80.0
    rig.poll()
    await rig.task.cycle()  # the first cycle: no time has passed, nothing to ramp yet
    written = []
    for _ in range(10):  # ten cycles, and no poll in between (the demo polls once a second)
        rig.station.step(60.0)
        wall.now += 0.1
        written.append((await rig.task.cycle()).circuits[0].written_c)
    assert all(value is not None for value in written)
    # 20 K/h, a third of a kelvin a cycle, from 80 C: not back to the polled 80 C every kelvin
    assert written == sorted(written, reverse=True) and len(set(written)) == 10
    assert written[-1] == pytest.approx(80.0 - 10 * 20 / 60, abs=0.11)

    rig.station.plc.supply_setpoint_c = 55.0  # someone else wrote the PLC; a newer poll says so
    rig.station.step(60.0)
    wall.now += 0.1
    rig.poll()
    assert (await rig.task.cycle()).circuits[0].written_c == pytest.approx(54.7, abs=0.051)
