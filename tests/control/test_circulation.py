"""Without circulation the controller stops asking for heat it cannot deliver, says why, and
resumes when the water moves again."""

from __future__ import annotations

import pytest

from gateway.control.controller import circulation_lost
from gateway.control.model import CircuitInputs, Reading, Signal
from gateway.control.settings import CirculationSettings
from tests.control.conftest import controller
from tests.control.test_controller import NOON, fast_ramp, inputs

SETTINGS = CirculationSettings(pump_fault_tag="pump_fault", pump_running_tag="pump_running",
                               flow_tag="secondary_flow", min_flow_m3h=5)
HEALTHY = {"pump_fault": Reading(0.0), "pump_running": Reading(1.0), "circulation_m3h": Reading(40.0)}


@pytest.mark.parametrize(("readings", "why"), [
    ({}, ""),
    ({"pump_fault": Reading(1.0)}, "pump fault"),
    ({"pump_running": Reading(0.0)}, "pump not running"),
    ({"circulation_m3h": Reading(4.9)}, "flow 4.9 m3/h below 5"),
    ({"circulation_m3h": Reading(5.0)}, ""),
    ({"circulation_m3h": Reading.missing("bad: timeout"), "pump_fault": Reading.missing("bad: timeout")}, ""),
])
def test_circulation_is_lost_on_a_tripped_or_stopped_pump_or_too_little_flow(
        readings: dict[str, Reading], why: str) -> None:
    assert circulation_lost(CircuitInputs(**{**HEALTHY, **readings}), SETTINGS) == why
    assert circulation_lost(CircuitInputs(**{**HEALTHY, **readings}), None) == ""


def test_a_tripped_pump_holds_the_last_setpoint_with_a_reason_and_heat_resumes_after() -> None:
    ctl = controller(fast_ramp)  # config/controller.yaml names the demo station's pump and flow tags
    healthy = ctl.step(inputs(outdoor=-5.0, setpoint=60.0, **HEALTHY), NOON)
    before = healthy.setpoints["radiators"]
    assert Signal.CIRCULATION_LOST not in healthy.state.signals
    # The rooms cool and would pull the setpoint up; the pump is tripped, so nothing moves.
    tripped = ctl.step(inputs(outdoor=-12.0, rooms=15.0, setpoint=before,
                              **{**HEALTHY, "pump_fault": Reading(1.0), "circulation_m3h": Reading(0.0)}), NOON + 60)
    state = tripped.state.circuits[0]
    assert tripped.setpoints["radiators"] == pytest.approx(before)
    assert Signal.CIRCULATION_LOST in tripped.state.signals
    assert state.reason == f"circulation lost: pump fault; holding {before:.1f} C"
    back = ctl.step(inputs(outdoor=-12.0, rooms=15.0, setpoint=before, **HEALTHY), NOON + 120)
    assert back.setpoints["radiators"] > before + 5
    assert Signal.CIRCULATION_LOST not in back.state.signals and back.state.circuits[0].reason == "heating"
