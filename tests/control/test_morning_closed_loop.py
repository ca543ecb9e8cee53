"""The morning after a setback, against the simulator (accelerated, no sockets).

After a setback the air comes back before the walls. A boost cut to a fixed hold at the target
left the corner room of a fast-cooling block sliding back below 18 C within the hour, morning
after morning, while the trim slowly took over; and by day a trim aimed at the target plus a
margin smaller than the sensor's rounding held the true room just under 18 C. Rooms are judged on
the simulator's true temperatures; the controller sees what the gateway would (0.1 K steps every 5-15 min, some
reports lost).
"""

from __future__ import annotations

import numpy as np
import pytest

from tooling.harness import SimLoop
from tests.control.severe import severe_controller, severe_station
from tests.control.test_closed_loop import DAY, LOCAL_MIDNIGHT, Trace

pytestmark = pytest.mark.slow


def test_a_morning_that_sags_after_its_boost_is_boosted_again_and_the_next_ones_hold_18() -> None:
    # Six days at -4 C on the severe station: deep setbacks, quick boosts, cold walls.
    station = severe_station(LOCAL_MIDNIGHT, seed=2, mean_c=-4.0)
    ctl = severe_controller()
    trace = Trace()
    SimLoop(station, ctl, "radiators").run(6 * DAY, trace)
    assert min(trace.coldest_c) >= 16.0
    coldest, hour = np.array(trace.coldest_c), np.array(trace.local_hour)
    short = ((hour >= 6.0) & (hour < 21.0) & (coldest < 18.0)).reshape(6, -1).sum(axis=1)
    assert short[3:].sum() == 0, f"occupied minutes below 18 C per day: {short.tolist()}"
    circuits = [d.state.circuits[0] for d in trace.decisions]
    again = [(c, h) for c, h in zip(circuits, trace.local_hour, strict=True) if c.morning_boost]
    assert again, "no morning needed a second boost: the test proves nothing"
    # Boosted again only by day, while the room read short, within boost_decay_h of 06:00.
    assert all(c.phase == "day" and c.room_used_c is not None and c.room_used_c < c.room_floor_c and h < 10.0
               for c, h in again)
    # ...and it learned: the hold after the boost grew from the configured 5 K.
    assert ctl.circuits["radiators"].hold.value_k > 5.0
    assert max(c.boost_k for c in circuits if c.phase == "day") > 5.0


def test_the_day_aim_allows_for_the_reading_being_rounded_so_the_true_room_holds_18() -> None:
    # Five days at -15 C on the severe station. The trim holds the reading, and a reading of 18.0
    # may be a room at 17.95: aimed at 18.15, the corner room sat at a true 17.95-18.0 for hours.
    station = severe_station(LOCAL_MIDNIGHT, seed=4, mean_c=-15.0)
    trace = Trace()
    SimLoop(station, severe_controller(), "radiators").run(5 * DAY, trace)
    assert trace.occupied_share_at_or_above(18.0) >= 0.995
    assert min(trace.coldest_c) >= 16.0
    days = [d.state.circuits[0] for d in trace.decisions if d.state.circuits[0].phase == "day"]
    assert {round(c.room_floor_c, 6) for c in days} == {18.2}  # 18 + margin_k 0.15 + half of the 0.1 K step
