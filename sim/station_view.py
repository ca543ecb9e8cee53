"""What a protocol server sees of the station: snapshots to encode, PLC loops to write to.

Both protocol servers (``sim.modbus_server``, ``sim.opcua_server``) expose the same PLC on the
same physics; this module is the one place that turns the station into a ``Snapshot`` (circuit 0
plus circuits 1..) and carries a validated write out on the right circuit's PLC, so the two
servers cannot drift apart on what a value or a write means.
"""

from __future__ import annotations

from typing import Protocol

from sim.plc import Plc, ValveMode
from sim.readings import Measurements
from sim.registers import Layout, PlcCommand, PlcSettings, Snapshot


class StationLike(Protocol):
    """The part of ``sim.station.Station`` a protocol server needs."""

    @property
    def plc(self) -> Plc: ...

    def measurements(self) -> Measurements: ...


class CircuitsLike(StationLike, Protocol):
    """The part of ``sim.plant.Plant`` a server with more than one circuit needs besides."""

    @property
    def plcs(self) -> tuple[Plc, ...]: ...

    def circuit_measurements(self) -> tuple[Measurements, ...]:
        """Circuits 1.. (circuit 0's are ``measurements()``)."""
        ...


def plc_settings(plc: Plc) -> PlcSettings:
    """Read what the PLC shows of its setpoints, commands and tuning."""
    return PlcSettings(
        supply_setpoint_c=plc.supply_setpoint_c,
        pump_frequency_setpoint_hz=plc.pump_frequency_setpoint_hz,
        valve_mode=int(plc.valve_mode),
        manual_valve_pct=plc.manual_valve_pct,
        pi_gain_pct_per_k=plc.pi_gain_pct_per_k,
        pi_integral_s=plc.pi_integral_s,
        valve_stroke_s=plc.valve_stroke_s,
        pump_run_command=plc.pump_run_command,
        makeup_auto=plc.makeup_auto,
    )


def apply_command(plc: Plc, command: PlcCommand) -> None:
    """Carry out one validated write on the station PLC."""
    if command.setting == "reset_alarms":
        plc.reset_alarms()
    elif command.setting == "valve_mode":
        plc.valve_mode = ValveMode(int(command.value))
    else:
        setattr(plc, command.setting, command.value)


class StationView:
    """One station as laid out by ``layout``: its PLC loops and its snapshots."""

    def __init__(self, station: StationLike, layout: Layout) -> None:
        self.station = station
        self.layout = layout

    def plc(self, circuit: int) -> Plc:
        """The PLC loop of one circuit (circuit 0 is ``station.plc``)."""
        if circuit == 0:
            return self.station.plc
        station: CircuitsLike = self.station  # type: ignore[assignment]  # checked by the layout
        return station.plcs[circuit]

    def circuit_measurements(self) -> tuple[Measurements, ...]:
        """Circuits 1..'s instruments; none on a one-circuit station."""
        if self.layout.circuits == 1:
            return ()
        station: CircuitsLike = self.station  # type: ignore[assignment]
        return station.circuit_measurements()

    def snapshot(self, measurements: Measurements, circuits: tuple[Measurements, ...]) -> Snapshot:
        """Everything a server encodes: circuit 0's ``measurements``, circuits 1.. and every PLC's settings."""
        others = tuple(Snapshot(m, plc_settings(self.plc(c))) for c, m in enumerate(circuits, start=1))
        return Snapshot(measurements, plc_settings(self.station.plc), others)

    def bounds(self, circuit: int, setting: str) -> tuple[float, float]:
        """The (low, high) that circuit's PLC accepts for ``setting``."""
        return self.plc(circuit).limits.bounds(setting)
