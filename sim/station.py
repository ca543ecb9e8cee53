"""The simulated heat-exchange station: primary side, PLC, plate exchanger, secondary network, buildings.

Contract used by ``sim.modbus_server`` / ``sim.runner`` and by the tests::

    station = Station(params=StationParams(), start=datetime(2026, 1, 10, tzinfo=UTC), seed=1)
    station = Station(start=..., seed=1, weather=ConstantProfile(-7.6))   # any OutdoorProfile
    station.step(dt_s)                  # advance simulated time deterministically (any dt > 0)
    station.now -> datetime             # simulated UTC time
    station.measurements() -> Measurements   (sim.readings; sensor faults applied)
    station.plc -> Plc                  # the station PLC (sim.plc): setpoints the protocol server writes
    station.faults -> Faults            # fault injection (sim.faults)
    station.ledger -> EnergyLedger      # cumulative joules: primary_in, delivered, stored, losses
    station.truth -> Truth              # true (not measured) internal state for tests

How time advances. ``step(dt)`` cuts dt into equal slow steps of at most ``slow_step_s`` (30 s)
and each slow step into PLC cycles of at most ``plc_sample_s`` (1 s). Per PLC cycle: the PLC
scans (interlocks, PI), the valve moves toward its command at 100 %/stroke, the primary flow
follows from the valve and exchanger resistances in series across the available differential
pressure, the exchanger's duty follows from effectiveness-NTU, and the small station node
(exchanger and header water up to the supply sensor) mixes. Per slow step: pump, pressures and
make-up are re-evaluated, the radiators are solved for every room, and the supply node, return
node and rooms advance. Water moving between nodes carries exactly the enthalpy one node loses
and the next gains, so the energy ledger closes to round-off; the stored heat of the secondary
water is sum(mass * CP_WATER * T) over the three nodes.

Simplifications: water masses of the nodes are fixed (the few hundred litres a leak takes out
before the make-up replaces them change only the static pressure); the pipe nodes are
well mixed, not plug flow; pump speed changes take effect at the next slow step; a drained
system (pressure at 0) keeps circulating.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from sim.building import Rooms, RoomSensors
from sim.faults import Faults
from sim.params import StationParams
from sim.physics import (
    CP_WATER,
    counterflow_duty,
    counterflow_ua_for_duty,
    kv_flow_m3h,
    plate_ua,
    primary_supply_curve_c,
    pump_flow_m3h,
    pump_head_mpa,
    quality_regulation_supply_c,
    series_kv,
    valve_relative_kv,
    water_cp,
    water_density,
)
from sim.plc import Plc
from sim.readings import Measurements, MeterReading
from sim.weather import OutdoorProfile, SeasonProfile

DEFAULT_START = datetime(2026, 1, 10, tzinfo=UTC)

_METER_PROBE_ERROR = 1
_METER_NO_FLOW = 2
_METER_LOW_DT = 4


@dataclass(frozen=True, slots=True)
class EnergyLedger:
    """Cumulative energy since the station was built, J.

    ``primary_in`` is what the primary water gave up in the exchanger (flow * cp * (Ts - Tr));
    ``delivered`` what the radiators gave the rooms; ``stored`` the change of heat held by the
    secondary water; ``pipe_losses`` the buried pipes' loss to the ground; ``water_losses`` the
    enthalpy leaks and background losses carried out minus what cold make-up water brought in.
    """

    primary_in: float
    delivered: float
    stored: float
    pipe_losses: float
    water_losses: float

    @property
    def losses(self) -> float:
        return self.pipe_losses + self.water_losses

    @property
    def imbalance(self) -> float:
        """primary_in - delivered - stored - losses: zero up to round-off."""
        return self.primary_in - self.delivered - self.stored - self.losses


@dataclass(frozen=True, slots=True)
class StationDesign:
    """Design point the exchanger was sized for (derived from ``StationParams``)."""

    duty_w: float
    ua_w_per_k: float
    primary_flow_kg_s: float
    secondary_flow_kg_s: float


@dataclass(frozen=True, slots=True)
class Truth:
    """The true state behind the instruments, for tests (no sensor faults, no quantisation)."""

    timestamp: float
    outdoor_c: float
    rooms_c: dict[str, float]
    room_mass_c: dict[str, float]
    room_heat_w: dict[str, float]
    primary_supply_c: float
    primary_return_c: float
    primary_flow_kg_s: float
    exchanger_duty_w: float
    secondary_supply_c: float  # at the station's supply sensor
    network_supply_c: float  # reaching the buildings
    secondary_return_c: float
    secondary_flow_kg_s: float
    valve_pct: float
    pump_running: bool
    static_pressure_mpa: float
    water_deficit_m3: float
    tank_m3: float


def station_design(params: StationParams, design_loads_w: float) -> StationDesign:
    """Size the exchanger: duty = buildings' design load + pipe losses at design temperatures.

    The primary side runs from the network's design supply down to the secondary design return
    plus the approach; the secondary side carries the design spread. UA = duty / LMTD.
    """
    sec = params.secondary
    ground = sec.ground_temperature_c
    pipe = 0.5 * sec.pipe_loss_w_per_k * ((params.design_supply_c - ground) + (params.design_return_c - ground))
    duty = design_loads_w + pipe
    t_ps = params.primary.supply_at_design_c
    t_pr = params.design_return_c + params.heat_exchanger.approach_k
    ua = counterflow_ua_for_duty(duty, t_ps, t_pr, params.design_return_c, params.design_supply_c)
    return StationDesign(
        duty_w=duty,
        ua_w_per_k=ua,
        primary_flow_kg_s=duty / (CP_WATER * (t_ps - t_pr)),
        secondary_flow_kg_s=duty / (CP_WATER * (params.design_supply_c - params.design_return_c)),
    )


class Station:
    """One heat-exchange station and the buildings it heats, in simulated time."""

    def __init__(
        self,
        params: StationParams | None = None,
        start: datetime = DEFAULT_START,
        seed: int = 0,
        weather: OutdoorProfile | None = None,
    ) -> None:
        """Build the station in steady state for the outdoor temperature at ``start``.

        The PLC powers up with the supply setpoint of the quality-regulation curve for that
        temperature (design 75/50), rooms, water and valve are solved for the matching steady
        state, so a run is meaningful from its first step. ``weather`` defaults to the seeded
        Beijing ``SeasonProfile``.
        """
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.params = p = params if params is not None else StationParams()
        self.weather: OutdoorProfile = (
            weather if weather is not None else SeasonProfile(seed=seed, utc_offset_h=p.site_utc_offset_h)
        )
        self._t0 = self._t = start.timestamp()
        self._rooms = Rooms(p)
        self.design = station_design(p, float(self._rooms.constants.design_load_w.sum()))
        self.faults = Faults(self._rooms.names, self._healthy_reading)

        sec = p.secondary
        mean_density = water_density(0.5 * (p.design_supply_c + p.design_return_c))
        self._mass_station = sec.station_volume_m3 * mean_density
        self._mass_supply = self._mass_return = 0.5 * (sec.system_volume_m3 - sec.station_volume_m3) * mean_density

        # Water and primary-side state (degC, kg/s, W, %); _settle puts them in steady state.
        self._t_ps = self._t_pr = self._t_st = self._t_ns = self._t_rn = 0.0
        self._m_primary = self._m_secondary = self._q_hx = self._valve_pct = 0.0
        self._q_rooms = np.zeros(len(self._rooms.names))
        # Circulation pump during the current slow step.
        self._pump_running = False
        self._pump_hz = self._flow_m3h = self._pump_head_mpa = 0.0
        # Water inventory and make-up.
        self._deficit_m3 = sec.initial_deficit_m3
        self._tank_m3 = sec.tank_volume_m3
        self._makeup_running = self._tank_dry = False
        self._makeup_m3h = self._makeup_total_m3 = 0.0
        # Heat meter totals and the energy ledger (J).
        self._meter_energy_j = p.meter.initial_energy_gj * 1e9
        self._meter_volume_m3 = p.meter.initial_volume_m3
        self._primary_in = self._delivered = self._pipe_losses = self._water_losses = 0.0

        t_out = self.weather(self._t)
        setpoint = quality_regulation_supply_c(
            t_out,
            p.design_indoor_c,
            p.design_outdoor_c,
            p.design_indoor_c,
            p.design_supply_c,
            p.design_return_c,
            p.radiator_exponent,
        )
        self._t_ps = self._primary_curve(t_out)
        self._settle(t_out, self._clamp_setpoint(setpoint), p.plc.pump_frequency_setpoint_hz)
        self.plc = Plc(
            p.plc, p.valve.stroke_s, supply_setpoint_c=setpoint, valve_position_pct=self._valve_pct, limits=p.plc_limits
        )
        self._decide_makeup()
        self._stored0 = self._stored_heat()
        self._sensors = RoomSensors(
            self._rooms.names, self._rooms.constants.buildings, p.room_sensors, seed, self._t0, self._rooms.air_c
        )

    # --- public API ---

    @property
    def now(self) -> datetime:
        return datetime.fromtimestamp(self._t, UTC)

    @property
    def time_s(self) -> float:
        """Simulated POSIX time, s."""
        return self._t

    @property
    def room_names(self) -> tuple[str, ...]:
        return self._rooms.names

    def step(self, dt_s: float) -> None:
        """Advance simulated time by ``dt_s`` seconds (deterministic for a given history of calls)."""
        if not (math.isfinite(dt_s) and dt_s > 0.0):
            raise ValueError(f"dt_s must be a positive number of seconds, got {dt_s}")
        p = self.params
        n_slow = max(1, math.ceil(dt_s / p.slow_step_s - 1e-9))
        h = dt_s / n_slow
        n_fast = max(1, math.ceil(h / p.plc_sample_s - 1e-9))
        for _ in range(n_slow):
            self._advance(h, n_fast)

    def measurements(self) -> Measurements:
        """Every instrument reading now, with injected sensor faults applied."""
        p = self.params
        f = self.faults
        dp = self._primary_dp_mpa()
        static = self._static_pressure_mpa()
        return Measurements(
            timestamp=self._t,
            outdoor_c=f.reading("outdoor", self.weather(self._t)),
            primary_supply_c=f.reading("primary_supply", self._t_ps),
            primary_return_c=f.reading("primary_return", self._t_pr),
            primary_supply_mpa=p.primary.return_pressure_mpa + dp,
            primary_return_mpa=p.primary.return_pressure_mpa,
            primary_flow_m3h=self._primary_flow_m3h(),
            valve_pct=self._valve_pct,
            secondary_supply_c=f.reading("secondary_supply", self._t_st),
            secondary_return_c=f.reading("secondary_return", self._t_rn),
            secondary_supply_mpa=static + self._pump_head_mpa,
            secondary_return_mpa=static,
            secondary_flow_m3h=self._flow_m3h,
            pump_frequency_hz=self._pump_hz,
            pump_running=self._pump_running,
            pump_fault=f.pump_tripped,
            makeup_pump_running=self._makeup_running,
            makeup_pump_fault=f.makeup_pump_failed,
            makeup_flow_m3h=self._makeup_m3h,
            makeup_total_m3=self._makeup_total_m3,
            tank_level_pct=100.0 * self._tank_m3 / p.secondary.tank_volume_m3,
            pit_flooded=f.pit_flooded,
            overtemp_trip=self.plc.overtemp_trip,
            overpressure_trip=self.plc.overpressure_trip,
            primary_supply_lost=self.plc.primary_supply_lost,
            rooms=self._sensors.readings(self._t),
            meter=self._meter_reading(),
        )

    @property
    def ledger(self) -> EnergyLedger:
        return EnergyLedger(
            primary_in=self._primary_in,
            delivered=self._delivered,
            stored=self._stored_heat() - self._stored0,
            pipe_losses=self._pipe_losses,
            water_losses=self._water_losses,
        )

    @property
    def truth(self) -> Truth:
        rooms = self._rooms
        return Truth(
            timestamp=self._t,
            outdoor_c=self.weather(self._t),
            rooms_c=dict(zip(rooms.names, rooms.air_c.tolist(), strict=True)),
            room_mass_c=dict(zip(rooms.names, rooms.mass_c.tolist(), strict=True)),
            room_heat_w=dict(zip(rooms.names, self._q_rooms.tolist(), strict=True)),
            primary_supply_c=self._t_ps,
            primary_return_c=self._t_pr,
            primary_flow_kg_s=self._m_primary,
            exchanger_duty_w=self._q_hx,
            secondary_supply_c=self._t_st,
            network_supply_c=self._t_ns,
            secondary_return_c=self._t_rn,
            secondary_flow_kg_s=self._m_secondary,
            valve_pct=self._valve_pct,
            pump_running=self._pump_running,
            static_pressure_mpa=self._static_pressure_mpa(),
            water_deficit_m3=self._deficit_m3,
            tank_m3=self._tank_m3,
        )

    # --- one slow step ---

    def _advance(self, h: float, n_fast: int) -> None:
        t_out = self.weather(self._t)
        self._update_pump()
        leak_m3, makeup_m3 = self._water_moved_m3(h)
        e_hx, h_to_network, primary_kg = self._run_plc_cycles(n_fast, h / n_fast)
        self._primary_in += e_hx
        self._integrate_meter(e_hx, primary_kg, h)
        self._advance_network(h, t_out, h_to_network, leak_m3, makeup_m3)
        self._advance_pressurisation(h, leak_m3, makeup_m3)
        self._advance_primary_supply(h, t_out)
        self._t += h
        self._sensors.update(self._t, self._rooms.air_c, self.faults)

    def _update_pump(self) -> None:
        """Circulation pump for this slow step: drive enabled by the PLC, not tripped -> affinity-law flow."""
        p = self.params
        self._pump_running = self.plc.pump_enabled and not self.faults.pump_tripped
        self._pump_hz = self.plc.pump_frequency_setpoint_hz if self._pump_running else 0.0
        self._flow_m3h = pump_flow_m3h(self._pump_hz, p.pump.design_flow_m3h, p.pump.design_frequency_hz)
        self._pump_head_mpa = pump_head_mpa(self._pump_hz, p.pump.design_head_mpa, p.pump.design_frequency_hz)
        self._m_secondary = self._flow_m3h * water_density(self._t_rn) / 3600.0

    def _run_plc_cycles(self, n: int, h: float) -> tuple[float, float, float]:
        """PLC, valve, primary hydraulics, exchanger and station node for ``n`` cycles of ``h`` s.

        The return water entering the exchanger (``_t_rn``) and the primary supply are held for
        the slow step. Returns (heat from the primary J, enthalpy sent on to the supply node J,
        primary mass that passed kg).
        """
        p = self.params
        plc = self.plc
        f = self.faults
        valve = p.valve
        design = self.design
        measured_fault = f.reading("secondary_supply", math.nan) if f.overridden("secondary_supply") else None
        supply_mpa = self._static_pressure_mpa() + self._pump_head_mpa
        dp = self._primary_dp_mpa()
        forced_ot, forced_op = f.forced_overtemp, f.forced_overpressure
        pump_running = self._pump_running
        rho_p = water_density(self._t_pr)
        kg_s_per_kv = kv_flow_m3h(1.0, dp, rho_p) * rho_p / 3600.0
        m_s = self._m_secondary
        c_sec = m_s * CP_WATER
        c_node = self._mass_station * CP_WATER
        max_move = 100.0 * h / valve.stroke_s
        t_ps, t_rn = self._t_ps, self._t_rn
        x, t_st = self._valve_pct, self._t_st
        m_p = q = e_hx = h_out = primary_kg = 0.0
        for _ in range(n):
            measured = t_st if measured_fault is None else measured_fault
            command = plc.scan(h, measured, t_st, supply_mpa, dp, x, pump_running, forced_ot, forced_op)
            x += max(-max_move, min(max_move, command - x))
            kv = series_kv(
                valve.kvs * valve_relative_kv(x, valve.rangeability, valve.seat_pct), p.heat_exchanger.primary_kv
            )
            m_p = kv * kg_s_per_kv
            ua = plate_ua(
                design.ua_w_per_k,
                m_p,
                m_s,
                design.primary_flow_kg_s,
                design.secondary_flow_kg_s,
                p.heat_exchanger.film_exponent,
            )
            q = counterflow_duty(m_p * CP_WATER, c_sec, t_ps, t_rn, ua)
            e_hx += q * h
            h_out += c_sec * t_st * h
            primary_kg += m_p * h
            t_st += h * (c_sec * (t_rn - t_st) + q) / c_node
        self._valve_pct, self._t_st = x, t_st
        self._m_primary, self._q_hx = m_p, q
        self._t_pr = t_ps - q / (m_p * CP_WATER) if m_p > 0.0 else t_rn
        return e_hx, h_out, primary_kg

    def _water_moved_m3(self, h: float) -> tuple[float, float]:
        """(leaked, made up) water volumes in this slow step; the tank can only give what it holds."""
        sec = self.params.secondary
        leak = (self.faults.leak_m3h + sec.background_loss_m3h) * h / 3600.0
        makeup = min(self._makeup_m3h * h / 3600.0, self._tank_m3)
        return leak, makeup

    def _advance_network(self, h: float, t_out: float, h_from_station: float, leak_m3: float, makeup_m3: float) -> None:
        """Radiators, rooms, and the supply and return nodes: enthalpy in minus enthalpy out.

        ``h_from_station`` is the enthalpy the station node sent on during the PLC cycles (J).
        Leaking water leaves from the return node at its temperature; cold make-up enters it.
        """
        sec = self.params.secondary
        rooms = self._rooms
        m_s = self._m_secondary
        t_ret, q_rooms = rooms.radiators(self._t_ns, m_s)
        self._q_rooms = q_rooms
        rooms.advance(h, q_rooms, rooms.gains_w(self._t), t_out)
        ua_half = 0.5 * sec.pipe_loss_w_per_k
        ground = sec.ground_temperature_c
        loss_supply = ua_half * (self._t_ns - ground) * h
        loss_return = ua_half * (self._t_rn - ground) * h
        leak_j = leak_m3 * water_density(self._t_rn) * CP_WATER * self._t_rn
        makeup_j = makeup_m3 * water_density(sec.makeup_water_c) * CP_WATER * sec.makeup_water_c
        supply_out = m_s * CP_WATER * self._t_ns * h
        return_in = rooms.return_enthalpy_rate(t_ret, m_s) * h
        return_out = m_s * CP_WATER * self._t_rn * h
        self._delivered += float(q_rooms.sum()) * h
        self._pipe_losses += loss_supply + loss_return
        self._water_losses += leak_j - makeup_j
        self._t_ns += (h_from_station - supply_out - loss_supply) / (self._mass_supply * CP_WATER)
        self._t_rn += (return_in - return_out - loss_return - leak_j + makeup_j) / (self._mass_return * CP_WATER)

    def _advance_pressurisation(self, h: float, leak_m3: float, makeup_m3: float) -> None:
        """Water inventory, softened-water tank (refilled at the softener's rate), make-up decision.

        The make-up pump decides at the end of each slow step from the static pressure and its
        band, and runs (or not) for the whole next step.
        """
        sec = self.params.secondary
        self._deficit_m3 += leak_m3 - makeup_m3
        self._makeup_total_m3 += makeup_m3
        self._tank_m3 = min(sec.tank_volume_m3, self._tank_m3 - makeup_m3 + sec.softener_flow_m3h * h / 3600.0)
        self._decide_makeup()

    def _decide_makeup(self) -> None:
        """Make-up pump in auto: start below the pressure band, stop at its top; dry-run lock on the tank."""
        sec = self.params.secondary
        level = 100.0 * self._tank_m3 / sec.tank_volume_m3
        if level <= sec.tank_dry_pct:
            self._tank_dry = True
        elif level >= sec.tank_restart_pct:
            self._tank_dry = False
        static = self._static_pressure_mpa()
        allowed = self.plc.makeup_auto and not self.faults.makeup_pump_failed and not self._tank_dry
        if not allowed or static >= sec.makeup_stop_mpa:
            self._makeup_running = False
        elif static < sec.makeup_start_mpa:
            self._makeup_running = True
        self._makeup_m3h = sec.makeup_flow_m3h if self._makeup_running else 0.0

    def _advance_primary_supply(self, h: float, t_out: float) -> None:
        """The network's supply temperature follows its curve with a lag, or cools when lost."""
        primary = self.params.primary
        if self.faults.primary_lost:
            target, tau = primary.pit_temperature_c, primary.loss_cooling_s
        else:
            target, tau = self._primary_curve(t_out), primary.supply_lag_s
        self._t_ps = target + (self._t_ps - target) * math.exp(-h / tau)

    def _integrate_meter(self, e_hx: float, primary_kg: float, h: float) -> None:
        """Heat meter totals: volume at the return probe's density, energy with cp(T) like EN 1434."""
        if primary_kg <= 0.0:
            return
        volume = primary_kg / water_density(self._t_pr)
        if volume * 3600.0 / h < self.params.meter.low_flow_cutoff_m3h:
            return
        self._meter_volume_m3 += volume
        if not self._meter_probe_error():
            self._meter_energy_j += e_hx * water_cp(0.5 * (self._t_ps + self._t_pr)) / CP_WATER

    # --- state helpers ---

    def _settle(self, t_out: float, setpoint: float, pump_hz: float) -> None:
        """Steady state for ``setpoint`` at the station's supply sensor (rooms, water, valve).

        Three passes let the water densities (pump mass flow, primary flow) agree with the return
        temperatures they produce.
        """
        p = self.params
        sec = p.secondary
        ua_half = 0.5 * sec.pipe_loss_w_per_k
        ground = sec.ground_temperature_c
        self._pump_running, self._pump_hz = True, pump_hz
        self._flow_m3h = pump_flow_m3h(pump_hz, p.pump.design_flow_m3h, p.pump.design_frequency_hz)
        self._pump_head_mpa = pump_head_mpa(pump_hz, p.pump.design_head_mpa, p.pump.design_frequency_hz)
        self._t_st = self._t_rn = self._t_pr = setpoint
        for _ in range(3):
            m_s = self._m_secondary = self._flow_m3h * water_density(self._t_rn) / 3600.0
            c_s = m_s * CP_WATER
            self._t_ns = (c_s * setpoint + ua_half * ground) / (c_s + ua_half)
            self._rooms.settle(self._t_ns, m_s, t_out)
            t_ret, self._q_rooms = self._rooms.radiators(self._t_ns, m_s)
            into_return = self._rooms.return_enthalpy_rate(t_ret, m_s)
            self._t_rn = (into_return + ua_half * ground) / (c_s + ua_half)
            self._valve_pct = self._valve_for_duty(c_s * (setpoint - self._t_rn))
            self._q_hx = self._duty_at_valve(self._valve_pct)
            self._t_pr = self._t_ps - self._q_hx / (self._m_primary * CP_WATER) if self._m_primary > 0.0 else self._t_rn

    def _valve_for_duty(self, duty_w: float) -> float:
        """Valve position whose exchanger duty is ``duty_w`` now (bisection: duty rises with lift)."""
        low, high = 0.0, 100.0
        for _ in range(50):
            mid = 0.5 * (low + high)
            if self._duty_at_valve(mid) < duty_w:
                low = mid
            else:
                high = mid
        return 0.5 * (low + high)

    def _duty_at_valve(self, x: float) -> float:
        """Exchanger duty (W) at valve position ``x`` for the current temperatures; sets the primary flow."""
        p = self.params
        d = self.design
        rho = water_density(self._t_pr)
        kv = series_kv(
            p.valve.kvs * valve_relative_kv(x, p.valve.rangeability, p.valve.seat_pct), p.heat_exchanger.primary_kv
        )
        self._m_primary = kv_flow_m3h(kv, self._primary_dp_mpa(), rho) * rho / 3600.0
        ua = plate_ua(
            d.ua_w_per_k,
            self._m_primary,
            self._m_secondary,
            d.primary_flow_kg_s,
            d.secondary_flow_kg_s,
            p.heat_exchanger.film_exponent,
        )
        return counterflow_duty(self._m_primary * CP_WATER, self._m_secondary * CP_WATER, self._t_ps, self._t_rn, ua)

    def _primary_curve(self, t_out: float) -> float:
        pr = self.params.primary
        return primary_supply_curve_c(
            t_out, self.params.design_outdoor_c, pr.supply_at_design_c, pr.supply_min_c, pr.supply_min_from_outdoor_c
        )

    def _clamp_setpoint(self, value: float) -> float:
        low, high = self.params.plc_limits.supply_setpoint_c
        return min(high, max(low, value))

    def _primary_dp_mpa(self) -> float:
        return 0.0 if self.faults.primary_lost else self.params.primary.dp_available_mpa

    def _static_pressure_mpa(self) -> float:
        sec = self.params.secondary
        return max(0.0, sec.static_full_mpa - self._deficit_m3 * sec.pressure_per_m3_mpa)

    def _primary_flow_m3h(self) -> float:
        return self._m_primary * 3600.0 / water_density(self._t_pr)

    def _stored_heat(self) -> float:
        return CP_WATER * (
            self._mass_station * self._t_st + self._mass_supply * self._t_ns + self._mass_return * self._t_rn
        )

    def _meter_probe_error(self) -> bool:
        return self.faults.overridden("meter_supply") or self.faults.overridden("meter_return")

    def _meter_reading(self) -> MeterReading:
        f = self.faults
        m = self.params.meter
        flow = self._primary_flow_m3h()
        supply = f.reading("meter_supply", self._t_ps)
        ret = f.reading("meter_return", self._t_pr)
        status = 0
        power_kw = 0.0
        if self._meter_probe_error():
            status |= _METER_PROBE_ERROR
        if flow < m.low_flow_cutoff_m3h:
            status |= _METER_NO_FLOW
            flow = 0.0
        elif self._t_ps - self._t_pr < m.low_dt_k:
            status |= _METER_LOW_DT
        if not status & (_METER_PROBE_ERROR | _METER_NO_FLOW):
            mean = 0.5 * (self._t_ps + self._t_pr)
            power_kw = max(0.0, self._m_primary * water_cp(mean) * (self._t_ps - self._t_pr)) / 1000.0
        return MeterReading(
            flow_m3h=flow,
            power_kw=power_kw,
            supply_c=supply,
            return_c=ret,
            energy_gj=self._meter_energy_j / 1e9,
            energy_kwh=self._meter_energy_j / 3.6e6,
            volume_m3=self._meter_volume_m3,
            status=status,
        )

    def _healthy_reading(self, sensor: str) -> float:
        """A sensor's reading without faults (what ``faults.freeze(sensor)`` sticks at)."""
        wired = {
            "outdoor": self.weather(self._t),
            "primary_supply": self._t_ps,
            "primary_return": self._t_pr,
            "secondary_supply": self._t_st,
            "secondary_return": self._t_rn,
            "meter_supply": self._t_ps,
            "meter_return": self._t_pr,
        }
        if sensor in wired:
            return wired[sensor]
        return round(float(self._rooms.air_c[self._rooms.names.index(sensor)]), 1)
