"""The supply-curve controller: outdoor temperature, curve and rooms in, supply setpoints out.

Pure and clock-free: ``Controller.step(inputs, now)`` does no I/O and reads no clock, so the same
object runs in the gateway (``ControllerTask``), against the simulator in tests and in the season
bench. Per circuit and cycle, the setpoint is built in the order an operator would explain it:

1. season and cut-out: does the circuit heat at all (else the off setpoint, or frost protection);
2. the curve, read at a composite of the actual and the damped outdoor temperature, for the
   comfort floor (day target or night floor, plus a margin);
3. the room trim: a PI on the coldest valid room, as a shift of the curve's room temperature;
   at night the minimum supply instead while the rooms coast down to the night floor (each room
   stopping a learned band above it, see ``gateway.control.safety``), and the optimum start's
   boost (the highest supply the limiters will allow) from the last moment that brings every room
   back to the day target by the day start;
4. the dispatch offset (bounded, expiring);
5. the circuit's min/max supply;
6. the limiters (primary return, power, flow): each a slow loop that only ever lowers;
7. the ramp (K/h) from the setpoint in force.

Every stage is recorded in the published ``CircuitState``, and the integrators only move when
their output can act (anti-windup against clamps, limiters, ramps and offsets).

A night setback is a bet that the boost can undo it in time. It is refused (``setback_reason``)
without a trustworthy outdoor temperature, without a room to plan with, or when the boost's
headroom, measured against the supply the limiters really allow, at the coldest curve input of
the last day (colder by the weather's cooling trend), is too small; a setback under way that can
no longer be undone later is ended with the boost at once. Emitters with a lag of their own (a
floor slab, ``emitter_lag_h``) start the boost that much earlier, and get no setback at all when
the lag fills the night; their trim acts on the room as it will be when a supply change reaches
it, and its integral learns downward only from the part of a surplus that the heat still held in
the slab does not explain (``gateway.control.stored``). The morning after a boost is watched: a room that slides back below the target is boosted
again, and the hold after the boost is learned from those mornings. Losing every room sensor
during a setback starts a safe boost until the day start, and the learned trim keeps acting on
the curve.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from gateway.control.comfort import (
    RATE_MEMORY,
    ComfortFloor,
    OptimumStart,
    comfort_floor,
    headroom_k,
    hours_to_day_start,
    is_day,
)
from gateway.control.loops import FirstOrderLag, PiLoop, line_value, ramp
from gateway.control.learned import DAILY_MEANS_MAX_AGE_S, CircuitMemory, ControllerMemory, DailyMean
from gateway.control.model import (
    CircuitInputs,
    CircuitState,
    ControllerDecision,
    ControllerInputs,
    ControllerState,
    DispatchOffset,
    LimiterState,
    OutdoorSource,
    Reading,
    Signal,
)
from gateway.control.outdoor import OutdoorEstimate, OutdoorSupervisor
from gateway.control.rooms import RoomChoice, choose_room
from gateway.control.safety import (
    BoostCeiling,
    BoostHold,
    HOLD_MAX_K,
    RecentLow,
    RoomDynamics,
    coast_band_k,
    day_margin_k,
    night_margin_k,
    room_now,
)
from gateway.control.stored import StoredHeat, learnable_error
from gateway.control.season import HEATING_MODES, CutoutSwitch, DailyMeans, FrostGuard, season_mode
from gateway.control.settings import (
    CirculationSettings,
    CircuitSettings,
    ControllerConfig,
    ControllerSettings,
    LimitSettings,
    SeasonMode,
)
from gateway.curves import Curve

MAX_STEP_S = 900.0
"""Longest time step the loops integrate over: after a pause (a suspended process, a long PLC
outage) the controller resumes from where it was instead of applying an hour of integral at once."""
RESYNC_K = 1.0
"""If the PLC holds a setpoint this far from the last decision (someone else wrote it, the PLC
restarted), the ramp starts again from what the PLC holds."""
_LIMITERS: tuple[tuple[str, Signal, bool], ...] = (
    ("return_limit", Signal.RETURN_LIMIT_ACTIVE, False),
    ("power_limit", Signal.POWER_LIMIT_ACTIVE, True),
    ("flow_limit", Signal.FLOW_LIMIT_ACTIVE, True),
)
_ACTIVE_K = 0.05
HOLD_APPROACH = 1.5
"""The setpoint stops rising this close to a limit line (K for the return limit, % of the line for
power and flow): what a boost ramping at ramp_up_k_per_h puts on the primary return after the
setpoint stops (measured: about 1.2 K at 20 K/h)."""


@dataclass(frozen=True, slots=True)
class _Stages:
    """The stages between the curve and the setpoint before the ramp (see ``CircuitState``)."""

    curve_c: float
    trim_room_k: float = 0.0
    trim_k: float = 0.0
    offset_k: float = 0.0
    offset_origin: str = ""
    limiters: tuple[LimiterState, ...] = ()
    clamped: str = ""
    coasting: bool = False
    near_limit: bool = False  # a limited value is within HOLD_APPROACH of its line, or over it


@dataclass(frozen=True, slots=True)
class _Coast:
    """May the rooms keep coasting, and the band and cooling rate of the room closest to its band."""

    allowed: bool
    band_k: float
    rate_k_per_h: float


@dataclass(frozen=True, slots=True)
class _Context:
    """What every circuit shares in one cycle."""

    now: float
    dt_s: float
    local: dt.datetime
    mode: SeasonMode
    outdoor: OutdoorEstimate
    offset: DispatchOffset | None


def circulation_lost(inputs: CircuitInputs, settings: CirculationSettings | None) -> str:
    """Why the circuit's water is not moving ("" while it is, or cannot be told): a tripped pump,
    a stopped pump, or a flow below ``min_flow_m3h``. An unusable reading proves nothing."""
    if settings is None:
        return ""
    if inputs.pump_fault.usable:
        return "pump fault"
    if inputs.pump_running.usable == 0.0:
        return "pump not running"
    flow = inputs.circulation_m3h.usable
    if flow is not None and flow < settings.min_flow_m3h:
        return f"flow {flow:.1f} m3/h below {settings.min_flow_m3h:g}"
    return ""


def stale_trims(learned_against: str, curve_now: str) -> str | None:
    """Why trims learned against curve ``learned_against`` must not be kept with ``curve_now``
    (None if it is the same curve). One rule for a reload and for a restart: the trims are what the
    old curve got wrong for the building, and added to its correction they would count it twice."""
    if learned_against == curve_now:
        return None
    return f"trims (learned against curve {learned_against}, now {curve_now})"


def _clock_h(moment: dt.time) -> float:
    return moment.hour + moment.minute / 60.0 + moment.second / 3600.0


class CircuitController:
    """One circuit's loops and memory: outdoor damping, room trim, limiters, ramp, latches."""

    def __init__(self, name: str, settings: CircuitSettings, curve: Curve, controller: ControllerSettings) -> None:
        self.name = name
        self.damper = FirstOrderLag(settings.building_time_constant_h * 3600.0)
        # Two room trims: what the curve gets wrong by day and at night differs (the weather's
        # daily cycle, people's gains), and one integral serving both would be wound the wrong
        # way at every change of floor. The preheat uses the day trim: it aims at the day target.
        self.trims = {"day": PiLoop(0.0, 1.0, 0.0, 0.0), "night": PiLoop(0.0, 1.0, 0.0, 0.0)}
        self.limiters: dict[str, PiLoop] = {}
        self.stored = StoredHeat()  # what a slab still delivers beyond the trim's integral (``stored``)
        self.optimum = OptimumStart(settings.comfort.optimum_start.heatup_factor)
        self.boost_k = 0.0
        self.dynamics = RoomDynamics(1.0 / settings.building_time_constant_h)
        self.ceiling = BoostCeiling()
        self.recent = RecentLow()
        self.blind_until: float | None = None  # end of the safe boost after the rooms were lost
        self.setback_running = False  # the last cycle let the rooms below the day target
        self.morning_boost = False  # the boost runs on past the day start until the rooms are back
        self.morning_boost_until = 0.0
        self.hold = BoostHold(settings.comfort.optimum_start.boost_hold_k)
        self.cutout = CutoutSwitch()
        self.frost = FrostGuard()
        self.setpoint: float | None = None
        self.curve = curve
        self.configure(settings, curve, controller)

    def configure(self, settings: CircuitSettings, curve: Curve, controller: ControllerSettings) -> list[str]:
        """Take new settings (hot reload) keeping the learned state (filters, ramp, heat-up factors,
        and the trim integrals unless the curve itself changed, see ``stale_trims``); returns what
        was reset and why."""
        reset: list[str] = []
        if (stale := stale_trims(self.curve.identity, curve.identity)) is not None:
            for loop in self.trims.values():
                loop.integral = 0.0
            reset.append(stale)
        self.settings, self.curve, self.controller = settings, curve, controller
        self.damper.time_constant_s = settings.building_time_constant_h * 3600.0
        self.dynamics.default_per_h = 1.0 / settings.building_time_constant_h
        trim = settings.room_trim
        for loop in self.trims.values():
            loop.gain, loop.integral_s = trim.gain, trim.integral_h * 3600.0
            loop.rebound(-trim.max_trim_k, trim.max_trim_k)
        opt = settings.comfort.optimum_start
        self.optimum.default_factor = opt.heatup_factor
        self.optimum.factors = {room: min(opt.max_factor, max(opt.min_factor, factor))
                                for room, factor in self.optimum.factors.items()}
        limiters: dict[str, PiLoop] = {}
        for kind, _, _ in _LIMITERS:
            limit: LimitSettings | None = getattr(settings, kind)
            if limit is None:
                continue
            loop = self.limiters.get(kind) or PiLoop(limit.gain, limit.integral_s, 0.0, limit.max_reduction_k)
            loop.gain, loop.integral_s = limit.gain, limit.integral_s
            loop.rebound(0.0, limit.max_reduction_k)
            limiters[kind] = loop
        self.limiters = limiters
        return reset

    def memory(self) -> CircuitMemory:
        """What this circuit has learned that would take hours or days to learn again."""
        return CircuitMemory(curve=self.curve.identity, day_trim_k=self.trims["day"].integral,
                             night_trim_k=self.trims["night"].integral, heatup_factors=dict(self.optimum.factors),
                             heatup_rates={room: list(rates) for room, rates in self.optimum.achieved.items()},
                             cooling_per_h=dict(self.dynamics.cooling_per_h), boost_hold_k=self.hold.value_k)

    def restore(self, memory: CircuitMemory) -> list[str]:
        """Take saved learning, within the settings in force now; returns what was dropped and why."""
        dropped: list[str] = []
        if (stale := stale_trims(memory.curve, self.curve.identity)) is not None:
            dropped.append(stale)
        else:
            for name, value in (("day", memory.day_trim_k), ("night", memory.night_trim_k)):
                loop = self.trims[name]
                loop.integral = min(loop.high, max(loop.low, value))
        opt = self.settings.comfort.optimum_start
        for room, factor in memory.heatup_factors.items():
            if room in self.settings.rooms:
                self.optimum.factors[room] = min(opt.max_factor, max(opt.min_factor, factor))
            else:
                dropped.append(f"heat-up factor of room {room} (no longer configured)")
        for room, rates in memory.heatup_rates.items():
            if room in self.settings.rooms:
                self.optimum.achieved[room] = list(rates[-RATE_MEMORY:])
            else:
                dropped.append(f"heat-up rates of room {room} (no longer configured)")
        for room, coefficient in memory.cooling_per_h.items():
            if room in self.settings.rooms:
                self.dynamics.cooling_per_h[room] = coefficient
            else:
                dropped.append(f"cooling rate of room {room} (no longer configured)")
        if memory.boost_hold_k is not None:
            self.hold.value_k = min(HOLD_MAX_K, max(opt.boost_hold_k, memory.boost_hold_k))
        return dropped

    def step(self, inputs: CircuitInputs, ctx: _Context) -> tuple[float, CircuitState, list[Signal]]:
        s = self.settings
        signals: list[Signal] = []
        damped = self.damper.update(ctx.outdoor.value_c, ctx.dt_s)
        composite = s.composite_weight * ctx.outdoor.value_c + (1.0 - s.composite_weight) * damped
        rooms = choose_room(inputs.rooms, s.room_trim)
        if rooms.invalid:
            signals.append(Signal.ROOM_SENSOR_INVALID)
        if rooms.value_c is None and rooms.total:
            signals.append(Signal.ROOMS_NONE_VALID)
        comfort = s.comfort
        opt = comfort.optimum_start
        day_margin = day_margin_k(comfort.margin_k, self.dynamics.resolution)
        day_target = comfort.day_c + day_margin
        # Planned against the coldest hours of the last day, and colder still if the weather is
        # cooling (``RecentLow``), and against the supply the limiters allowed the last time they
        # held it: the boost has to be decided before the coldest hours (around 05:00) come, and
        # a boost held below the curve's maximum warms more slowly.
        ceiling = self.ceiling.ceiling(self.curve.max_supply_c)
        planned = self.recent.add(ctx.now, composite)
        headroom = headroom_k(self.curve, planned, day_target + self.trims["day"].integral, ceiling)
        why_not = self._setback_refusal(ctx, rooms, headroom, ceiling)
        setback = not why_not
        hours_left = hours_to_day_start(ctx.local, comfort)
        held = self.setpoint if self.setpoint is not None else inputs.setpoint_c.usable
        ramp_h = 0.0 if held is None else self._ramp_lead_h(held)
        # The emitters pass the boost on to the rooms only after their own lag (a floor slab takes
        # hours), and the rooms keep cooling meanwhile: the boost starts that much earlier, and
        # each room has that much further to climb.
        lag_h = s.emitter_lag_h
        falls = {name: self.dynamics.rate_k_per_h(name, value, ctx.outdoor.value_c) * lag_h
                 for name, value in rooms.values.items()}
        plan = self.optimum.plan(rooms.values, day_target, headroom, s.building_time_constant_h,
                                 opt.max_heatup_k_per_h, hours_left, opt.lead_h + ramp_h + lag_h, falls)
        night = ctx.mode in HEATING_MODES and not is_day(ctx.local, comfort)
        # A setback already under way that can no longer be undone later (the night got colder
        # than planned, a limiter took the headroom, the weather became untrustworthy) is ended
        # now, with the boost, not by the slow day trim.
        undo_now = bool(why_not) and self.setback_running and bool(rooms.values)
        if opt.enabled and (setback and plan.start or undo_now) and not self.optimum.active and night:
            self.optimum.begin(rooms.values, hours_left, headroom, s.building_time_constant_h,
                               opt.max_heatup_k_per_h, ramp_h + lag_h)
        self._recover_blind(rooms, ctx, night, headroom, hours_left, ramp_h)
        if self.blind_until is not None and ctx.now < self.blind_until:
            signals.append(Signal.ROOMS_LOST_RECOVERY)
        boosting = self.optimum.active
        self.optimum.observe(ctx.local, rooms.values, comfort)
        if boosting and not self.optimum.active:
            # Closed at the day start: the morning is watched (see ``_heat``).
            self.morning_boost_until = ctx.now + opt.boost_decay_h * 3600.0
            self.hold.watch(self.morning_boost_until)
        full_ramp_h = self._ramp_lead_h(self.curve.min_supply_c)  # a boost that starts from the minimum
        if (self.optimum.active and rooms.values and not plan.room
                and hours_left > 2.0 * (opt.lead_h + full_ramp_h)):
            # Every room is back with hours to spare (a mild night, a plan still learning): let
            # them coast again and plan the boost anew, rather than hold the day target all night.
            self.optimum.release()
            self.boost_k = 0.0
        floor = comfort_floor(ctx.local, comfort, setback=setback or self.optimum.active,
                              preheating=self.optimum.active, night_margin_k=self._night_margin(inputs, rooms, ctx),
                              day_margin_k=day_margin)
        if self.optimum.missed_today:
            signals.append(Signal.MORNING_TARGET_MISSED)
        cut_out = self.cutout.update(damped, self.controller.season.cutout)
        room_cold = rooms.value_c is not None and rooms.value_c < floor.contract_c
        heating = ctx.mode in HEATING_MODES and not (cut_out and not room_cold)
        coast = self._coast(inputs, rooms, floor, ctx, composite, held)
        if heating:
            self.frost.active = False
            target, stages = self._heat(inputs, ctx, composite, rooms, floor, coast, signals)
            reason = ctx.mode.value
        else:
            target, stages = self._idle(inputs, damped, composite, floor, signals)
            reason = "frost protection" if self.frost.active else (
                f"cut-out: damped outdoor {damped:.1f} C" if ctx.mode in HEATING_MODES else ctx.mode.value)
        lost = circulation_lost(inputs, s.circulation)
        stored_k = 0.0
        if lost and heating:
            # Heat asked for now cannot reach a room, and would reach the network all at once
            # when the pump restarts: hold the last setpoint, learn nothing from the rooms cooling.
            held = self.setpoint if self.setpoint is not None else inputs.setpoint_c.usable
            setpoint, ramp_limited = (held, False) if held is not None else (
                min(target, s.off_supply_c), False)
            reason = f"circulation lost: {lost}; holding {setpoint:.1f} C"
            signals.append(Signal.CIRCULATION_LOST)
        else:
            setpoint, ramp_limited = self._ramp(target, inputs.setpoint_c, ctx, hold=stages.near_limit)
            if heating:
                stored_k = self._stored_room_k(composite, floor, setpoint, ctx.dt_s)
                self._integrate(rooms, floor, ctx, stages, target, setpoint, stored_k)
                # The limiters hold the setpoint through their reduction and, close to a line, by
                # stopping the ramp: either way the setpoint in force is as high as the boost got.
                limiting = any(limiter.active for limiter in stages.limiters) or (stages.near_limit and ramp_limited)
                self.ceiling.observe(ctx.now, setpoint, limiting)
        self.dynamics.observe(inputs.rooms, rooms.values, ctx.now, ctx.outdoor.value_c, stages.coasting)
        self.setback_running = (heating and floor.floor_c < day_target - 1e-9) or floor.phase == "preheat"
        missed = [f"{name} {value:.1f} C" for name, value in sorted(rooms.values.items()) if value < floor.contract_c]
        if heating and missed:
            signals.append(Signal.COMFORT_TARGET_MISSED)
        self.setpoint = setpoint
        circuit = CircuitState(
            circuit=self.name, curve=self.curve.identity, heating=heating, reason=reason,
            phase="coast" if stages.coasting else floor.phase,
            outdoor_damped_c=damped, outdoor_curve_c=composite, room_floor_c=floor.floor_c,
            room_used_c=rooms.value_c, room_used_name=rooms.name, rooms_valid=rooms.valid, rooms_total=rooms.total,
            curve_c=stages.curve_c, trim_room_k=stages.trim_room_k, trim_k=stages.trim_k,
            trim_integral_k=self._trim(floor).integral, heatup_k_per_h=plan.rate_k_per_h,
            setback=setback, setback_reason=why_not, headroom_k=headroom, boost_ceiling_c=ceiling,
            coast_band_k=coast.band_k, cooling_k_per_h=coast.rate_k_per_h,
            comfort_missed=", ".join(missed) if heating else "", offset_k=stages.offset_k,
            offset_origin=stages.offset_origin, limiters=stages.limiters, clamped=stages.clamped,
            ramp_limited=ramp_limited, setpoint_c=setpoint, boost_k=self.boost_k, morning_boost=self.morning_boost,
            trim_stored_k=stored_k,
        )
        return setpoint, circuit, signals

    def _setback_refusal(self, ctx: _Context, rooms: RoomChoice, headroom: float, ceiling: float) -> str:
        """Why there is no night setback tonight ("" if there may be): without a trustworthy weather,
        without a room to plan with, or with too little headroom (a night colder than the station
        was built for, or limiters that hold the boost low), it could not be undone in time."""
        if ctx.outdoor.source in (OutdoorSource.LAST_GOOD, OutdoorSource.DEFAULT):
            return f"outdoor temperature from {ctx.outdoor.source.value}"
        if not rooms.values:
            return "no valid room"
        comfort = self.settings.comfort
        night_h = 24.0 - (_clock_h(comfort.day_end) - _clock_h(comfort.day_start))
        fixed_h = (self.settings.emitter_lag_h + comfort.optimum_start.lead_h
                   + self._ramp_lead_h(self.curve.min_supply_c))
        if fixed_h >= night_h:
            return (f"emitter lag {self.settings.emitter_lag_h:.1f} h: a boost begun at the day end would "
                    f"reach the rooms only after {fixed_h:.1f} h of the {night_h:.1f} h night")
        minimum = comfort.optimum_start.min_headroom_k
        if headroom < minimum:
            held = "" if ceiling >= self.curve.max_supply_c else f", the limiters held the supply at {ceiling:.1f} C"
            return f"boost headroom {headroom:.1f} K < {minimum:g} K{held}"
        return ""

    def _recover_blind(self, rooms: RoomChoice, ctx: _Context, night: bool, headroom: float, hours_left: float,
                       ramp_h: float) -> None:
        """Every room sensor lost while the rooms were let below the day target: boost now, until
        the day start.

        Without rooms nobody can say when they are back, and a boost planned from their last
        readings is only as good as the heat-up rates learned on other mornings: a few hours of
        too much heat is the price of a rare fault, a cold morning without feedback is not. At the
        day start the boost is cut to its hold as after any boost, which stays while the rooms are
        lost, and the learned trim keeps acting on the curve. A room that reports again ends the
        recovery: the ordinary plan takes over.
        """
        if rooms.values or not rooms.total:
            self.blind_until = None
            return
        if self.blind_until is not None or not (night and self.setback_running):
            return
        self.blind_until = ctx.now + hours_left * 3600.0
        if not self.optimum.active:
            opt = self.settings.comfort.optimum_start
            self.optimum.begin({}, hours_left, headroom, self.settings.building_time_constant_h,
                               opt.max_heatup_k_per_h, ramp_h)

    def _ahead(self, rooms: RoomChoice) -> float:
        """The room the trim's proportional part acts on: the coldest room as it will be when a
        supply change made now reaches it. Radiators pass it on at once (the room as read); a
        floor slab only after ``emitter_lag_h``, by when the room has gone on along its trend, so
        a room sliding through the afternoon gets its supply raised hours before the evening."""
        assert rooms.value_c is not None
        lag_h = self.settings.emitter_lag_h
        if lag_h <= 0.0:
            return rooms.value_c
        return rooms.value_c + self.dynamics.trend_k_per_h.get(rooms.name, 0.0) * lag_h

    def _night_margin(self, inputs: CircuitInputs, rooms: RoomChoice, ctx: _Context) -> float:
        """The night floor's margin for the room the trim holds (see ``safety.night_margin_k``)."""
        if rooms.value_c is None or rooms.name not in rooms.values:
            return 0.0
        rate = self.dynamics.rate_k_per_h(rooms.name, rooms.value_c, ctx.outdoor.value_c)
        age_s = inputs.rooms[rooms.name].age_s
        return night_margin_k(rate, self.dynamics.report_h(rooms.name, age_s), self.dynamics.resolution)

    def _coast(self, inputs: CircuitInputs, rooms: RoomChoice, floor: ComfortFloor, ctx: _Context, composite: float,
               held: float | None) -> _Coast:
        """May the rooms keep coasting toward the night floor? Each room stops a band above it: its
        learned cooling rate times the time until the controller next hears from it plus the time
        the supply needs to come back (half the ramp from where it is now to the night's supply:
        a linear ramp delivers about half of its rise while it climbs), plus one sensor step."""
        if floor.phase != "night" or not rooms.values:
            return _Coast(False, 0.0, 0.0)
        night_supply = float(self.curve.supply_for_room(composite, floor.floor_c))
        start = self.curve.min_supply_c if held is None else held
        ramp_h = 0.5 * max(0.0, night_supply - start) / self.settings.ramp_up_k_per_h + self.settings.emitter_lag_h
        worst = (math.inf, 0.0, 0.0)
        for name, value in rooms.values.items():
            age_s = inputs.rooms[name].age_s
            rate = self.dynamics.rate_k_per_h(name, value, ctx.outdoor.value_c)
            band = coast_band_k(rate, self.dynamics.report_h(name, age_s), ramp_h, self.dynamics.resolution)
            spare = room_now(value, age_s / 3600.0, rate) - floor.floor_c - band
            if spare < worst[0]:
                worst = (spare, band, rate)
        return _Coast(worst[0] > 0.0, worst[1], worst[2])

    def _heat(self, inputs: CircuitInputs, ctx: _Context, composite: float, rooms: RoomChoice,
              floor: ComfortFloor, coast: _Coast, signals: list[Signal]) -> tuple[float, _Stages]:
        """Curve, trim, boost, offset, clamps and limiters: the heating setpoint before the ramp."""
        curve = self.curve
        # Without a valid room the trim's learned part still acts: it is what the filed curve gets
        # wrong for this building, and dropping it leaves the cold rooms colder.
        trim = self._trim(floor)
        shift = trim.integral if rooms.value_c is None else trim.output(floor.floor_c - self._ahead(rooms))
        # The boost: while the optimum start runs and the coldest room is short of the day target,
        # the full headroom (the circuit's maximum supply). After the day start the morning is
        # watched for boost_decay_h: a coldest room that reads short again gets the full boost
        # again (``morning_boost``), and the hold it is cut to once the rooms are back is
        # learned from those mornings (``BoostHold``): after a setback the air comes back before
        # the walls, and cut to too small a hold it slides back below the target within the hour.
        # The hold fades with boost_decay_h instead of stopping. Without rooms, the safe boost
        # runs until the day start (``_recover_blind``) and its hold then stays: nothing says the
        # rooms no longer need it.
        opt = self.settings.comfort.optimum_start
        if rooms.value_c is None:
            behind = self.blind_until is not None and ctx.now < self.blind_until
        else:
            behind = rooms.value_c < floor.floor_c
        self.morning_boost = floor.phase == "day" and behind and ctx.now < self.morning_boost_until
        self.hold.observe(ctx.now, self.morning_boost, opt.boost_hold_k)
        if self.blind_until is None:
            self.boost_k *= math.exp(-ctx.dt_s / (opt.boost_decay_h * 3600.0))
        if (floor.phase == "preheat" or self.morning_boost) and behind:
            # The curve's maximum supply now (the limiters take off what they must): one kelvin
            # past the headroom at the outdoor temperature the curve is read at, as the headroom
            # is linearised and the clamp takes the rest.
            self.boost_k = max(self.boost_k, headroom_k(curve, composite, floor.floor_c + shift) + 1.0)
        elif floor.phase == "preheat" or self.boost_k > 0.0:
            self.boost_k = min(self.boost_k, self.hold.value_k)
        shift += self.boost_k
        coasting = coast.allowed
        curve_c = float(curve.supply_for_room(composite, floor.floor_c))
        trimmed = curve.min_supply_c if coasting else float(curve.supply_for_room(composite, floor.floor_c + shift))
        offset_k, origin = 0.0, ""
        if ctx.offset is not None and ctx.now < ctx.offset.expires_at:
            bound = self.controller.dispatch.max_offset_k
            offset_k, origin = max(-bound, min(bound, ctx.offset.offset_k)), ctx.offset.origin
            signals.append(Signal.DISPATCH_OFFSET_ACTIVE)
        value = trimmed + offset_k
        clamped = "max" if value >= curve.max_supply_c else "min" if value <= curve.min_supply_c else ""
        value = min(curve.max_supply_c, max(curve.min_supply_c, value))
        limiters, near_limit = self._limit(inputs, ctx, value, signals)
        reduction = max((limiter.reduction_k for limiter in limiters), default=0.0)
        if reduction > 0.0:
            value = max(curve.min_supply_c, value - reduction)
        return value, _Stages(curve_c, shift, trimmed - curve_c, offset_k, origin, tuple(limiters), clamped, coasting,
                              near_limit)

    def _limit(self, inputs: CircuitInputs, ctx: _Context, value: float,
               signals: list[Signal]) -> tuple[list[LimiterState], bool]:
        """Each limiter's reduction this cycle, and whether any limited value is near its line;
        the loops integrate here (they see their own effect)."""
        states: list[LimiterState] = []
        near = False
        at_min = value <= self.curve.min_supply_c + 1e-9
        for kind, active_signal, relative in _LIMITERS:
            loop = self.limiters.get(kind)
            if loop is None:
                continue
            limit_settings: LimitSettings = getattr(self.settings, kind)
            limit = line_value(limit_settings.line, ctx.outdoor.value_c)
            reading: Reading = getattr(inputs, {"return_limit": "primary_return_c", "power_limit": "power_kw",
                                                "flow_limit": "flow_m3h"}[kind])
            measured = reading.usable
            if measured is None:
                # Samson drops the limit when its sensor fails: an unknown return temperature is
                # no reason to leave rooms cold. The loop restarts from zero when it returns.
                loop.integral = 0.0
                signals.append(Signal.LIMITER_SENSOR_FAULT)
                states.append(LimiterState(kind, None, limit, 0.0, False, reading.reason or "no value"))
                continue
            excess = measured - limit
            if relative:
                excess = 100.0 * excess / limit if limit > 0 else 0.0
            near = near or excess > -HOLD_APPROACH
            reduction = loop.output(excess)
            loop.update(excess, ctx.dt_s, up_blocked=at_min)
            active = reduction > _ACTIVE_K
            if active:
                signals.append(active_signal)
            states.append(LimiterState(kind, measured, limit, reduction, active))
        return states, near

    def _idle(self, inputs: CircuitInputs, damped: float, composite: float, floor: ComfortFloor,
              signals: list[Signal]) -> tuple[float, _Stages]:
        """Not heating: the off setpoint, or frost protection; limiters released, trim kept."""
        s = self.settings
        for loop in self.limiters.values():
            loop.integral = 0.0
        self.boost_k = 0.0
        frost = self.frost.update(inputs.supply_c.usable, damped, s.frost)
        if frost:
            signals.append(Signal.FROST_PROTECTION)
        value = s.frost.supply_c if frost else s.off_supply_c
        return value, _Stages(float(self.curve.supply_for_room(composite, floor.floor_c)))

    def _ramp(self, target: float, plc: Reading, ctx: _Context, hold: bool) -> tuple[float, bool]:
        """Ramp from the setpoint in force: the last decision, or what the PLC holds if they disagree.

        ``hold``: a limited value is over its line or close to it, so the setpoint may not rise
        at all, whatever the trim or the optimum start ask; the limited value lags the setpoint
        (the primary return by a quarter of an hour and more), so a setpoint still rising at the
        line would carry it well past, and the limiter's loop needs time to catch up.
        """
        held = plc.usable
        base = self.setpoint
        if base is None or (held is not None and abs(held - base) > RESYNC_K):
            base = held
        if base is None:
            return target, False
        up, down = self.settings.ramp_up_k_per_h, self.settings.ramp_down_k_per_h
        if hold:
            up = 0.0
        if ctx.mode is SeasonMode.COMMISSIONING:
            up = min(up, self.controller.season.commissioning_ramp_k_per_h)
        return ramp(base, target, ctx.dt_s, up, down)

    def _stored_room_k(self, composite: float, floor: ComfortFloor, setpoint: float, dt_s: float) -> float:
        """Room K of surplus that the emitters' stored heat explains (see ``gateway.control.stored``):
        the setpoint above the supply the trim's integral alone asks, through the emitter lag, in
        room kelvin at the curve's slope there. Always 0 for emitters without a lag."""
        lag_h = self.settings.emitter_lag_h
        if lag_h <= 0.0:
            return 0.0
        served = floor.floor_c + self._trim(floor).integral
        own = float(self.curve.supply_for_room(composite, served))
        self.stored.update(setpoint - own, dt_s, lag_h)
        per_room_k = 0.5 * (float(self.curve.supply_for_room(composite, served + 1.0))
                            - float(self.curve.supply_for_room(composite, served - 1.0)))
        return self.stored.room_k(per_room_k)

    def _integrate(self, rooms: RoomChoice, floor: ComfortFloor, ctx: _Context, stages: _Stages,
                   target: float, setpoint: float, stored_k: float) -> None:
        """Move the room trim's integral only when it can act and is learning the steady state.

        The integral is what the filed curve gets wrong for this building, learned while the
        floor stands still (by day and at night, each in its own trim). It is frozen during the
        preheat (a transient the curve is not meant to describe), without rooms (the curve
        alone) and during an offset (dispatch's order is not an error to learn away). It is
        blocked upward when a limiter, the max clamp or the ramp holds the setpoint down, and
        downward at the min clamp or a falling ramp. Behind a slab it learns downward only from
        the part of a surplus that the heat the slab still holds (``stored_k``) does not explain.
        """
        if rooms.value_c is None or stages.offset_k != 0.0 or floor.phase == "preheat" or stages.coasting:
            return
        limited = any(limiter.active for limiter in stages.limiters)
        up_blocked = limited or stages.clamped == "max" or setpoint < target - 1e-9
        down_blocked = stages.clamped == "min" or setpoint > target + 1e-9
        error = learnable_error(floor.floor_c - rooms.value_c, stored_k)
        self._trim(floor).update(error, ctx.dt_s, up_blocked=up_blocked,
                                 down_blocked=down_blocked)

    def _ramp_lead_h(self, from_c: float) -> float:
        """How much earlier than the rooms alone need the boost must start for the ramp: half the
        time it takes to bring the setpoint from ``from_c`` up to the maximum supply (a linear
        ramp delivers about half of the boost while it climbs)."""
        return 0.5 * max(0.0, self.curve.max_supply_c - from_c) / self.settings.ramp_up_k_per_h

    def _trim(self, floor: ComfortFloor) -> PiLoop:
        """The trim serving this floor: the night one for the night floor, the day one for the day
        target (by day, in the preheat, and on a night without setback: it holds the day target,
        and switching integrals at the day start would make the morning jump)."""
        comfort = self.settings.comfort
        day_target = comfort.day_c + day_margin_k(comfort.margin_k, self.dynamics.resolution)
        night = floor.phase == "night" and floor.floor_c < day_target - 1e-9
        return self.trims["night" if night else "day"]


