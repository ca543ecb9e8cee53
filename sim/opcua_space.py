"""The station PLC's OPC UA address space, as data: which node shows which value, in which type.

Generated from the same ``RegisterMap`` rows as the Modbus registers, so both protocols show the
same values from the same sources and accept the same writes within the same PLC limits; only
the layout differs. Where Modbus has flat tables, OPC UA has objects the way station PLCs
(S7-1500, B&R, Beckhoff) lay out their programs::

    Objects/Station/
        Outdoor/Temperature
        PrimarySide/{SupplyTemperature, ReturnTemperature, SupplyPressure, ReturnPressure, Flow,
                     ValvePosition, SupplyLost, ValveMode*, ManualValvePosition*, PiGain, ...}
        SecondarySide/{SupplyTemperature, ..., Flow, SupplySetpoint*}
        Pumps/Circulation/{Frequency, FrequencySetpoint*, RunCommand*, Running, Fault}
        Pumps/MakeUp/{Flow, Total, Auto*, Running, Fault}
        Tank/Level        Safety/{PitFlooded, OvertempTrip, OverpressureTrip, AlarmReset*}
        Rooms/RoomNN/{Temperature, Age}    HeatMeter/{Flow, Power, ..., Energy, Status}
        Diagnostics/Heartbeat (numeric NodeId), Diagnostics/ProgramId (GUID NodeId)
        CircuitN/...  (circuits 1..: the per-circuit objects again)        (* writable)

String NodeIds are the dotted path below ``Station`` (``SecondarySide.SupplySetpoint``,
``Circuit1.Pumps.Circulation.Frequency``), all in the namespace ``NAMESPACE_URI``. Nothing here
does I/O.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from sim.registers import Device, Register, RegisterMap, Snapshot, Value

NAMESPACE_URI = "urn:heatgw:sim:station-plc"
ROOT_NAME = "Station"
HEARTBEAT_ID = 1000
"""Numeric identifier of ``Diagnostics.Heartbeat`` (a counter the PLC increments every scan)."""
PROGRAM_ID = uuid.UUID("5f1c2a9e-7d43-4b8e-9a61-0c2d3e4f5a6b")
"""GUID identifier of ``Diagnostics.ProgramId`` (the loaded program's id, a string)."""
UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"


class Kind(StrEnum):
    """The OPC UA built-in type a node declares (``ua.VariantType`` member names)."""

    BOOLEAN = "Boolean"
    FLOAT = "Float"
    DOUBLE = "Double"
    UINT16 = "UInt16"
    UINT32 = "UInt32"
    STRING = "String"


@dataclass(frozen=True, slots=True)
class Unit:
    """An engineering unit as OPC UA's ``EUInformation`` carries it (UNECE code)."""

    symbol: str
    code: str
    description: str
    instrument_range: tuple[float, float]  # the ``EURange`` a percent deadband is taken of

    @property
    def unit_id(self) -> int:
        """The UNECE common code packed into an Int32, as OPC UA Part 8 specifies."""
        value = 0
        for char in self.code:
            value = (value << 8) | ord(char)
        return value


UNITS: dict[str, Unit] = {
    "°C": Unit("°C", "CEL", "degree Celsius", (-50.0, 150.0)),
    "MPa": Unit("MPa", "MPA", "megapascal", (0.0, 2.5)),
    "m³/h": Unit("m³/h", "MQH", "cubic metre per hour", (0.0, 1000.0)),
    "%": Unit("%", "P1", "percent", (0.0, 100.0)),
    "Hz": Unit("Hz", "HTZ", "hertz", (0.0, 60.0)),
    "m³": Unit("m³", "MTQ", "cubic metre", (0.0, 1e9)),
    "kW": Unit("kW", "KWT", "kilowatt", (-100.0, 50000.0)),
    "GJ": Unit("GJ", "GV", "gigajoule", (0.0, 1e9)),
    "kWh": Unit("kWh", "KWH", "kilowatt hour", (0.0, 4.0e9)),
    "s": Unit("s", "SEC", "second", (0.0, 4.0e9)),
    "%/K": Unit("%/K", "P1", "percent per kelvin", (0.0, 100.0)),
}

# Register name (circuit 0's, without the c<N>_ prefix) -> (path below Station, type).
_PLACES: dict[str, tuple[tuple[str, ...], Kind]] = {
    "outdoor_temperature": (("Outdoor", "Temperature"), Kind.FLOAT),
    "primary_supply_temperature": (("PrimarySide", "SupplyTemperature"), Kind.FLOAT),
    "primary_return_temperature": (("PrimarySide", "ReturnTemperature"), Kind.FLOAT),
    "primary_supply_pressure": (("PrimarySide", "SupplyPressure"), Kind.FLOAT),
    "primary_return_pressure": (("PrimarySide", "ReturnPressure"), Kind.FLOAT),
    "primary_flow": (("PrimarySide", "Flow"), Kind.FLOAT),
    "valve_position": (("PrimarySide", "ValvePosition"), Kind.FLOAT),
    "primary_supply_lost": (("PrimarySide", "SupplyLost"), Kind.BOOLEAN),
    "valve_mode": (("PrimarySide", "ValveMode"), Kind.UINT16),
    "manual_valve_position": (("PrimarySide", "ManualValvePosition"), Kind.FLOAT),
    "pi_gain": (("PrimarySide", "PiGain"), Kind.FLOAT),
    "pi_integral_time": (("PrimarySide", "PiIntegralTime"), Kind.FLOAT),
    "valve_stroke_time": (("PrimarySide", "ValveStrokeTime"), Kind.FLOAT),
    "secondary_supply_temperature": (("SecondarySide", "SupplyTemperature"), Kind.FLOAT),
    "secondary_return_temperature": (("SecondarySide", "ReturnTemperature"), Kind.FLOAT),
    "secondary_supply_pressure": (("SecondarySide", "SupplyPressure"), Kind.FLOAT),
    "secondary_return_pressure": (("SecondarySide", "ReturnPressure"), Kind.FLOAT),
    "secondary_flow": (("SecondarySide", "Flow"), Kind.FLOAT),
    "supply_setpoint": (("SecondarySide", "SupplySetpoint"), Kind.FLOAT),
    "pump_frequency": (("Pumps", "Circulation", "Frequency"), Kind.FLOAT),
    "pump_frequency_setpoint": (("Pumps", "Circulation", "FrequencySetpoint"), Kind.FLOAT),
    "pump_run_command": (("Pumps", "Circulation", "RunCommand"), Kind.BOOLEAN),
    "pump_running": (("Pumps", "Circulation", "Running"), Kind.BOOLEAN),
    "pump_fault": (("Pumps", "Circulation", "Fault"), Kind.BOOLEAN),
    "makeup_flow": (("Pumps", "MakeUp", "Flow"), Kind.FLOAT),
    "makeup_total": (("Pumps", "MakeUp", "Total"), Kind.DOUBLE),
    "makeup_auto": (("Pumps", "MakeUp", "Auto"), Kind.BOOLEAN),
    "makeup_pump_running": (("Pumps", "MakeUp", "Running"), Kind.BOOLEAN),
    "makeup_pump_fault": (("Pumps", "MakeUp", "Fault"), Kind.BOOLEAN),
    "tank_level": (("Tank", "Level"), Kind.FLOAT),
    "pit_flooded": (("Safety", "PitFlooded"), Kind.BOOLEAN),
    "overtemp_trip": (("Safety", "OvertempTrip"), Kind.BOOLEAN),
    "overpressure_trip": (("Safety", "OverpressureTrip"), Kind.BOOLEAN),
    "alarm_reset": (("Safety", "AlarmReset"), Kind.BOOLEAN),
}
_METER_PLACES: dict[str, tuple[str, Kind]] = {
    "flow": ("Flow", Kind.FLOAT),
    "power": ("Power", Kind.FLOAT),
    "supply_temperature": ("SupplyTemperature", Kind.FLOAT),
    "return_temperature": ("ReturnTemperature", Kind.FLOAT),
    "energy_gj": ("Energy", Kind.DOUBLE),
    "volume": ("Volume", Kind.DOUBLE),
    "energy_kwh": ("EnergyKWh", Kind.UINT32),
    "status": ("Status", Kind.UINT16),
}
# Modbus-only rows: the packed status word (OPC UA has the flags as Booleans), spare registers,
# and the BCD copy of the energy counter.
_MODBUS_ONLY = frozenset({"status_word", "unused_18", "unused_19", "energy_kwh_bcd"})


@dataclass(frozen=True, slots=True)
class OpcPoint:
    """One variable node: where it sits, what it declares, where its value comes from."""

    path: tuple[str, ...]  # browse names below ``Station``
    kind: Kind
    row: Register  # the register row with the same value, limits and write command

    @property
    def node_id(self) -> str:
        return ".".join(self.path)

    @property
    def unit(self) -> Unit | None:
        return UNITS.get(self.row.unit)

    @property
    def writable(self) -> bool:
        return self.row.writable and self.row.command is not None

    def value(self, snapshot: Snapshot) -> Value | None:
        """The node's value now, in its declared type; ``None`` when the instrument has no reading."""
        raw = self.row.source(snapshot)
        if self.kind is Kind.BOOLEAN:
            return bool(raw)
        if isinstance(raw, float) and not math.isfinite(raw):
            return None  # a room sensor that never reported: no value, not a number
        if self.kind in (Kind.UINT16, Kind.UINT32):
            high = 0xFFFF if self.kind is Kind.UINT16 else 0xFFFFFFFF
            return min(max(int(round(float(raw))), 0), high)
        return float(raw)

    def bounds(self, plc_bounds: Callable[[int, str], tuple[float, float]]) -> tuple[float, float] | None:
        """The (low, high) a write must respect; ``None`` for commands without a range (booleans)."""
        limits = self.row.limits
        if not self.writable or limits is None:
            return None
        if limits.low is None or limits.high is None:  # PLC_LIMITS: the PLC's own range
            assert self.row.command is not None
            return plc_bounds(self.row.circuit, self.row.command)
        return limits.low, limits.high


def _place(row: Register) -> tuple[tuple[str, ...], Kind] | None:
    if row.device is Device.METER:
        if row.name in _MODBUS_ONLY:
            return None
        name, kind = _METER_PLACES[row.name]
        return ("HeatMeter", name), kind
    name = row.name.split("_", 1)[1] if row.circuit else row.name
    if name in _MODBUS_ONLY:
        return None
    if name.startswith("room_"):
        index, what = name[len("room_"):].split("_", 1)
        kind = Kind.FLOAT if what == "temperature" else Kind.UINT32
        return ("Rooms", f"Room{int(index):02d}", what.capitalize()), kind
    path, kind = _PLACES[name]
    return ((f"Circuit{row.circuit}", *path) if row.circuit else path), kind


def address_space(register_map: RegisterMap) -> tuple[OpcPoint, ...]:
    """Every variable of a station with ``register_map``'s layout, in map order."""
    points = []
    for row in register_map.table:
        place = _place(row)
        if place is not None:
            points.append(OpcPoint(place[0], place[1], row))
    return tuple(points)
