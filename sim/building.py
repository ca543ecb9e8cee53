"""Buildings as sets of representative rooms, and the rooms' wireless temperature sensors.

Each building is split into a few room classes (``RoomParams``): each has a floor-area share, a
specific loss relative to the building average and a radiator sized relative to its own loss.
A class is modelled by one representative room, scaled to its area share, so the building's
heat demand and return water are exactly the sum of its rooms' and every room is a measuring
point. All rooms of all buildings are one vector, so a slow step is a handful of numpy ops.

Room model: two nodes (ISO 13790 simplified, see ``ZoneModelParams``)::

    C_a dTa/dt = Q_rad + G - H_ao (Ta - To) - H_am (Ta - Tm)      air + furniture
    C_m dTm/dt = H_am (Ta - Tm) - H_mo (Tm - To)                    walls, floors

H_ao + H_am*H_mo/(H_am + H_mo) is the room's design loss coefficient. C_m is chosen so that the
slow eigenvalue of this pair is exactly -1/tau of the building's ``time_constant_h``: after the
air node's ~10-25 min transient, a room cools toward To + G/H with that time constant.
Radiators obey Q = Q_n (dT_lm / dT_lm_n)^n; each room gets a fixed share of the circulation
(hydraulic balance: proportional to its radiator, times the building's ``flow_balance``).
Floor heating adds a third node per room, the slab (``EmitterParams``)::

    C_s dTs/dt = Q_water(Ts) - H_sa (Ts - Ta)       Q_rad in the air equation becomes H_sa (Ts - Ta)

with the same emitter law written against the slab temperature, so the water's return and the
energy ledger are computed exactly as for radiators. Solar gains are not modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.faults import Faults
from sim.params import EmitterKind, RoomSensorParams, StationParams
from sim.physics import CP_WATER, FloatArray, log_mean_dt, radiator_return
from sim.readings import RoomReading

_GAINS_PEAK_HOUR = 20.0


@dataclass(frozen=True)
class RoomConstants:
    """Per-room constants derived from the parameters (arrays in room order)."""

    names: tuple[str, ...]
    buildings: tuple[str, ...]
    area_m2: FloatArray
    h_air_out: FloatArray  # W/K, ventilation and windows
    h_air_mass: FloatArray  # W/K, internal surfaces
    h_mass_out: FloatArray  # W/K, opaque envelope
    c_air: FloatArray  # J/K
    c_mass: FloatArray  # J/K
    q_nominal: FloatArray  # W, radiator output at the design supply/return and indoor temperature
    flow_share: FloatArray  # fraction of the secondary circulation, sums to 1
    gains_w: FloatArray  # W, daily mean internal gains
    gains_swing: FloatArray  # relative daily swing
    dt_lm_nominal: float
    exponent: float
    design_dt_k: float  # design indoor - design outdoor temperature
    h_slab_air: FloatArray | None = None  # W/K, floor heating only: slab surface to room air
    c_slab: FloatArray | None = None  # J/K, floor heating only
    slab_design_c: float = 0.0  # slab temperature at design (floor heating)

    @property
    def h_total(self) -> FloatArray:
        """Steady loss coefficient of each room, W/K."""
        return self.h_air_out + self.h_air_mass * self.h_mass_out / (self.h_air_mass + self.h_mass_out)

    @property
    def design_load_w(self) -> FloatArray:
        """Each room's loss at the design outdoor and indoor temperatures (gains ignored, as in design)."""
        return self.h_total * self.design_dt_k


