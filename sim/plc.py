"""The station PLC: the supply-temperature PI loop, its limits and its safety interlocks.

This is the local controller every real station has under the gateway: the gateway only writes
setpoints and commands (``supply_setpoint_c``, pump frequency, run/auto flags, valve mode) and the
PLC does the fast work itself. The protocol server (``sim.modbus_server``) reads and writes the
public attributes below; the physics (``sim.station``) calls ``scan`` once per PLC cycle.

Interlocks, the way station PLCs wire them:

* over-temperature: an independent safety thermostat on the secondary supply (not the PT1000
  the PI loop reads) above ``overtemp_limit_c``, or its test input -> valve closed, latched;
* over-pressure: secondary supply pressure above ``overpressure_limit_mpa``, or its test input
  -> valve closed and circulation pump stopped, latched;
* a latch clears on ``reset_alarms()`` only if its cause is gone by then;
* primary supply lost (available differential pressure below a threshold) is a status flag;
* circulation pump not running -> valve closed (stagnant water in the exchanger would boil);
* secondary supply reading outside the sensor's plausible range (open or shorted PT1000) ->
  the valve holds its last position instead of chasing a wrong value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum


class ValveMode(IntEnum):
    """How the control valve is driven: by the PI loop, or at the operator's fixed position."""

    AUTO = 0
    MANUAL = 1


@dataclass(frozen=True, slots=True)
class PlcLimits:
    """(min, max) the PLC accepts for each writable value, named like the ``Plc`` attribute.

    The protocol server refuses writes outside these; the PLC itself also clamps, as a real
    one does, so a direct Python write can never put the plant outside them either.
    """

    supply_setpoint_c: tuple[float, float] = (20.0, 95.0)
    pump_frequency_setpoint_hz: tuple[float, float] = (20.0, 50.0)
    manual_valve_pct: tuple[float, float] = (0.0, 100.0)

    def bounds(self, setting: str) -> tuple[float, float]:
        """The (min, max) of the ``Plc`` attribute called ``setting``."""
        if setting not in ("supply_setpoint_c", "pump_frequency_setpoint_hz", "manual_valve_pct"):
            raise KeyError(setting)
        low, high = getattr(self, setting)
        return float(low), float(high)


@dataclass(frozen=True, slots=True)
class PlcParams:
    """Tuning, interlock thresholds and power-up values of the station PLC.

    The PI tuning was chosen on the demo station's loop (valve stroke 90 s, ~0.5 m3 of water
    between exchanger and supply sensor, i.e. ~30 s at design flow, process gain 0.3-0.65 K per %
    of lift): it tracks a 10 K setpoint step within ~2 min with < 1 K overshoot. Thresholds are
    typical settings: a 95 degC safety thermostat (radiator networks are designed for at most
    85-95 degC), 0.8 MPa for radiators rated 1.0 MPa, 0.02 MPa as 'no primary differential pressure'.
    """

    pi_gain_pct_per_k: float = 3.0
    pi_integral_s: float = 45.0
    overtemp_limit_c: float = 95.0
    overpressure_limit_mpa: float = 0.80
    primary_lost_dp_mpa: float = 0.02
    supply_sensor_range_c: tuple[float, float] = (-20.0, 150.0)
    tracking_band_pct: float = 2.0
    """The integrator pauses while the valve trails its command by more than this (anti-windup
    against the actuator's rate limit, which the output clamp alone does not see)."""
    pump_frequency_setpoint_hz: float = 45.0
    pump_run_command: bool = True
    makeup_auto: bool = True