class Controller:
    """The station's controller: outdoor supervision, calendar, and one ``CircuitController`` per circuit."""

    def __init__(self, config: ControllerConfig, timezone: dt.tzinfo) -> None:
        self.timezone = timezone
        self.outdoor = OutdoorSupervisor(config.settings.outdoor)
        self.daily = DailyMeans()
        self.circuits: dict[str, CircuitController] = {}
        self._last: float | None = None
        self.config = config
        self.configure(config)

    def configure(self, config: ControllerConfig) -> list[str]:
        """Apply new settings and curves; circuits that persist keep their learned state (see
        ``CircuitController.configure``). Returns what was reset and why (for the log)."""
        settings = config.settings
        self.outdoor.settings = settings.outdoor
        circuits: dict[str, CircuitController] = {}
        reset: list[str] = []
        for name, circuit in settings.circuits.items():
            existing = self.circuits.get(name)
            if existing is None:
                circuits[name] = CircuitController(name, circuit, config.curves[name], settings)
            else:
                reset.extend(f"{name}: {what}" for what in existing.configure(circuit, config.curves[name], settings))
                circuits[name] = existing
        self.circuits = circuits
        self.config = config
        return reset

    def memory(self, now: float) -> ControllerMemory:
        """Everything learned so far, to be saved (see ``gateway.control.memory``)."""
        return ControllerMemory(
            saved_at=now, circuits={name: circuit.memory() for name, circuit in self.circuits.items()},
            daily_means=[DailyMean(day=day, mean_c=mean) for day, mean in self.daily.days])

    def restore(self, memory: ControllerMemory, now: float) -> list[str]:
        """Take saved learning after a restart; returns what was dropped and why (for the log)."""
        dropped: list[str] = []
        for name, saved in memory.circuits.items():
            circuit = self.circuits.get(name)
            if circuit is None:
                dropped.append(f"circuit {name} (no longer configured)")
            else:
                dropped.extend(f"{name}: {what}" for what in circuit.restore(saved))
        if now - memory.saved_at <= DAILY_MEANS_MAX_AGE_S:
            self.daily.restore([(mean.day, mean.mean_c) for mean in memory.daily_means])
        elif memory.daily_means:
            dropped.append(f"daily means (saved {(now - memory.saved_at) / 3600:.0f} h ago)")
        return dropped

    def step(self, inputs: ControllerInputs, now: float) -> ControllerDecision:
        """One control cycle at POSIX time ``now``."""
        dt_s = 0.0 if self._last is None else min(MAX_STEP_S, max(0.0, now - self._last))
        self._last = now
        local = dt.datetime.fromtimestamp(now, self.timezone)
        outdoor = self.outdoor.update(inputs.outdoor, inputs.dispatch_outdoor, now, inputs.primary_supply_c)
        self.daily.add(local.date(), outdoor.value_c, dt_s)
        mode, why = season_mode(local.date(), self.daily.complete, self.config.settings.season)
        ctx = _Context(now, dt_s, local, mode, outdoor, inputs.offset)
        signals: list[Signal] = list(outdoor.signals)
        setpoints: dict[str, float] = {}
        states: list[CircuitState] = []
        for name, circuit in self.circuits.items():
            setpoint, state, circuit_signals = circuit.step(inputs.circuits.get(name, CircuitInputs()), ctx)
            setpoints[name] = setpoint
            states.append(state)
            signals.extend(signal for signal in circuit_signals if signal not in signals)
        state = ControllerState(
            timestamp=now, season=mode, season_reason=why, outdoor_raw_c=outdoor.raw_c, outdoor_c=outdoor.value_c,
            outdoor_source=outdoor.source, outdoor_fault=outdoor.fault, outdoor_network_c=outdoor.network_c,
            circuits=tuple(states), signals=tuple(signals),
        )
        return ControllerDecision(setpoints, state)
