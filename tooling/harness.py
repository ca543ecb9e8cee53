"""The controller in the loop with the simulated station, without sockets (tests and the season bench).

The station's instruments (``Station.measurements()``: sensor faults applied, room sensors slow,
quantised and sometimes silent) become ``ControllerInputs`` the way the gateway would see them
through Modbus: temperatures rounded to the registers' 0.1 K, an open sensor's 850 C marked bad
by the tag's range. The decision is written to the PLC's supply setpoint within the PLC's limits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gateway.control.controller import Controller
from gateway.control.model import CircuitInputs, ControllerDecision, ControllerInputs, DispatchOffset, Reading
from gateway.control.settings import CircuitSettings
from sim.readings import Measurements
from sim.station import Station

REGISTER_STEP_C = 0.1
PLAUSIBLE_C = (-45.0, 150.0)
"""What the station file's tag ranges would let through as good; an open PT1000 (850 C) is bad."""


def _register(value: float | None) -> Reading:
    if value is None:
        return Reading.missing("no value")
    rounded = round(round(value / REGISTER_STEP_C) * REGISTER_STEP_C, 6)
    if not PLAUSIBLE_C[0] <= rounded <= PLAUSIBLE_C[1]:
        return Reading(rounded, False, reason="bad: out_of_range")
    return Reading(rounded)


def inputs_from(m: Measurements, circuit: CircuitSettings, setpoint_c: float) -> CircuitInputs:
    """One circuit's inputs from the simulator's instruments; rooms are matched by name."""
    rooms = {r.name: r for r in m.rooms}
    readings: dict[str, Reading] = {}
    for name in circuit.rooms:
        room = rooms.get(name)
        if room is None or room.temperature_c is None:
            readings[name] = Reading.missing("bad: no_value")
        else:
            reading = _register(room.temperature_c)
            readings[name] = Reading(reading.value, reading.ok, room.age_s, reading.reason)
    meter_ok = m.meter.status & 1 == 0
    return CircuitInputs(
        rooms=readings,
        setpoint_c=_register(setpoint_c),
        supply_c=_register(m.secondary_supply_c),
        primary_return_c=_register(m.primary_return_c),
        power_kw=Reading(m.meter.power_kw) if meter_ok else Reading.missing("meter probe error"),
        flow_m3h=Reading(m.meter.flow_m3h),
    )


@dataclass
class SimLoop:
    """Drive ``station`` with ``controller`` every ``cycle_s``; ``circuit`` is the one the PLC serves."""

    station: Station
    controller: Controller
    circuit: str
    cycle_s: float = 60.0
    offset: DispatchOffset | None = None
    dispatch_outdoor: float | None = None
    dispatch_sent_at: float = 0.0
    decisions: int = field(default=0, init=False)

    def run(self, duration_s: float, observe: Callable[[Station, ControllerDecision], None] | None = None) -> None:
        """Run for ``duration_s`` of simulated time; ``observe`` sees the station after each decision."""
        end = self.station.time_s + duration_s
        while self.station.time_s < end - 1e-6:
            decision = self.cycle()
            if observe is not None:
                observe(self.station, decision)
            self.station.step(min(self.cycle_s, end - self.station.time_s))

    def cycle(self) -> ControllerDecision:
        """Read the instruments, decide, write the PLC setpoint (rounded to the register, clamped by the PLC)."""
        station = self.station
        m = station.measurements()
        settings = self.controller.config.settings
        plc = station.plc
        circuits: Mapping[str, CircuitInputs] = {
            name: inputs_from(m, circuit, plc.supply_setpoint_c) for name, circuit in settings.circuits.items()
        }
        dispatch = Reading.missing("none received")
        if self.dispatch_outdoor is not None:
            dispatch = Reading(self.dispatch_outdoor, True, m.timestamp - self.dispatch_sent_at)
        inputs = ControllerInputs(_register(m.outdoor_c), circuits, dispatch, self.offset,
                                  _register(m.primary_supply_c))
        decision = self.controller.step(inputs, m.timestamp)
        plc.supply_setpoint_c = round(decision.setpoints[self.circuit] / REGISTER_STEP_C) * REGISTER_STEP_C
        self.decisions += 1
        return decision