class Plc:
    """The station PLC's state: operator/gateway settings, PI loop, latched interlocks."""

    def __init__(
        self,
        params: PlcParams,
        valve_stroke_s: float,
        *,
        supply_setpoint_c: float,
        valve_position_pct: float,
        limits: PlcLimits | None = None,
    ) -> None:
        """Power up with the valve at ``valve_position_pct`` and a bumpless PI (integral = position)."""
        self._params = params
        self._limits = limits if limits is not None else PlcLimits()
        self._valve_stroke_s = float(valve_stroke_s)
        self._supply_setpoint_c = self._clamp("supply_setpoint_c", supply_setpoint_c)
        self._pump_frequency_setpoint_hz = self._clamp("pump_frequency_setpoint_hz", params.pump_frequency_setpoint_hz)
        self._manual_valve_pct = self._clamp("manual_valve_pct", valve_position_pct)
        self._valve_mode = ValveMode.AUTO
        self._pump_run_command = params.pump_run_command
        self._makeup_auto = params.makeup_auto
        self._command = float(valve_position_pct)
        self._integral = float(valve_position_pct)
        self._overtemp_trip = False
        self._overpressure_trip = False
        self._overtemp_cause = False
        self._overpressure_cause = False
        self._primary_lost = False

    # --- writable settings (clamped to the limits) ---

    @property
    def limits(self) -> PlcLimits:
        return self._limits

    @property
    def supply_setpoint_c(self) -> float:
        return self._supply_setpoint_c

    @supply_setpoint_c.setter
    def supply_setpoint_c(self, value: float) -> None:
        self._supply_setpoint_c = self._clamp("supply_setpoint_c", value)

    @property
    def pump_frequency_setpoint_hz(self) -> float:
        return self._pump_frequency_setpoint_hz

    @pump_frequency_setpoint_hz.setter
    def pump_frequency_setpoint_hz(self, value: float) -> None:
        self._pump_frequency_setpoint_hz = self._clamp("pump_frequency_setpoint_hz", value)

    @property
    def manual_valve_pct(self) -> float:
        return self._manual_valve_pct

    @manual_valve_pct.setter
    def manual_valve_pct(self, value: float) -> None:
        self._manual_valve_pct = self._clamp("manual_valve_pct", value)

    @property
    def valve_mode(self) -> ValveMode:
        return self._valve_mode

    @valve_mode.setter
    def valve_mode(self, value: ValveMode | int) -> None:
        self._valve_mode = ValveMode(value)

    @property
    def pump_run_command(self) -> bool:
        return self._pump_run_command

    @pump_run_command.setter
    def pump_run_command(self, value: bool) -> None:
        self._pump_run_command = bool(value)

    @property
    def makeup_auto(self) -> bool:
        return self._makeup_auto

    @makeup_auto.setter
    def makeup_auto(self, value: bool) -> None:
        self._makeup_auto = bool(value)

    # --- read-only parameters ---

    @property
    def pi_gain_pct_per_k(self) -> float:
        """Proportional gain: % of valve lift per K of supply-temperature error."""
        return self._params.pi_gain_pct_per_k

    @property
    def pi_integral_s(self) -> float:
        """Integral (reset) time of the PI loop, s."""
        return self._params.pi_integral_s

    @property
    def valve_stroke_s(self) -> float:
        """Time the actuator needs for a full 0-100 % stroke, s."""
        return self._valve_stroke_s

    # --- status ---

    @property
    def overtemp_trip(self) -> bool:
        return self._overtemp_trip

    @property
    def overpressure_trip(self) -> bool:
        return self._overpressure_trip

    @property
    def primary_supply_lost(self) -> bool:
        return self._primary_lost

    @property
    def valve_command_pct(self) -> float:
        """Position the PLC currently asks of the actuator."""
        return self._command

    @property
    def pump_enabled(self) -> bool:
        """The PLC's run signal to the circulation pump's drive."""
        return self._pump_run_command and not self._overpressure_trip

    def reset_alarms(self) -> None:
        """Alarm reset: clear each latched trip whose cause was absent at the last scan."""
        if not self._overtemp_cause:
            self._overtemp_trip = False
        if not self._overpressure_cause:
            self._overpressure_trip = False

    # --- one PLC cycle ---

    def scan(
        self,
        dt_s: float,
        supply_c: float,
        safety_supply_c: float,
        supply_mpa: float,
        primary_dp_mpa: float,
        valve_pct: float,
        pump_running: bool,
        forced_overtemp: bool,
        forced_overpressure: bool,
    ) -> float:
        """Read the inputs, update the interlocks and return the valve command (%).

        ``supply_c`` is the PT1000 the loop controls on (faults included); ``safety_supply_c`` is
        what the independent safety thermostat feels; ``valve_pct`` is the actuator's position
        feedback; ``forced_*`` are the interlocks' test inputs.
        """
        p = self._params
        self._overtemp_cause = forced_overtemp or safety_supply_c > p.overtemp_limit_c
        self._overpressure_cause = forced_overpressure or supply_mpa > p.overpressure_limit_mpa
        self._overtemp_trip = self._overtemp_trip or self._overtemp_cause
        self._overpressure_trip = self._overpressure_trip or self._overpressure_cause
        self._primary_lost = primary_dp_mpa < p.primary_lost_dp_mpa

        low, high = p.supply_sensor_range_c
        sensor_ok = low <= supply_c <= high
        error = self._supply_setpoint_c - supply_c if sensor_ok else 0.0
        if self._overtemp_trip or self._overpressure_trip or not pump_running:
            command = 0.0
        elif self._valve_mode is ValveMode.MANUAL:
            command = self._manual_valve_pct
        elif not sensor_ok:
            return self._command
        else:
            self._command = self._pi(dt_s, error, valve_pct)
            return self._command
        self._track(command, error)
        return command

    def _pi(self, dt_s: float, error: float, valve_pct: float) -> float:
        """Positional PI with conditional integration (anti-windup at the clamp and the rate limit)."""
        p = self._params
        proportional = p.pi_gain_pct_per_k * error
        unclamped = proportional + self._integral
        saturated = (unclamped >= 100.0 and error > 0.0) or (unclamped <= 0.0 and error < 0.0)
        trailing = (self._command - valve_pct) if error > 0.0 else (valve_pct - self._command)
        if not saturated and trailing <= p.tracking_band_pct:
            self._integral += p.pi_gain_pct_per_k * dt_s / p.pi_integral_s * error
            self._integral = min(100.0, max(0.0, self._integral))
        return min(100.0, max(0.0, proportional + self._integral))

    def _track(self, command: float, error: float) -> None:
        """While something else drives the valve, keep the PI ready for a bumpless return to AUTO."""
        self._command = command
        self._integral = min(100.0, max(0.0, command - self._params.pi_gain_pct_per_k * error))

    def _clamp(self, setting: str, value: float) -> float:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{setting} must be a finite number, got {value}")
        low, high = self._limits.bounds(setting)
        return min(high, max(low, value))
