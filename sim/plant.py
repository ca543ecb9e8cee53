"""A heat-exchange station with one or more heating circuits, each behind its own heat exchanger.

Why one exchanger per circuit rather than one shared secondary with mixing circuits: that is how
Chinese stations serving radiators and floor heating are built (one plate exchanger, circulation
pump, make-up and PLC loop per system, the systems' design temperatures and static pressures
being different), and it keeps each circuit exactly the already-tested one-circuit model
(``sim.station.Station``). The circuits are parallel branches across the same primary connection:
they share the weather, the primary supply temperature (the same network curve and lag) and the
differential pressure the network leaves across the station, and one heat meter measures their
sum (flows add, returns mix by flow, energies add).

Each circuit's room sensors draw from their own random stream (seed + ``_SENSOR_SEED_STRIDE`` x
circuit), so circuit 0 of a plant is bit for bit the one-circuit station with the same seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from sim.faults import Faults, InterlockKind
from sim.params import StationParams
from sim.plc import Plc
from sim.readings import Measurements, MeterReading
from sim.registers import Layout
from sim.station import EnergyLedger, Station
from sim.weather import Climate, OutdoorProfile, SeasonDates

_SENSOR_SEED_STRIDE = 7919
_SHARED_SENSORS = frozenset({"outdoor", "primary_supply", "meter_supply", "meter_return"})
_SHARED_FLAGS = frozenset({"primary_loss", "pit_flooding"})


@dataclass(frozen=True, slots=True)
class CircuitParams:
    """One heating circuit: its name and the one-circuit station model behind its exchanger."""

    name: str
    params: StationParams


@dataclass(frozen=True, slots=True)
class PlantParams:
    """A whole station as a station file describes it (``sim.station_file``)."""

    name: str
    circuits: tuple[CircuitParams, ...]
    climate: Climate = Climate()
    season: SeasonDates = SeasonDates()

    @property
    def utc_offset_h(self) -> float:
        return self.circuits[0].params.site_utc_offset_h

    @property
    def floor_area_m2(self) -> float:
        return sum(b.floor_area_m2 for c in self.circuits for b in c.params.buildings)


class PlantFaults:
    """Fault injection on a plant, routed to the circuit the fault belongs to.

    Station-wide instruments (outdoor, primary supply, the meter's probes), the primary supply and
    the pit are every circuit's; a room sensor is its circuit's; pumps, leaks, interlocks and the
    secondary sensors take ``circuit`` (default 0, so a one-circuit plant takes the same calls as
    a ``Station``'s ``Faults``).
    """

    def __init__(self, circuits: tuple[Station, ...]) -> None:
        self._circuits = circuits

    def _for_sensor(self, sensor: str, circuit: int) -> tuple[Faults, ...]:
        if sensor in _SHARED_SENSORS:
            return tuple(c.faults for c in self._circuits)
        owners = tuple(c.faults for c in self._circuits if sensor in c.room_names)
        return owners or (self._circuits[circuit].faults,)

    def sensor_open(self, sensor: str, circuit: int = 0) -> None:
        for f in self._for_sensor(sensor, circuit):
            f.sensor_open(sensor)

    def sensor_short(self, sensor: str, circuit: int = 0) -> None:
        for f in self._for_sensor(sensor, circuit):
            f.sensor_short(sensor)

    def freeze(self, sensor: str, value: float | None = None, circuit: int = 0) -> None:
        for f in self._for_sensor(sensor, circuit):
            f.freeze(sensor, value)

    def sensor_silent(self, sensor: str, circuit: int = 0) -> None:
        for f in self._for_sensor(sensor, circuit):
            f.sensor_silent(sensor)

    def pump_trip(self, circuit: int = 0) -> None:
        self._circuits[circuit].faults.pump_trip()

    def makeup_pump_fault(self, circuit: int = 0) -> None:
        self._circuits[circuit].faults.makeup_pump_fault()

    def leak(self, m3h: float, circuit: int = 0) -> None:
        self._circuits[circuit].faults.leak(m3h)

    def trip_interlock(self, kind: InterlockKind, circuit: int = 0) -> None:
        self._circuits[circuit].faults.trip_interlock(kind)

    def primary_loss(self) -> None:
        for c in self._circuits:
            c.faults.primary_loss()

    def pit_flooding(self) -> None:
        for c in self._circuits:
            c.faults.pit_flooding()

    def clear(self, name: str | None = None) -> None:
        """Clear a fault by its ``active()`` name (``c1.pump_trip``, ``M5-1``, ``outdoor``), or all."""
        if name is None:
            self.clear_all()
            return
        prefix, _, rest = name.partition(".")
        if rest and prefix[:1] == "c" and prefix[1:].isdigit():
            self._circuits[int(prefix[1:])].faults.clear(rest)
        elif name in _SHARED_SENSORS or name in _SHARED_FLAGS:
            for c in self._circuits:
                c.faults.clear(name)
        else:
            for f in self._for_sensor(name, 0):
                f.clear(name)

    def clear_all(self) -> None:
        for c in self._circuits:
            c.faults.clear_all()

    def active(self) -> dict[str, object]:
        """Circuit 0's faults by name; another circuit's prefixed ``c<N>.``."""
        merged: dict[str, object] = {}
        for index, c in enumerate(self._circuits):
            prefix = "" if index == 0 else f"c{index}."
            merged.update({prefix + k: v for k, v in c.faults.active().items()})
        return merged


class Plant:
    """A station of ``PlantParams.circuits`` in simulated time (the ``Station`` contract, per circuit)."""

    def __init__(
        self, params: PlantParams, start: datetime, seed: int | None = None, weather: OutdoorProfile | None = None
    ) -> None:
        """Every circuit in steady state at ``start``; ``seed`` (weather and sensors) defaults to the file's."""
        self.params = params
        seed = params.climate.seed if seed is None else seed
        self.weather: OutdoorProfile = weather if weather is not None else params.climate.profile(seed, params.utc_offset_h)
        self.circuits: tuple[Station, ...] = tuple(
            Station(c.params, start=start, seed=seed + _SENSOR_SEED_STRIDE * i, weather=self.weather)
            for i, c in enumerate(params.circuits)
        )
        self.faults = PlantFaults(self.circuits)
        self.layout = Layout(circuits=len(self.circuits), rooms=len(self.room_names))

    @property
    def circuit_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.params.circuits)

    @property
    def now(self) -> datetime:
        return self.circuits[0].now

    @property
    def time_s(self) -> float:
        return self.circuits[0].time_s

    @property
    def room_names(self) -> tuple[str, ...]:
        """Every room, circuit by circuit: the order of the room registers."""
        return tuple(name for c in self.circuits for name in c.room_names)

    @property
    def plc(self) -> Plc:
        return self.circuits[0].plc

    @property
    def plcs(self) -> tuple[Plc, ...]:
        return tuple(c.plc for c in self.circuits)

    def step(self, dt_s: float) -> None:
        for c in self.circuits:
            c.step(dt_s)

    def measurements(self) -> Measurements:
        """Circuit 0's instruments, every room of the station, and the station's one heat meter."""
        each = [c.measurements() for c in self.circuits]
        if len(each) == 1:
            return each[0]
        return dataclasses.replace(
            each[0],
            rooms=tuple(r for m in each for r in m.rooms),
            meter=combined_meter([m.meter for m in each], self.circuits[0].params.meter.low_flow_cutoff_m3h),
        )

    def circuit_measurements(self) -> tuple[Measurements, ...]:
        """Circuits 1.. as their own instruments show them (their meter fields are their branch's)."""
        return tuple(c.measurements() for c in self.circuits[1:])

    def rooms_c(self) -> dict[str, float]:
        """True room air temperatures of every circuit."""
        return {name: t for c in self.circuits for name, t in c.truth.rooms_c.items()}

    @property
    def ledger(self) -> EnergyLedger:
        parts = [c.ledger for c in self.circuits]
        return EnergyLedger(*(sum(getattr(p, f.name) for p in parts) for f in dataclasses.fields(EnergyLedger)))


def combined_meter(readings: list[MeterReading], low_flow_cutoff_m3h: float) -> MeterReading:
    """One meter on the station's primary connection in front of the circuits' branches.

    Flows, powers, energies and volumes add; the return probe sits in the mixed return, so it
    reads the flow-weighted mean; the supply probe is common (circuit 0's reading). A probe error
    anywhere is the meter's; no flow only when no branch flows.
    """
    flow = sum(r.flow_m3h for r in readings)
    ret = sum(r.flow_m3h * r.return_c for r in readings) / flow if flow > 0.0 else readings[0].return_c
    status = readings[0].status & 1
    for r in readings:
        status |= r.status & 1
    if flow < low_flow_cutoff_m3h:
        status |= 2
    return MeterReading(
        flow_m3h=flow,
        power_kw=sum(r.power_kw for r in readings),
        supply_c=readings[0].supply_c,
        return_c=ret,
        energy_gj=sum(r.energy_gj for r in readings),
        energy_kwh=sum(r.energy_kwh for r in readings),
        volume_m3=sum(r.volume_m3 for r in readings),
        status=status,
    )
