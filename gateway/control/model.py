"""What goes into the controller each cycle and what comes out: plain, typed, immutable values.

The inputs are what the gateway knows (values with a verdict on their quality and their age), not
samples or tags, so the controller can be driven as easily by a test, the simulator or the
gateway. The output state is what gets published every cycle: everything an operator needs to see
why the setpoint is what it is, as a frozen dataclass that ``to_dict`` turns into JSON-ready data.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.control.settings import SeasonMode


@dataclass(frozen=True, slots=True)
class Reading:
    """One input value with its verdict: usable or not (and why), and how old it is.

    ``age_s`` is the time since the value was measured: for a wireless room sensor the age its
    concentrator reports, for a polled value the time since it was read.
    """

    value: float | None
    ok: bool = True
    age_s: float = 0.0
    reason: str = ""

    @classmethod
    def missing(cls, reason: str) -> Reading:
        return cls(None, ok=False, reason=reason)

    @property
    def usable(self) -> float | None:
        """The value if it is good and a number, else None."""
        return self.value if self.ok and self.value is not None else None


NO_READING = Reading.missing("not configured")


@dataclass(frozen=True, slots=True)
class DispatchOffset:
    """A curve offset ordered by the dispatch centre: bounded, expiring, with who asked."""

    offset_k: float
    expires_at: float
    origin: str


@dataclass(frozen=True, slots=True)
class CircuitInputs:
    """What one circuit's controller reads: its rooms, its PLC setpoint, its limiters' measurements."""

    rooms: Mapping[str, Reading] = field(default_factory=dict)
    setpoint_c: Reading = NO_READING  # the PLC's current supply setpoint (read back)
    supply_c: Reading = NO_READING  # secondary supply temperature (frost protection)
    primary_return_c: Reading = NO_READING
    power_kw: Reading = NO_READING
    flow_m3h: Reading = NO_READING
    pump_fault: Reading = NO_READING  # 1.0 tripped, 0.0 healthy
    pump_running: Reading = NO_READING  # 1.0 running, 0.0 stopped
    circulation_m3h: Reading = NO_READING


@dataclass(frozen=True, slots=True)
class ControllerInputs:
    """Everything the controller reads in one cycle."""

    outdoor: Reading
    circuits: Mapping[str, CircuitInputs]
    dispatch_outdoor: Reading = NO_READING  # age = time since dispatch sent it
    offset: DispatchOffset | None = None
    primary_supply_c: Reading = NO_READING  # the network's supply at the station: corroborates the outdoor sensor


class OutdoorSource(str, enum.Enum):
    """Where the outdoor temperature in use came from: the fallback chain, in order."""

    SENSOR = "sensor"
    DISPATCH = "dispatch"
    LAST_GOOD = "last_good"
    DEFAULT = "default"


class Signal(str, enum.Enum):
    """Conditions the alarm engine raises; stable strings, they are published."""

    OUTDOOR_SENSOR_FAULT = "outdoor_sensor_fault"
    OUTDOOR_FROM_DISPATCH = "outdoor_from_dispatch"
    OUTDOOR_LAST_GOOD = "outdoor_last_good"
    OUTDOOR_DEFAULT = "outdoor_default"
    OUTDOOR_SUSPECT = "outdoor_suspect"
    ROOMS_NONE_VALID = "rooms_none_valid"
    ROOM_SENSOR_INVALID = "room_sensor_invalid"
    RETURN_LIMIT_ACTIVE = "return_limit_active"
    POWER_LIMIT_ACTIVE = "power_limit_active"
    FLOW_LIMIT_ACTIVE = "flow_limit_active"
    LIMITER_SENSOR_FAULT = "limiter_sensor_fault"
    DISPATCH_OFFSET_ACTIVE = "dispatch_offset_active"
    FROST_PROTECTION = "frost_protection"
    MORNING_TARGET_MISSED = "morning_target_missed"
    COMFORT_TARGET_MISSED = "comfort_target_missed"
    ROOMS_LOST_RECOVERY = "rooms_lost_recovery"
    SETPOINT_NOT_WRITTEN = "setpoint_not_written"
    CIRCULATION_LOST = "circulation_lost"


@dataclass(frozen=True, slots=True)
class LimiterState:
    """One limiter this cycle: the measurement, the line's limit, the reduction it applies."""

    name: str  # return_limit, power_limit, flow_limit
    measured: float | None
    limit: float
    reduction_k: float
    active: bool
    fault: str = ""


