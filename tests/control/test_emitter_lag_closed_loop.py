"""Emitters with a lag of their own, against the simulator (accelerated, no sockets).

A floor slab passes a supply change on to the rooms over hours: a boost begun when the air alone
would need it comes too late, and the rooms keep falling after the supply is back up. Rooms are
judged on the simulator's true temperatures; the controller sees what the gateway would.
"""

from __future__ import annotations

import pytest

from tooling.harness import SimLoop
from tests.control.floor import floor_controller, floor_station
from tests.control.test_closed_loop import DAY, LOCAL_MIDNIGHT, Trace

pytestmark = pytest.mark.slow


def test_a_floor_circuit_whose_slab_outlasts_the_night_is_not_set_back_and_stays_warm() -> None:
    # Three days at -15 C: the slab's ~10 h lag is longer than the 9 h night, so no boost begun
    # after the day end could bring the rooms back by 06:00. The air-only plan coasted at 21:00,
    # boosted around 01:00 and had the rooms below 16 C before dawn and below 18 C until mid-morning.
    station = floor_station(LOCAL_MIDNIGHT, seed=4, mean_c=-15.0)
    trace = Trace()
    SimLoop(station, floor_controller(), "radiators").run(3 * DAY, trace)
    assert min(trace.coldest_c) >= 16.0
    assert trace.occupied_share_at_or_above(18.0) >= 0.99
    circuits = [d.state.circuits[0] for d in trace.decisions]
    night = [c for c, hour in zip(circuits, trace.local_hour, strict=True) if hour >= 21.0 or hour < 6.0]
    assert not any(c.phase in ("coast", "preheat") for c in night)
    assert all(not c.setback and c.setback_reason.startswith("emitter lag 10.5 h") for c in night)
