"""The ``controller:`` section of the station configuration.

Every number the supply-curve controller acts on is here, with a default a station engineer can
defend (the domain brief's comfort rules, the Danfoss / Samson / Siemens factory settings), so an
operator can read *why* the setpoint is what it is without reading code. Curves live in their own
versioned files (they are filed with the dispatch centre); a circuit names its curve file, and the
path is resolved against the file this section is in when the controller is loaded
(``gateway.control.loader``), so this model stays plain data and ``GatewayConfig`` can be validated
without touching the disk.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, Field, StringConstraints, field_validator, model_validator

from gateway.config_base import Strict
from gateway.curves import Curve

if TYPE_CHECKING:
    from pathlib import Path

TagName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
CircuitName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
RoomName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]


def _calendar_day(value: str) -> str:
    try:
        dt.date(2001, int(value[:2]), int(value[3:]))
    except ValueError:
        raise ValueError(f"{value} is not a day of the year (29 Feb cannot be used either)") from None
    return value


MonthDay = Annotated[str, StringConstraints(pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"),
                     AfterValidator(_calendar_day)]
"""A calendar day without a year, ``MM-DD`` (the season repeats every year)."""


class SeasonMode(str, Enum):
    """Where the station is in the heating year (domain brief, "Calendar")."""

    OFF = "off"  # summer: no heat, frost protection only
    COLD_CIRCULATION = "cold_circulation"  # pumps run cold to find leaks: no heat yet
    COMMISSIONING = "commissioning"  # hot commissioning: heat, warmed step by step
    HEATING = "heating"  # the contract season
    EXTENSION = "extension"  # after the season end, kept on in cold weather


def season_day(month_day: str) -> int:
    """Days from 1 July to ``MM-DD`` (in a non-leap year), so a season that crosses New Year sorts."""
    month, day = (int(part) for part in month_day.split("-"))
    ordinal = dt.date(2001, month, day).toordinal() - dt.date(2001, 7, 1).toordinal()
    return ordinal % 365


class LinePoint(Strict):
    """One point of a limit line against outdoor temperature."""

    outdoor_c: float = Field(ge=-60, le=40)
    value: float


class LimitSettings(Strict):
    """A limiter: a limit line against outdoor temperature, and the slow loop that enforces it.

    Above the line, a PI loop lowers the supply setpoint: ``gain`` K of supply per unit of excess
    (K for a temperature, per cent of the limit for power and flow), integrated with
    ``integral_s`` (Siemens uses 30 min for the return limit); the reduction never exceeds
    ``max_reduction_k`` and is released the same slow way when the excess is gone.
    """

    tag: TagName
    line: list[LinePoint] = Field(min_length=1)
    gain: float = Field(default=2.0, gt=0, le=20)
    integral_s: float = Field(default=900.0, gt=0, le=86_400)
    max_reduction_k: float = Field(default=30.0, gt=0, le=80)

    @field_validator("line")
    @classmethod
    def _sorted(cls, line: list[LinePoint]) -> list[LinePoint]:
        outdoor = [p.outdoor_c for p in line]
        if any(b <= a for a, b in zip(outdoor, outdoor[1:], strict=False)):
            raise ValueError("line points must be sorted by outdoor_c, strictly increasing")
        return line


class OutdoorSettings(Strict):
    """The station's outdoor sensor, its plausibility checks and the fallback chain.

    Fallback order when the sensor fails a check: the value dispatch sent over MQTT (while younger
    than ``dispatch_max_age_s``), then the last good value (for ``hold_last_good_s`` after it was
    measured), then ``default_c``. The default is deliberately cold (the design outdoor
    temperature): with no idea of the weather, a little too much heat is a cost, too little is a
    refund and a complaint. A jump faster than ``max_rate_k_per_h`` is believed only when
    corroborated: by dispatch's value, by the network's supply temperature (``primary_supply_tag``:
    the utility runs it on its own outdoor curve, which the controller learns), or, with neither,
    by the reading holding ``jump_confirm_s`` and then moving like weather.
    """

    tag: TagName
    primary_supply_tag: TagName | None = Field(default=None,
                                               description="primary supply temperature: evidence for or against a jump")
    range_c: tuple[float, float] = (-45.0, 45.0)
    max_rate_k_per_h: float = Field(default=8.0, gt=0, le=100, description="fastest plausible change")
    jump_confirm_s: float = Field(default=1800.0, ge=0, le=86_400,
                                  description="without evidence, a new level that holds this long and then moves is accepted")
    frozen_after_s: float | None = Field(default=6 * 3600.0, gt=0,
                                         description="an unchanged reading for this long is a frozen sensor")
    frozen_tolerance_k: float = Field(default=0.05, ge=0, le=1)
    dispatch_max_age_s: float = Field(default=3600.0, gt=0, le=7 * 86_400)
    hold_last_good_s: float = Field(default=3 * 3600.0, ge=0, le=7 * 86_400)
    default_c: float = Field(default=-7.6, ge=-45, le=20)

    @model_validator(mode="after")
    def _ordered(self) -> OutdoorSettings:
        if self.range_c[1] <= self.range_c[0]:
            raise ValueError("range_c must be [low, high] with low < high")
        if not self.range_c[0] <= self.default_c <= self.range_c[1]:
            raise ValueError("default_c must lie inside range_c")
        return self


class RoomSensor(Strict):
    """A representative room (测温点): its temperature tag and, for wireless sensors, its age tag."""

    temp_tag: TagName
    age_tag: TagName | None = None


class OptimumStart(Strict):
    """Coast through the night, then boost just in time to have every room back by the day start.

    At night the supply is cut while the rooms are well above the night floor, and the floor is
    held after that. The boost (the circuit's maximum supply) starts at the last moment that
    still brings every valid room to the day target (``day_c + margin_k``) by ``day_start``: each
    room is predicted to warm at ``factor x headroom / building_time_constant_h`` K/h (capped by
    ``max_heatup_k_per_h``), where the headroom is how much warmer a room the maximum supply
    could serve now, in room kelvin via the curve. Every room's factor starts at
    ``heatup_factor`` and is learned from each boost (the rate it achieved against the rate
    predicted), within ``min_factor``-``max_factor``. On a night with less than ``min_headroom_k``
    of headroom (colder than the station was built for) there is no setback: the boost would
    bring the air back but not the walls, and the morning would sag. The start is brought
    forward by ``lead_h`` and by half the time the ramp needs to bring the setpoint up. Once the
    rooms are back the boost is cut to ``boost_hold_k`` (room kelvin) and fades with
    ``boost_decay_h``: the walls still lag the air.
    """

    enabled: bool = True
    heatup_factor: float = Field(default=1.0, gt=0, le=10, description="start value of each room's learned factor")
    min_factor: float = Field(default=0.25, gt=0, le=10)
    max_factor: float = Field(default=10.0, gt=0, le=10)
    max_heatup_k_per_h: float = Field(default=3.0, gt=0, le=5)
    lead_h: float = Field(default=0.5, ge=0, le=6, description="safety lead before the planned boost start")
    min_headroom_k: float = Field(default=2.0, ge=0, le=30,
                                  description="no setback on a night with less headroom than this")
    boost_hold_k: float = Field(default=5.0, ge=0, le=20,
                                description="what is left of the boost once the rooms are back")
    boost_decay_h: float = Field(default=4.0, gt=0, le=24,
                                 description="the boost left then fades with this time constant")
    learn: bool = True

    @model_validator(mode="after")
    def _bounds(self) -> OptimumStart:
        if not self.min_factor <= self.heatup_factor <= self.max_factor:
            raise ValueError("need min_factor <= heatup_factor <= max_factor")
        return self


class ComfortSettings(Strict):
    """The comfort contract of one circuit: the day target and the night floor, local time.

    ``margin_k`` is how far above the contract the controller aims at least: room sensors report
    every 5-15 min with 0.1 K resolution, so aiming exactly at 18.0 C would miss it half the time.
    At night the floor keeps more when the station shows it needs more: one sensor step plus what
    the room held on the floor would cool, with the supply cut, over its longest report interval
    (``gateway.control.safety``).
    """

    day_start: dt.time = dt.time(6, 0)
    day_end: dt.time = dt.time(21, 0)
    day_c: float = Field(default=18.0, ge=5, le=26)
    night_c: float = Field(default=16.0, ge=5, le=26)
    margin_k: float = Field(default=0.25, ge=0, le=3)
    optimum_start: OptimumStart = OptimumStart()

    @model_validator(mode="after")
    def _consistent(self) -> ComfortSettings:
        if self.night_c > self.day_c:
            raise ValueError("night_c must not be above day_c")
        if self.day_start >= self.day_end:
            raise ValueError("day_start must be before day_end (same day)")
        return self


class RoomTrimSettings(Strict):
    """How the rooms correct the curve: a PI on the coldest valid room, in room kelvin.

    The trim shifts the curve as a room-setpoint change would (``Curve.supply_for_room``), so one
    kelvin of trim means "the curve serves a room one kelvin warmer": the same correction holds at
    every outdoor temperature, which a plain supply offset does not. ``gain`` is the proportional
    part (room K of curve shift per K of room error), ``integral_h`` the integral time: the
    integral learns how far the filed curve is off for this building and is kept across nights.
    """

    percentile: float = Field(default=0.0, ge=0, le=50, description="0 = the coldest valid room")
    max_age_s: float = Field(default=1800.0, gt=0, le=86_400)
    plausible_c: tuple[float, float] = (5.0, 35.0)
    gain: float = Field(default=6.0, ge=0, le=30)
    integral_h: float = Field(default=3.0, gt=0, le=240)
    max_trim_k: float = Field(default=5.0, ge=0, le=15)


class FrostSettings(Strict):
    """Frost protection while the circuit does not heat (Synco: heat below 5 C flow until 7 C)."""

    supply_on_below_c: float = Field(default=5.0, ge=0, le=20)
    supply_off_above_c: float = Field(default=7.0, ge=0, le=25)
    outdoor_on_below_c: float = Field(default=-5.0, ge=-40, le=10,
                                      description="damped outdoor temperature that starts frost protection")
    supply_c: float = Field(default=30.0, ge=10, le=60, description="setpoint while frost protection runs")

    @model_validator(mode="after")
    def _hysteresis(self) -> FrostSettings:
        if self.supply_off_above_c <= self.supply_on_below_c:
            raise ValueError("supply_off_above_c must be above supply_on_below_c")
        return self


class CirculationSettings(Strict):
    """How the controller knows the circuit's water moves. Without circulation a higher setpoint
    cannot reach a single room: the valve only overheats the exchanger, and the moment the pump
    restarts the network gets the hottest water the controller asked for meanwhile. So while the
    circulation is lost the controller holds its last setpoint (signal ``circulation_lost``, and a
    reason in its state) and resumes from there when the water moves again. Each tag is optional;
    a bad or missing reading is not taken as lost (the alarm engine reports the sensor)."""

    pump_fault_tag: TagName | None = Field(default=None, description="bool, true when the pump tripped")
    pump_running_tag: TagName | None = Field(default=None, description="bool, true while the pump runs")
    flow_tag: TagName | None = Field(default=None, description="circulation flow, m3/h")
    min_flow_m3h: float = Field(default=5.0, gt=0, le=10_000, description="below this the water is not moving")


class CircuitSettings(Strict):
    """One heating circuit (radiators, floor heating): its curve, rooms, limits and setpoint tag."""

    curve: str = Field(min_length=1, description="curve file, relative to this configuration file")
    setpoint_tag: TagName
    supply_tag: TagName | None = Field(default=None, description="secondary supply, for frost protection")
    building_time_constant_h: float = Field(default=30.0, gt=0, le=200,
                                            description="damps the outdoor temperature (Siemens: light 10, medium 25, heavy 50)")
    composite_weight: float = Field(default=0.5, ge=0, le=1,
                                    description="share of the undamped outdoor temperature in the curve input")
    emitter_lag_h: float = Field(
        default=0.0, ge=0, le=48,
        description="how long the emitters take to pass a supply change on to the rooms: radiators about 0, "
                    "floor heating in a screed slab its time constant (slab capacity / surface conductance, "
                    "several hours); the boost starts that much earlier, and no setback when it fills the night")
    rooms: dict[RoomName, RoomSensor] = Field(default_factory=dict)
    comfort: ComfortSettings = ComfortSettings()
    room_trim: RoomTrimSettings = RoomTrimSettings()
    ramp_up_k_per_h: float = Field(default=20.0, gt=0, le=600)
    ramp_down_k_per_h: float = Field(default=20.0, gt=0, le=600)
    return_limit: LimitSettings | None = None
    power_limit: LimitSettings | None = None
    flow_limit: LimitSettings | None = None
    off_supply_c: float = Field(default=30.0, ge=10, le=60, description="setpoint while the circuit does not heat")
    frost: FrostSettings = FrostSettings()
    circulation: CirculationSettings | None = None


class EarlyStart(Strict):
    """Cold-weather rule: heat before the season (and keep heating after it) when it is cold.

    Early start: from ``early_from`` the heating starts once each of the last ``days`` complete
    days had a mean outdoor temperature at or below ``daily_mean_c``. Extension: after the season
    end, until ``extension_until``, heating continues while the mean of the last ``days`` days
    stays at or below it.
    """

    enabled: bool = True
    daily_mean_c: float = Field(default=5.0, ge=-20, le=15)
    days: int = Field(default=3, ge=1, le=14)
    early_from: MonthDay = "11-01"
    extension_until: MonthDay = "04-05"


class Cutout(Strict):
    """Summer / heating cut-out on the damped outdoor temperature (Siemens ECO), with hysteresis."""

    enabled: bool = True
    heating_limit_c: float = Field(default=17.0, ge=0, le=30)
    differential_k: float = Field(default=1.0, gt=0, le=10)


class SeasonSettings(Strict):
    """The heating calendar (dates inclusive, local time) and its manual override."""

    cold_circulation_from: MonthDay = "11-01"
    commissioning_from: MonthDay = "11-08"
    heating_from: MonthDay = "11-15"
    heating_until: MonthDay = "03-15"
    commissioning_ramp_k_per_h: float = Field(default=3.0, gt=0, le=60,
                                              description="setpoint ramp while the network is warmed")
    early_start: EarlyStart = EarlyStart()
    cutout: Cutout = Cutout()
    override: SeasonMode | None = Field(default=None, description="forces the mode, whatever the date")

    @model_validator(mode="after")
    def _ordered(self) -> SeasonSettings:
        days = [season_day(d) for d in (self.cold_circulation_from, self.commissioning_from,
                                        self.heating_from, self.heating_until)]
        if not days[0] <= days[1] <= days[2] < days[3]:
            raise ValueError("need cold_circulation_from <= commissioning_from <= heating_from < heating_until "
                             "(counted from 1 July)")
        if self.early_start.enabled:
            if season_day(self.early_start.early_from) > days[2]:
                raise ValueError("early_start.early_from must not be after heating_from")
            if season_day(self.early_start.extension_until) < days[3]:
                raise ValueError("early_start.extension_until must not be before heating_until")
        return self


class DispatchSettings(Strict):
    """Bounds on what the dispatch centre may send: curve offsets and its outdoor temperature."""

    max_offset_k: float = Field(default=5.0, gt=0, le=20)
    max_duration_s: float = Field(default=24 * 3600.0, gt=0, le=7 * 86_400)


class ControllerSettings(Strict):
    """The supply-curve controller: outdoor sensor, calendar, dispatch bounds and the circuits."""

    enabled: bool = True
    cycle_s: float = Field(default=60.0, ge=1, le=3600)
    outdoor: OutdoorSettings
    season: SeasonSettings = SeasonSettings()
    dispatch: DispatchSettings = DispatchSettings()
    circuits: dict[CircuitName, CircuitSettings] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_writer_per_setpoint(self) -> ControllerSettings:
        seen: dict[str, str] = {}
        for name, circuit in self.circuits.items():
            if circuit.setpoint_tag in seen:
                raise ValueError(f"circuits {seen[circuit.setpoint_tag]!r} and {name!r} both write "
                                 f"{circuit.setpoint_tag!r}: one setpoint, one writer")
            seen[circuit.setpoint_tag] = name
        return self

    def tags(self) -> dict[str, tuple[str, ...]]:
        """Every tag this section reads or writes, with the path of the field that names it."""
        found: dict[str, tuple[str, ...]] = {self.outdoor.tag: ("outdoor", "tag")}
        if self.outdoor.primary_supply_tag is not None:
            found[self.outdoor.primary_supply_tag] = ("outdoor", "primary_supply_tag")
        for name, circuit in self.circuits.items():
            where = ("circuits", name)
            found[circuit.setpoint_tag] = (*where, "setpoint_tag")
            if circuit.supply_tag is not None:
                found[circuit.supply_tag] = (*where, "supply_tag")
            for room, sensor in circuit.rooms.items():
                found[sensor.temp_tag] = (*where, "rooms", room, "temp_tag")
                if sensor.age_tag is not None:
                    found[sensor.age_tag] = (*where, "rooms", room, "age_tag")
            for kind in ("return_limit", "power_limit", "flow_limit"):
                limit = getattr(circuit, kind)
                if limit is not None:
                    found[limit.tag] = (*where, kind, "tag")
            if circuit.circulation is not None:
                for name in ("pump_fault_tag", "pump_running_tag", "flow_tag"):
                    if (tag := getattr(circuit.circulation, name)) is not None:
                        found[tag] = (*where, "circulation", name)
        return found


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    """The settings with every circuit's curve loaded and validated."""

    settings: ControllerSettings
    curves: Mapping[str, Curve]  # by circuit name
    source: Path | None = None  # the file they came from, if any
