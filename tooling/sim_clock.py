"""The simulator's time, read from its control port, for a controller running on accelerated time.

``heatgw sim run --speed 600`` advances its station by the wall time that elapsed times the speed,
so a simulated day lasts 2.4 minutes. A controller whose schedules (day, night, the morning boost),
filters and expiries must follow that day needs "what time is it in the simulation?" on every cycle,
ten times a second, faster than asking the simulator each time would allow. ``SimClock`` answers
from an anchor (the ``sim_time`` of a ``status`` reply, and when it was received) plus the wall
time since then times the speed, and ``keep_anchored`` re-reads the anchor now and then, so a
simulator that fell behind (a busy machine, a paused process) does not leave the clock drifting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime

from gateway.logs import kv
from sim.runner import send_control

log = logging.getLogger(__name__)

REANCHOR_EVERY_S = 5.0
"""Wall seconds between two status requests: drift stays far below one control cycle."""


class SimClock:
    """Simulated POSIX time, callable like ``time.time``; it never runs backwards.

    The status reply's time is the simulator's at its last tick (every ``tick_s`` of wall time), so
    a re-anchored clock can land a little behind the one it replaces. The controller's filters and
    timers must not see time go back, so the clock holds still until the simulation catches up.
    """

    def __init__(self, sim_time: float, speed: float, *, wall: Callable[[], float] = time.monotonic) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.speed = speed
        self._wall = wall
        self._anchor_sim = sim_time
        self._anchor_wall = wall()
        self._last = sim_time

    def anchor(self, sim_time: float, received_at: float | None = None) -> None:
        """The simulation was at ``sim_time`` at wall time ``received_at`` (default: now)."""
        self._anchor_sim = sim_time
        self._anchor_wall = self._wall() if received_at is None else received_at

    def __call__(self) -> float:
        self._last = max(self._last, self._anchor_sim + (self._wall() - self._anchor_wall) * self.speed)
        return self._last


async def read_status(host: str, port: int) -> tuple[float, float]:
    """The simulator's (sim_time as POSIX seconds, speed) from its control port."""
    reply = await send_control(host, port, {"cmd": "status"})
    if not reply.get("ok"):
        raise RuntimeError(f"simulator status refused: {reply.get('error')}")
    result = reply["result"]
    return datetime.fromisoformat(result["sim_time"]).timestamp(), float(result["speed"])


async def sim_clock(host: str, port: int) -> SimClock:
    """A clock anchored on the simulator's status now, at the speed it reports."""
    sim_time, speed = await read_status(host, port)
    return SimClock(sim_time, speed)


async def keep_anchored(clock: SimClock, host: str, port: int, every_s: float = REANCHOR_EVERY_S) -> None:
    """Re-anchor ``clock`` every ``every_s`` wall seconds, forever (until cancelled).

    A failed request keeps the current anchor: the clock runs on at its speed meanwhile.
    """
    while True:
        await asyncio.sleep(every_s)
        try:
            sim_time, _ = await read_status(host, port)
        except (OSError, RuntimeError, ValueError, KeyError) as exc:  # timeouts and refusals are OSErrors
            log.warning("simulator status unavailable, the simulated clock runs on", extra=kv(
                host=host, port=port, reason=str(exc) or type(exc).__name__))
            continue
        clock.anchor(sim_time)