def room_constants(params: StationParams) -> RoomConstants:
    """Size every room from the building parameters (see the module docstring for the model)."""
    zone = params.zone_model
    design_dt = params.design_indoor_c - params.design_outdoor_c
    cols: dict[str, list[float]] = {k: [] for k in ("area", "h", "tau", "radiator", "balance", "gains", "swing")}
    names: list[str] = []
    buildings: list[str] = []
    for b in params.buildings:
        shares = sum(r.area_share for r in b.rooms)
        if not math.isclose(shares, 1.0, abs_tol=1e-6):
            raise ValueError(f"room area shares of building {b.name} add up to {shares}, not 1")
        mean_factor = sum(r.area_share * r.loss_factor for r in b.rooms)
        h_per_m2 = b.design_load_w_m2 / design_dt
        for r in b.rooms:
            area = b.floor_area_m2 * r.area_share
            names.append(f"{b.name}-{r.name}")
            buildings.append(b.name)
            cols["area"].append(area)
            cols["h"].append(h_per_m2 * r.loss_factor / mean_factor * area)
            cols["tau"].append(b.time_constant_h * 3600.0)
            cols["radiator"].append(r.radiator_factor)
            cols["balance"].append(b.flow_balance)
            cols["gains"].append(b.internal_gains_w_m2 * area)
            cols["swing"].append(b.gains_daily_swing)
    if len(set(names)) != len(names):
        raise ValueError("room names must be unique")
    a = {k: np.array(v, dtype=float) for k, v in cols.items()}
    h_air_out = zone.air_path_share * a["h"]
    h_air_mass = zone.surface_coupling_w_m2k * a["area"]
    h_series = (1.0 - zone.air_path_share) * a["h"]
    if np.any(h_series >= h_air_mass):
        raise ValueError("a room loses more through its envelope than its internal surfaces can pass")
    h_mass_out = h_series * h_air_mass / (h_air_mass - h_series)
    c_air = zone.air_capacity_j_m2k * a["area"]
    c_mass = _mass_capacity(a["tau"], c_air, h_air_out, h_air_mass, h_mass_out)
    q_nominal = a["radiator"] * a["h"] * design_dt
    share = q_nominal * a["balance"]
    emitter = params.emitter
    floor = emitter.kind is EmitterKind.FLOOR
    receiving_c = params.design_indoor_c + (emitter.slab_overtemperature_k if floor else 0.0)
    dt_lm_nominal = log_mean_dt(params.design_supply_c - receiving_c, params.design_return_c - receiving_c)
    return RoomConstants(
        names=tuple(names),
        buildings=tuple(buildings),
        area_m2=a["area"],
        h_air_out=h_air_out,
        h_air_mass=h_air_mass,
        h_mass_out=h_mass_out,
        c_air=c_air,
        c_mass=c_mass,
        q_nominal=q_nominal,
        flow_share=share / share.sum(),
        gains_w=a["gains"],
        gains_swing=a["swing"],
        dt_lm_nominal=dt_lm_nominal,
        exponent=params.radiator_exponent,
        design_dt_k=design_dt,
        h_slab_air=q_nominal / emitter.slab_overtemperature_k if floor else None,
        c_slab=emitter.slab_capacity_j_m2k * a["area"] if floor else None,
        slab_design_c=receiving_c,
    )


def _mass_capacity(
    tau_s: FloatArray, c_air: FloatArray, h_ao: FloatArray, h_am: FloatArray, h_mo: FloatArray
) -> FloatArray:
    """Mass-node capacity that puts the slow eigenvalue of the two-node room at -1/tau.

    With s = 1/tau, a1 = H_ao + H_am and a2 = H_am + H_mo, det(A + s I) = 0 gives
    C_m = (a2 + H_am^2 / (s C_a - a1)) / s.
    """
    s = 1.0 / tau_s
    a1 = h_ao + h_am
    a2 = h_am + h_mo
    c_mass = (a2 + h_am**2 / (s * c_air - a1)) / s
    if np.any(c_mass <= 0.0):
        raise ValueError("building time constant too short for the room's air node")
    return c_mass


