"""A controller that is safe by construction, against the simulator (accelerated, no sockets).

Each test is one way the night setback used to fail on a harsher station than the Beijing bench:
a corner room that cools faster than the fitted margins assumed, a return limiter that holds the
boost below the curve's maximum, an outdoor sensor that jumps and freezes, every room sensor lost
in the middle of a setback, and a comfort sag in the middle of the day nobody flagged. Rooms are
judged on the simulator's true temperatures; the controller sees what the gateway would.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tooling.harness import SimLoop
from gateway.control.model import OutdoorSource
from sim.station import Station
from sim.weather import SyntheticProfile
from tests.control.conftest import controller, radiators
from tests.control.severe import DESIGN_OUTDOOR_C, severe_controller, severe_station
from tests.control.test_closed_loop import DAY, LOCAL_MIDNIGHT, Trace

pytestmark = pytest.mark.slow

HOUR = 3600.0


def signalled(trace: Trace, name: str) -> list[bool]:
    """Whether each cycle's published state carried the signal called ``name``."""
    return [name in {signal.value for signal in d.state.signals} for d in trace.decisions]


def test_a_fast_cooling_corner_room_stays_above_16_on_severe_nights() -> None:
    # A -21 C week on a -24 C station: A's corner room (twice the building's loss per m2, an
    # undersized radiator, a 12 h building) falls 2 K/h once the supply is cut.
    station = severe_station(LOCAL_MIDNIGHT, seed=2, mean_c=-21.0)
    trace = Trace()
    SimLoop(station, severe_controller(), "radiators").run(4 * DAY, trace)
    assert min(trace.coldest_c) >= 16.0
    assert trace.occupied_share_at_or_above(18.0) >= 0.99
    circuits = [d.state.circuits[0] for d in trace.decisions]
    assert any(c.phase == "coast" for c in circuits)  # the setback is shortened, not given up...
    # ...by a coast band from the corner room's learned 2 K/h, far wider than the old fixed 0.8 K.
    assert max(c.coast_band_k for c in circuits if c.phase == "coast") > 1.0
    assert max(c.cooling_k_per_h for c in circuits if c.phase == "coast") > 1.0


