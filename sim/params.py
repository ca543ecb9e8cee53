"""Parameters of the simulated station, with the demo station as defaults.

The demo station serves three residential buildings (37,000 m2, ~1.7 MW at design) in a
Beijing-like climate from a district network. Every number is a default for a dataclass field,
never a constant in the physics, so a test can build another station with
``dataclasses.replace`` and a station file (``sim.station_file``) builds one per circuit. Where a number comes from is said next to it; "typical" means a value
in the usual range of Chinese design practice and equipment catalogues, not a measured site.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sim.plc import PlcLimits, PlcParams


@dataclass(frozen=True, slots=True)
class PrimaryParams:
    """The district network at the station's connection.

    The supply-temperature curve is a typical utility curve for a 115/55 network: 115 degC at the
    design outdoor temperature, falling linearly to 70 degC at +5 degC and held there (the floor
    keeps domestic hot water possible). The network follows its curve slowly (transport and
    plant regulation take hours), modelled as a first-order lag.
    """

    supply_at_design_c: float = 115.0
    supply_min_c: float = 70.0
    supply_min_from_outdoor_c: float = 5.0
    supply_lag_s: float = 2 * 3600.0
    dp_available_mpa: float = 0.10
    """Differential pressure the network leaves across the station (supply - return)."""
    return_pressure_mpa: float = 0.40
    loss_cooling_s: float = 3600.0
    """When the primary supply is lost, the stagnant supply pipe cools toward the pit with this time constant."""
    pit_temperature_c: float = 15.0


@dataclass(frozen=True, slots=True)
class ValveParams:
    """Primary control valve: DN65 equal-percentage globe valve with an electric actuator.

    Kvs 63 with the exchanger's Kv 60 gives an authority of ~0.47 at full lift and the design
    flow (~25 m3/h at 0.1 MPa) at ~78 % lift, leaving headroom for off-design conditions.
    Rangeability 50 and a 90 s stroke are common catalogue values for such actuators.
    """

    kvs: float = 63.0
    rangeability: float = 50.0
    stroke_s: float = 90.0
    seat_pct: float = 2.0
    """Below this lift the flow falls linearly to zero (tight shut-off)."""


@dataclass(frozen=True, slots=True)
class HeatExchangerParams:
    """Brazed/gasketed plate exchanger, counterflow.

    UA is sized at construction from the design duty so that the primary return leaves
    ``approach_k`` above the secondary return at design (115/55 primary against 75/50
    secondary: a 5 K cold-end approach, a typical selection). Both film coefficients scale with
    flow^``film_exponent``. ``primary_kv`` is the plate pack's hydraulic resistance on the primary
    side (~17 kPa at the design flow), which the valve's authority is measured against.
    """

    approach_k: float = 5.0
    film_exponent: float = 0.7
    primary_kv: float = 60.0


@dataclass(frozen=True, slots=True)
class PumpParams:
    """Circulation pump on a variable-frequency drive (affinity laws on a quadratic system curve).

    60 m3/h at 45 Hz carries the ~1.7 MW design load with the 25 K design spread; 0.20 MPa
    (20 m) of head is typical for a secondary network of a few buildings.
    """

    design_flow_m3h: float = 60.0
    design_frequency_hz: float = 45.0
    design_head_mpa: float = 0.20


@dataclass(frozen=True, slots=True)
class SecondaryParams:
    """Secondary water volume, pipe losses and the pressurisation (make-up) system.

    30 m3 of water (~18 L per kW of connected load, usual for radiator networks) is split into a
    small station node (exchanger, headers, up to the supply sensor: it sets the PI loop's
    speed) and equal supply and return nodes (pipes plus radiators), which give the network's
    ~30 min circulation its thermal inertia. The static pressure is held at the pump suction:
    the tallest building is 11 floors (~33 m), so ~0.38 MPa keeps its top radiators full. The
    expansion vessel makes the pressure fall 0.1 MPa per m3 of water lost; the make-up pump
    starts at 0.36 MPa and stops at 0.40 MPa.
    """

    system_volume_m3: float = 30.0
    station_volume_m3: float = 0.5
    pipe_loss_w_per_k: float = 600.0
    """Buried-pipe loss of the supply and return networks together, ~2 % of the design load."""
    ground_temperature_c: float = 8.0
    static_full_mpa: float = 0.40
    """Static pressure with no water missing (the make-up pump's stop point)."""
    pressure_per_m3_mpa: float = 0.10
    makeup_start_mpa: float = 0.36
    makeup_stop_mpa: float = 0.40
    makeup_flow_m3h: float = 3.0
    makeup_water_c: float = 10.0
    background_loss_m3h: float = 0.005
    """Normal small losses (valve glands, venting): ~0.4 % of the volume a day."""
    initial_deficit_m3: float = 0.2
    tank_volume_m3: float = 5.0
    softener_flow_m3h: float = 0.5
    """The softener refills the tank (float valve) at this limited rate whenever it is not full."""
    tank_dry_pct: float = 5.0
    """Dry-run protection: the make-up pump locks out at this tank level..."""
    tank_restart_pct: float = 20.0
    """...and is released when the softener has refilled the tank to this level."""


class EmitterKind(StrEnum):
    """How a circuit's heat reaches the rooms."""

    RADIATORS = "radiators"
    FLOOR = "floor"


@dataclass(frozen=True, slots=True)
class EmitterParams:
    """The emitters of a circuit: radiators (no mass of their own) or floor heating in a slab.

    Radiators exchange with the room air directly. Floor-heating pipes sit in a screed slab: the
    water heats the slab (EN 1264 law, ``Q = Q_n (dT_lm / dT_lm_n)^n`` against the *slab*
    temperature) and the slab heats the room through its surface, ``Q = H (T_slab - T_air)``.
    At design the slab is ``slab_overtemperature_k`` above the room (JGJ 142 caps the floor
    surface at 29 degC in living rooms: 9 K over a 20 degC room). ``slab_capacity_j_m2k`` is the
    screed above and around the pipes per m2 of floor (50-70 mm of cement screed, ~2000 kg/m3 at
    ~0.9 kJ/kgK, plus the pipe water: ~100-130 kJ/m2K), which gives a slab time constant of a few
    hours: what makes floor heating slow to answer a setpoint change.
    """

    kind: EmitterKind = EmitterKind.RADIATORS
    slab_capacity_j_m2k: float = 110e3
    slab_overtemperature_k: float = 9.0


@dataclass(frozen=True, slots=True)
class RoomParams:
    """One representative room (measuring point) and the class of rooms it stands for.

    ``area_share`` is the part of the building's floor area that behaves like this room; the
    shares of a building add up to 1 and together they are the building. ``loss_factor`` is the
    room's specific heat loss relative to the building average (normalised so the building's
    design load is exactly area * q). ``radiator_factor`` is its installed radiator capacity
    relative to its own design loss: < 1 is an undersized radiator.
    """

    name: str
    area_share: float
    loss_factor: float
    radiator_factor: float = 1.0


@dataclass(frozen=True, slots=True)
class BuildingParams:
    """A building on the secondary network.

    ``design_load_w_m2`` is the heating load index at the design outdoor and indoor temperatures
    (Beijing practice: ~60 W/m2 for 1980s brick, ~45 for 2000s, ~30 for post-2010 buildings),
    gains excluded as in design. ``time_constant_h`` is the slow (envelope) time constant of each
    room, the one a cool-down shows after its first hour. ``flow_balance`` multiplies the
    building's share of the circulation set by balancing valves: 1.0 is balanced, < 1 starves it.
    """

    name: str
    floor_area_m2: float
    design_load_w_m2: float
    time_constant_h: float
    rooms: tuple[RoomParams, ...]
    internal_gains_w_m2: float = 3.0
    """People, cooking, appliances: ~3 W/m2 on average in Chinese residential design."""
    gains_daily_swing: float = 0.5
    """Relative daily swing of the gains (peak 20:00, low 08:00); 0 makes them constant."""
    flow_balance: float = 1.0


@dataclass(frozen=True, slots=True)
class ZoneModelParams:
    """Constants of the two-node room model (ISO 13790 simple-hourly method, simplified).

    Air node: room air and furniture. Mass node: walls, floors, ceilings. The air node connects to
    outdoors through ventilation and windows (``air_path_share`` of the room's loss) and to the
    mass node through the internal surfaces (ISO 13790: 9.1 W/m2K over ~2.5 m2 of surface per m2
    of floor); the mass node loses the rest through the opaque envelope.
    """

    air_capacity_j_m2k: float = 15e3
    surface_coupling_w_m2k: float = 22.75
    air_path_share: float = 0.4


@dataclass(frozen=True, slots=True)
class RoomSensorParams:
    """Wireless room sensors and their concentrator.

    Each sensor reports the room air temperature, quantised, at seeded intervals; a report can
    be lost on the radio (its age then keeps growing). ``reported_before_start`` gives every
    sensor one report from before the simulation starts, as if the station had been running;
    without it readings are ``None`` until each sensor's first report.
    """

    min_interval_s: float = 300.0
    max_interval_s: float = 900.0
    dropout_probability: float = 0.05
    resolution_c: float = 0.1
    reported_before_start: bool = True


@dataclass(frozen=True, slots=True)
class MeterParams:
    """Primary heat meter (ultrasonic flow sensor in the return, paired PT500 probes)."""

    low_flow_cutoff_m3h: float = 0.05
    low_dt_k: float = 0.2
    """Status bit 2 (reverse/low dT) below this supply-return difference with flow present."""
    initial_energy_gj: float = 0.0
    initial_volume_m3: float = 0.0


def _demo_buildings() -> tuple[BuildingParams, ...]:
    """Three buildings of different age, insulation and mass.

    Every building has an ordinary mid-floor room ("1") and a top-floor corner room whose loss is
    1.5-1.6 times the building average and whose radiator is undersized for it (the usual cold
    room). A's corner room is the worst: ~19 degC at design with the 75/50 curve, the ordinary
    rooms ~20.5-21 degC. C's radiators were selected with an allowance for internal gains.
    """
    return (
        BuildingParams(
            name="A",  # 1980s brick walk-up, 6 floors
            floor_area_m2=9000.0,
            design_load_w_m2=62.0,
            time_constant_h=30.0,
            rooms=(RoomParams("1", 0.92, 0.95), RoomParams("top-corner", 0.08, 1.6, radiator_factor=0.92)),
        ),
        BuildingParams(
            name="B",  # 2000s concrete block, 9 floors, heavy
            floor_area_m2=14000.0,
            design_load_w_m2=48.0,
            time_constant_h=50.0,
            rooms=(RoomParams("1", 0.94, 0.96, 0.97), RoomParams("top-corner", 0.06, 1.6, radiator_factor=0.95)),
        ),
        BuildingParams(
            name="C",  # 2015 light-frame tower, 11 floors, well insulated
            floor_area_m2=14000.0,
            design_load_w_m2=32.0,
            time_constant_h=15.0,
            rooms=(RoomParams("1", 0.95, 0.97, 0.92), RoomParams("top-corner", 0.05, 1.5, radiator_factor=0.95)),
        ),
    )


@dataclass(frozen=True, slots=True)
class StationParams:
    """Everything that defines a simulated station.

    Design conditions follow GB 50736 for Beijing (-7.6 degC outdoors, 20 degC indoors before
    internal gains; the 18 degC legal minimum is what the worst room must keep) with a 75/50
    radiator network. ``slow_step_s`` is the longest internal step of the building and network
    model; the PLC, valve and exchanger always advance in steps of ``plc_sample_s`` or less.
    """

    design_outdoor_c: float = -7.6
    design_indoor_c: float = 20.0
    design_supply_c: float = 75.0
    design_return_c: float = 50.0
    radiator_exponent: float = 1.3
    """The emitters' exponent n (radiators ~1.3 per EN 442, floor heating ~1.1 per EN 1264)."""
    emitter: EmitterParams = EmitterParams()
    primary: PrimaryParams = PrimaryParams()
    valve: ValveParams = ValveParams()
    heat_exchanger: HeatExchangerParams = HeatExchangerParams()
    pump: PumpParams = PumpParams()
    secondary: SecondaryParams = SecondaryParams()
    buildings: tuple[BuildingParams, ...] = field(default_factory=_demo_buildings)
    zone_model: ZoneModelParams = ZoneModelParams()
    room_sensors: RoomSensorParams = RoomSensorParams()
    meter: MeterParams = MeterParams()
    plc: PlcParams = field(default_factory=PlcParams)
    plc_limits: PlcLimits = field(default_factory=PlcLimits)
    plc_sample_s: float = 1.0
    slow_step_s: float = 30.0
    site_utc_offset_h: float = 8.0