class Rooms:
    """State (air and mass temperatures) and dynamics of every room, vectorised."""

    def __init__(self, params: StationParams) -> None:
        self.constants = room_constants(params)
        self._utc_offset_h = params.site_utc_offset_h
        n = len(self.constants.names)
        self.air_c: FloatArray = np.full(n, params.design_indoor_c)
        self.mass_c: FloatArray = np.full(n, params.design_indoor_c)
        self.slab_c: FloatArray | None = (
            None if self.constants.c_slab is None else np.full(n, self.constants.slab_design_c)
        )

    @property
    def names(self) -> tuple[str, ...]:
        return self.constants.names

    def gains_w(self, t: float) -> FloatArray:
        """Internal gains now: daily mean times (1 + swing cos(...)), peaking at 20:00 local time."""
        local_hour = (t / 3600.0 + self._utc_offset_h) % 24.0
        phase = math.cos(2.0 * math.pi * (local_hour - _GAINS_PEAK_HOUR) / 24.0)
        return self.constants.gains_w * (1.0 + self.constants.gains_swing * phase)

    def radiators(self, t_supply: float, m_total: float) -> tuple[FloatArray, FloatArray]:
        """(return temperature, heat output) of every room's radiator for the current air temperatures."""
        k = self.constants
        return radiator_return(
            np.full_like(self.air_c, t_supply),
            self.air_c if self.slab_c is None else self.slab_c,
            k.flow_share * m_total,
            k.q_nominal,
            k.dt_lm_nominal,
            k.exponent,
        )

    def advance(self, dt_s: float, q_rad: FloatArray, gains: FloatArray, t_out: float) -> None:
        """Explicit Euler step of every node (dt_s well below the ~10 min air-node time constant).

        ``q_rad`` is what the water gives up; with floor heating it goes into the slab, and the
        room air gets what the slab's surface passes on.
        """
        k = self.constants
        to_air = q_rad
        if self.slab_c is not None:
            assert k.h_slab_air is not None and k.c_slab is not None
            to_air = k.h_slab_air * (self.slab_c - self.air_c)
            self.slab_c = self.slab_c + dt_s * (q_rad - to_air) / k.c_slab
        to_mass = k.h_air_mass * (self.air_c - self.mass_c)
        d_air = (to_air + gains - k.h_air_out * (self.air_c - t_out) - to_mass) / k.c_air
        d_mass = (to_mass - k.h_mass_out * (self.mass_c - t_out)) / k.c_mass
        self.air_c = self.air_c + dt_s * d_air
        self.mass_c = self.mass_c + dt_s * d_mass

    def settle(self, t_supply: float, m_total: float, t_out: float) -> None:
        """Put every room in steady state for a constant supply, flow and outdoor temperature.

        Solves Q_rad(Ta) + G = H (Ta - To) per room by bisection (the left side falls and the
        right side rises with Ta), with the daily-mean internal gains. With floor heating the
        emitter works against the slab, which in steady state sits Q / H_sa above the air.
        """
        k = self.constants
        h = k.h_total
        low = np.full_like(h, t_out - 1.0)
        high = np.full_like(h, max(t_supply, t_out) + 1.0) + k.gains_w / h
        m = k.flow_share * m_total
        supply = np.full_like(h, t_supply)
        for _ in range(60):
            mid = 0.5 * (low + high)
            receiving = mid if k.h_slab_air is None else mid + (h * (mid - t_out) - k.gains_w) / k.h_slab_air
            _, q = radiator_return(supply, receiving, m, k.q_nominal, k.dt_lm_nominal, k.exponent)
            surplus = q + k.gains_w - h * (mid - t_out)
            low = np.where(surplus > 0.0, mid, low)
            high = np.where(surplus > 0.0, high, mid)
        self.air_c = 0.5 * (low + high)
        if k.h_slab_air is not None:
            self.slab_c = self.air_c + (h * (self.air_c - t_out) - k.gains_w) / k.h_slab_air
        self.mass_c = (k.h_air_mass * self.air_c + k.h_mass_out * t_out) / (k.h_air_mass + k.h_mass_out)

    def return_enthalpy_rate(self, t_return: FloatArray, m_total: float) -> float:
        """Enthalpy flow (W, relative to 0 degC) of the water leaving all radiators together."""
        return float(np.dot(self.constants.flow_share * m_total * CP_WATER, t_return))


class RoomSensors:
    """Wireless room sensors: seeded report intervals and radio dropouts, 0.1 K quantisation.

    Each sensor has its own random stream, so its schedule does not depend on how the
    simulation is stepped. A report carries the room air temperature at the end of the step in
    which it falls (a step is at most ``slow_step_s``, short against the 5-15 min interval),
    passed through the sensor's fault (open, short, frozen; a silent sensor sends nothing).
    """

    def __init__(
        self,
        names: tuple[str, ...],
        buildings: tuple[str, ...],
        params: RoomSensorParams,
        seed: int,
        start_t: float,
        air_c: FloatArray,
    ) -> None:
        self._names = names
        self._buildings = buildings
        self._params = params
        self._start_t = start_t
        self._rngs = [np.random.default_rng([seed, 0x5E45, i]) for i in range(len(names))]
        self._value: list[float | None] = [None] * len(names)
        self._reported_at: list[float | None] = [None] * len(names)
        self._next_at: list[float] = []
        for i, rng in enumerate(self._rngs):
            if params.reported_before_start:
                last = start_t - self._interval(rng)
                self._value[i] = self._quantise(float(air_c[i]))
                self._reported_at[i] = last
                self._next_at.append(last + self._interval(rng))
            else:
                self._next_at.append(start_t + rng.uniform(0.0, params.max_interval_s))
        self._next_due = min(self._next_at)

    def update(self, t: float, air_c: FloatArray, faults: Faults) -> None:
        """Deliver every report due by ``t`` (several per sensor if the step was long)."""
        if t < self._next_due:
            return
        for i, rng in enumerate(self._rngs):
            while self._next_at[i] <= t:
                at = self._next_at[i]
                lost = rng.uniform() < self._params.dropout_probability
                name = self._names[i]
                if not lost and not faults.is_silent(name):
                    self._value[i] = faults.reading(name, self._quantise(float(air_c[i])))
                    self._reported_at[i] = at
                self._next_at[i] = at + self._interval(rng)
        self._next_due = min(self._next_at)

    def readings(self, t: float) -> tuple[RoomReading, ...]:
        """What the concentrator holds now; a never-reported sensor's age counts from the start."""
        return tuple(
            RoomReading(
                name=name,
                building=building,
                temperature_c=value,
                age_s=t - (self._start_t if at is None else at),
            )
            for name, building, value, at in zip(
                self._names, self._buildings, self._value, self._reported_at, strict=True
            )
        )

    def _interval(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self._params.min_interval_s, self._params.max_interval_s))

    def _quantise(self, value: float) -> float:
        step = self._params.resolution_c
        return round(round(value / step) * step, 6)