@dataclass(frozen=True, slots=True)
class CircuitState:
    """Why one circuit's setpoint is what it is, step by step from the curve to the PLC."""

    circuit: str
    curve: str  # identity of the curve in force
    heating: bool  # False: off / cut out / cold circulation (then ``reason`` says which)
    reason: str  # e.g. "heating", "cut-out: damped outdoor 17.4 C", "frost protection"
    phase: str  # day, coast (night, supply cut), night (holding the night floor), preheat (boost)
    outdoor_damped_c: float
    outdoor_curve_c: float  # composite of actual and damped: what the curve is read at
    room_floor_c: float  # the comfort floor now (target + margin; the day target once the boost runs)
    room_used_c: float | None  # the coldest valid room (or the configured percentile)
    room_used_name: str  # which room that was ("" if none)
    rooms_valid: int
    rooms_total: int
    curve_c: float  # the curve at the composite outdoor temperature, for the comfort floor
    trim_room_k: float  # room trim, as a shift of the room temperature the curve serves
    trim_k: float  # what that shift does to the supply, K
    trim_integral_k: float  # the learned part of the trim (room K)
    heatup_k_per_h: float  # predicted boost heat-up rate of the room that sets the start (0: none to plan)
    setback: bool  # may the rooms fall to the night floor tonight
    setback_reason: str  # why not ("" when they may)
    headroom_k: float  # room K the boost could add, against boost_ceiling_c, at the night's planned outdoor
    boost_ceiling_c: float  # the highest supply the boost will get: the curve's maximum, or what the limiters allowed
    coast_band_k: float  # the coast stops this far above the night floor (from the rooms' cooling rate and report age)
    cooling_k_per_h: float  # how fast the room setting the band cools with the supply cut (learned)
    comfort_missed: str  # rooms read below the contract now, e.g. "A-top-corner 17.8 C" ("" none)
    offset_k: float  # dispatch offset applied (0 when none)
    offset_origin: str
    limiters: tuple[LimiterState, ...]
    clamped: str  # "", "min" or "max": the circuit's supply limits held the setpoint
    ramp_limited: bool
    setpoint_c: float  # the decision
    boost_k: float = 0.0  # what is left of the boost, room K (its hold fading once the rooms are back)
    morning_boost: bool = False  # the boost runs on after the day start: the rooms are not yet back at the target
    trim_stored_k: float = 0.0  # room K of surplus the emitters' stored heat explains: the trim does not learn it away
    written_c: float | None = None  # filled in by the task: what reached the PLC this cycle
    write_status: str = ""  # filled in by the task: written, unchanged, refused: ...


@dataclass(frozen=True, slots=True)
class ControllerState:
    """The controller's published state for one cycle (``<prefix>/<station>/control`` on MQTT)."""

    timestamp: float
    season: SeasonMode
    season_reason: str
    outdoor_raw_c: float | None  # the sensor's reading, even when rejected
    outdoor_c: float  # the value in use after plausibility checks and fallback
    outdoor_source: OutdoorSource
    outdoor_fault: str  # why the sensor was rejected ("" when it is fine)
    outdoor_network_c: float | None  # the outdoor temperature the primary supply corresponds to (None: no evidence)
    circuits: tuple[CircuitState, ...]
    signals: tuple[Signal, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (enums as their strings, tuples as lists)."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, float):
        return round(value, 3)
    return value


@dataclass(frozen=True, slots=True)
class ControllerDecision:
    """One cycle's result: the setpoint per circuit, and the state that explains it."""

    setpoints: Mapping[str, float]
    state: ControllerState