def test_no_setback_is_planned_when_the_return_limiter_holds_the_boost_low() -> None:
    def tight_return_limit(data: dict[str, Any]) -> None:
        radiators(data)["return_limit"]["line"] = [{"outdoor_c": 0, "value": 62.0}]

    station = Station(start=LOCAL_MIDNIGHT, seed=3, weather=SyntheticProfile(mean_c=-7.6, seed=3))
    trace = Trace()
    SimLoop(station, controller(tight_return_limit), "radiators").run(4 * DAY, trace)
    assert trace.occupied_share_at_or_above(18.0) >= 0.99  # the mornings the setback used to miss
    assert min(trace.coldest_c) >= 16.0
    circuits = [d.state.circuits[0] for d in trace.decisions]
    held = [i for i, c in enumerate(circuits) if c.phase == "preheat" and c.boost_ceiling_c < 85.0 - 1.0]
    assert held, "the limiter never held a boost: the test proves nothing"
    # From the night after the limiter held a boost, the plan measures the headroom against the
    # supply it got, finds too little in these -12 to -14 C nights, and keeps the day target.
    next_evening = (held[0] // 1440 + 1) * 1440 + 21 * 60
    later = circuits[next_evening:]
    assert not any(c.phase in ("coast", "preheat") for c in later)
    assert all(not c.setback and "limiters held the supply" in c.setback_reason for c in later)


def test_a_stuck_outdoor_sensor_jump_is_not_believed_and_last_good_is_from_before_it() -> None:
    station = severe_station(LOCAL_MIDNIGHT, seed=1, mean_c=-20.0)
    loop = SimLoop(station, severe_controller(), "radiators")
    before = Trace()
    loop.run(DAY + 22 * HOUR, before)  # a day to learn how the network's supply follows the weather
    last = before.decisions[-1].state
    assert last.outdoor_source is OutdoorSource.SENSOR and last.outdoor_c < -18.0
    station.faults.freeze("outdoor", -5.0)  # 16 K warmer at once, then never moves again
    after = Trace()
    loop.run(14 * HOUR, after)
    states = [d.state for d in after.decisions]
    assert not any(s.outdoor_source is OutdoorSource.SENSOR for s in states)
    assert all("outdoor_suspect" in {signal.value for signal in s.signals} for s in states)
    assert "contradicted by the primary supply" in states[60].outdoor_fault
    held = [s.outdoor_c for s in states if s.outdoor_source is OutdoorSource.LAST_GOOD]
    assert held and set(held) == {last.outdoor_c}  # the value before the jump, not the jump
    assert states[-1].outdoor_source is OutdoorSource.DEFAULT and states[-1].outdoor_c == DESIGN_OUTDOOR_C
    assert min(after.coldest_c) >= 16.0
    assert after.occupied_share_at_or_above(18.0) >= 0.99


def test_losing_every_room_sensor_mid_setback_boosts_back_safely_and_keeps_the_trim() -> None:
    station = severe_station(LOCAL_MIDNIGHT, seed=3, mean_c=-18.0)
    loop = SimLoop(station, severe_controller(), "radiators")
    before = Trace()
    loop.run(DAY + 23 * HOUR, before)  # 23:00 of the second night: the rooms are set back
    assert before.decisions[-1].state.circuits[0].phase in ("coast", "night")
    day_trim = next(d.state.circuits[0].trim_integral_k for d in reversed(before.decisions)
                    if d.state.circuits[0].phase == "day")
    for room in station.room_names:
        station.faults.sensor_silent(room)  # the concentrator's radio link is gone
    after = Trace()
    loop.run(15 * HOUR, after)  # until 14:00
    circuits = [d.state.circuits[0] for d in after.decisions]
    lost = [i for i, c in enumerate(circuits) if c.rooms_valid == 0]
    assert lost, "the rooms never timed out: the test proves nothing"
    assert min(after.coldest_c) >= 16.0
    hours = np.array(after.local_hour)
    morning = (hours >= 6.5) & (hours < 14.0)
    assert np.min(np.array(after.coldest_c)[morning]) >= 17.9
    assert after.occupied_share_at_or_above(18.0) >= 0.95
    recovery = signalled(after, "rooms_lost_recovery")
    assert recovery[lost[0]] and circuits[lost[0]].phase == "preheat"  # a safe boost at once
    by_day = [c for c, h in zip(circuits, hours, strict=True) if 6.0 <= h < 14.0]
    assert all(c.trim_integral_k == pytest.approx(day_trim) for c in by_day)  # kept, not relearned
    assert all(c.trim_room_k >= day_trim - 1e-9 for c in by_day)  # and still acting on the curve


def test_a_comfort_sag_in_the_middle_of_the_day_is_flagged() -> None:
    station = Station(start=LOCAL_MIDNIGHT, seed=3, weather=SyntheticProfile(mean_c=-7.6, seed=3))
    loop = SimLoop(station, controller(), "radiators")
    morning = Trace()
    loop.run(DAY + 9.5 * HOUR, morning)
    station.faults.primary_loss()  # 09:30-11:30: the network stops delivering
    sag = Trace()
    loop.run(2 * HOUR, sag)
    station.faults.clear("primary_loss")
    loop.run(1.5 * HOUR, sag)
    flagged = signalled(sag, "comfort_target_missed")
    cold = [c < 17.95 for c in sag.coldest_c]
    assert any(cold), "the rooms never sagged: the test proves nothing"
    first_cold = cold.index(True)
    assert any(flagged[first_cold:first_cold + 30])  # within half an hour of the sag (report intervals)
    first = flagged.index(True)
    assert 9.5 <= sag.local_hour[first] < 11.0  # around 10:00, not only at 06:00
    assert sag.decisions[first].state.circuits[0].comfort_missed  # which rooms, at what reading
    occupied = [h >= 6.0 for h in morning.local_hour]
    quiet = [f for f, occ, c in zip(signalled(morning, "comfort_target_missed"), occupied, morning.coldest_c,
                                    strict=True) if occ and c >= 18.1]
    assert not any(quiet)  # and not while the rooms were comfortably at the target
