"""What the station's instruments show: the contract between the physics and the protocol servers.

The physics (``sim.station.Station``) produces a ``Measurements`` snapshot; the protocol servers
(``sim.modbus_server``) only ever encode these snapshots into registers. Keeping this boundary
narrow is what lets OPC UA or Modbus RTU servers be added without touching the physics.

Sensor faults are already applied here: an open-circuit outdoor sensor shows 850.0 in
``outdoor_c`` because that is what the PLC's analogue input would show.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RoomReading:
    """A wireless room sensor as seen by the concentrator: slow, quantised, sometimes missing."""

    name: str
    building: str
    temperature_c: float | None  # None until the sensor has reported at least once
    age_s: float  # seconds since the last report reached the concentrator


@dataclass(frozen=True, slots=True)
class MeterReading:
    """Primary-side heat meter (integrating calculator with flow sensor and paired temperature probes)."""

    flow_m3h: float
    power_kw: float
    supply_c: float
    return_c: float
    energy_gj: float
    energy_kwh: float
    volume_m3: float
    status: int  # 0 = ok; bit 0 = temperature probe error, bit 1 = no flow, bit 2 = reverse/low dT


@dataclass(frozen=True, slots=True)
class Measurements:
    """Every value the station PLC and the heat meter expose, at one instant of simulated time."""

    timestamp: float  # simulated POSIX time, UTC
    outdoor_c: float
    primary_supply_c: float
    primary_return_c: float
    primary_supply_mpa: float
    primary_return_mpa: float
    primary_flow_m3h: float
    valve_pct: float  # actual valve position, 0..100
    secondary_supply_c: float
    secondary_return_c: float
    secondary_supply_mpa: float
    secondary_return_mpa: float
    secondary_flow_m3h: float
    pump_frequency_hz: float  # actual circulation pump frequency (0 when stopped or tripped)
    pump_running: bool
    pump_fault: bool
    makeup_pump_running: bool
    makeup_pump_fault: bool
    makeup_flow_m3h: float
    makeup_total_m3: float
    tank_level_pct: float
    pit_flooded: bool
    overtemp_trip: bool  # latched PLC interlock, reset through the PLC's alarm-reset command
    overpressure_trip: bool
    primary_supply_lost: bool  # primary differential pressure below the PLC's threshold
    rooms: tuple[RoomReading, ...]
    meter: MeterReading
