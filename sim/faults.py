"""Fault injection for the station physics (reachable as ``station.faults``).

Each method is one thing that goes wrong in a real station, and every method's keyword
arguments are JSON-friendly, because the simulator runner exposes them as
``{"cmd": "fault", "kind": "<method>", "args": {...}}``. ``active()`` lists what is injected,
keyed by the same names ``clear(name)`` accepts.

Sensors are named ``outdoor``, ``primary_supply``, ``primary_return``, ``secondary_supply``,
``secondary_return`` (the PLC's PT1000 inputs), ``meter_supply``/``meter_return`` (the heat
meter's own probe pair) and by room name (wireless sensors). A wired sensor's fault shows at
once; a wireless one's shows with its next radio report.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

OPEN_CIRCUIT_C = 850.0
"""What a PLC analogue input shows for an open PT1000 (over-range)."""
SHORT_CIRCUIT_C = -50.0
"""What it shows for a shorted PT1000 (under-range)."""

WIRED_SENSORS: tuple[str, ...] = (
    "outdoor",
    "primary_supply",
    "primary_return",
    "secondary_supply",
    "secondary_return",
    "meter_supply",
    "meter_return",
)

SensorFaultKind = Literal["open", "short", "frozen", "silent"]
InterlockKind = Literal["overtemp", "overpressure"]

FAULT_KINDS: tuple[str, ...] = ("sensor_open", "sensor_short", "freeze", "sensor_silent", "pump_trip",
                                "makeup_pump_fault", "leak", "primary_loss", "trip_interlock", "pit_flooding", "clear")
"""The faults ``heatgw sim fault KIND`` injects: the methods of ``Faults`` that break something (or
clear it); the others answer questions."""

_FLAG_FAULTS = ("pump_trip", "makeup_pump_fault", "primary_loss", "overtemp", "overpressure", "pit_flooding")
_MAX_LEAK_M3H = 100.0


@dataclass(frozen=True, slots=True)
class SensorFault:
    """An injected sensor fault; ``value`` is the reading of a frozen sensor."""

    kind: SensorFaultKind
    value: float | None = None

    def describe(self) -> dict[str, object]:
        if self.kind == "frozen":
            return {"sensor": self.kind, "value": self.value}
        return {"sensor": self.kind}


class Faults:
    """What is currently broken, and how that changes what the physics and the sensors do."""

    def __init__(self, room_sensors: Iterable[str], current_value: Callable[[str], float]) -> None:
        """``current_value(sensor)`` returns the sensor's healthy reading now (used by ``freeze``)."""
        self._rooms = frozenset(room_sensors)
        self._sensor_names = frozenset(WIRED_SENSORS) | self._rooms
        self._current_value = current_value
        self._sensors: dict[str, SensorFault] = {}
        self._flags: set[str] = set()
        self._leak_m3h: float | None = None

    # --- sensors ---

    def sensor_open(self, sensor: str) -> None:
        """Open circuit: the reading goes to 850.0 degC."""
        self._sensors[self._sensor(sensor)] = SensorFault("open")

    def sensor_short(self, sensor: str) -> None:
        """Short circuit: the reading goes to -50.0 degC."""
        self._sensors[self._sensor(sensor)] = SensorFault("short")

    def freeze(self, sensor: str, value: float | None = None) -> None:
        """The reading sticks at ``value``, or at its current healthy value if none is given."""
        name = self._sensor(sensor)
        frozen = self._current_value(name) if value is None else float(value)
        if not math.isfinite(frozen):
            raise ValueError(f"frozen value must be finite, got {value}")
        self._sensors[name] = SensorFault("frozen", frozen)

    def sensor_silent(self, sensor: str) -> None:
        """A wireless room sensor stops reporting (flat battery, radio lost): its age grows."""
        if sensor not in self._rooms:
            raise ValueError(f"only wireless room sensors can go silent, not {sensor!r}")
        self._sensors[sensor] = SensorFault("silent")

    # --- plant ---

    def pump_trip(self) -> None:
        """The circulation pump's drive trips: fault flag on, no flow, until cleared."""
        self._flags.add("pump_trip")

    def makeup_pump_fault(self) -> None:
        """The make-up pump fails: the static pressure is no longer held."""
        self._flags.add("makeup_pump_fault")

    def leak(self, m3h: float) -> None:
        """Secondary water escapes at ``m3h`` (replaces any earlier leak; 0 stops it)."""
        rate = float(m3h)
        if not 0.0 <= rate <= _MAX_LEAK_M3H:
            raise ValueError(f"leak must be within 0..{_MAX_LEAK_M3H:g} m3/h, got {m3h}")
        self._leak_m3h = rate

    def primary_loss(self) -> None:
        """The network stops delivering: no differential pressure, the supply pipe cools."""
        self._flags.add("primary_loss")

    def trip_interlock(self, kind: InterlockKind) -> None:
        """Hold the test input of the 'overtemp' or 'overpressure' interlock (as its periodic test does)."""
        if kind not in ("overtemp", "overpressure"):
            raise ValueError(f"interlock kind must be 'overtemp' or 'overpressure', got {kind!r}")
        self._flags.add(kind)

    def pit_flooding(self) -> None:
        """Water in the station pit: the flooding switch closes."""
        self._flags.add("pit_flooding")

    # --- clearing and listing ---

    def clear(self, name: str | None = None) -> None:
        """Remove the fault called ``name`` (a key of ``active()``), or every fault if ``None``."""
        if name is None:
            self.clear_all()
        elif name in self._sensor_names:
            self._sensors.pop(name, None)
        elif name == "leak":
            self._leak_m3h = None
        elif name in _FLAG_FAULTS:
            self._flags.discard(name)
        else:
            raise ValueError(f"unknown fault {name!r}")

    def clear_all(self) -> None:
        """Remove every injected fault."""
        self._sensors.clear()
        self._flags.clear()
        self._leak_m3h = None

    def active(self) -> dict[str, object]:
        """Injected faults, e.g. ``{"leak": {"m3h": 2.0}, "outdoor": {"sensor": "open"}, "pump_trip": True}``."""
        result: dict[str, object] = {name: True for name in sorted(self._flags)}
        if self._leak_m3h is not None:
            result["leak"] = {"m3h": self._leak_m3h}
        for name, fault in self._sensors.items():
            result[name] = fault.describe()
        return result

    # --- what the physics asks ---

    def reading(self, sensor: str, healthy: float) -> float:
        """What ``sensor`` shows when its healthy reading would be ``healthy``."""
        fault = self._sensors.get(sensor)
        if fault is None or fault.kind == "silent":
            return healthy
        if fault.kind == "open":
            return OPEN_CIRCUIT_C
        if fault.kind == "short":
            return SHORT_CIRCUIT_C
        assert fault.value is not None
        return fault.value

    def overridden(self, sensor: str) -> bool:
        """True if ``sensor`` currently shows something other than its healthy value."""
        fault = self._sensors.get(sensor)
        return fault is not None and fault.kind != "silent"

    def is_silent(self, sensor: str) -> bool:
        fault = self._sensors.get(sensor)
        return fault is not None and fault.kind == "silent"

    @property
    def pump_tripped(self) -> bool:
        return "pump_trip" in self._flags

    @property
    def makeup_pump_failed(self) -> bool:
        return "makeup_pump_fault" in self._flags

    @property
    def leak_m3h(self) -> float:
        return self._leak_m3h or 0.0

    @property
    def primary_lost(self) -> bool:
        return "primary_loss" in self._flags

    @property
    def forced_overtemp(self) -> bool:
        return "overtemp" in self._flags

    @property
    def forced_overpressure(self) -> bool:
        return "overpressure" in self._flags

    @property
    def pit_flooded(self) -> bool:
        return "pit_flooding" in self._flags

    def _sensor(self, sensor: str) -> str:
        if sensor not in self._sensor_names:
            known = ", ".join(sorted(self._sensor_names))
            raise ValueError(f"unknown sensor {sensor!r}; known: {known}")
        return sensor


def describe_fault_kinds() -> list[str]:
    """One line per fault kind: its name, its arguments as the CLI takes them, and what it does."""
    lines = []
    for kind in FAULT_KINDS:
        method = getattr(Faults, kind)
        arguments = []
        for name, parameter in list(inspect.signature(method).parameters.items())[1:]:
            option = f"--{name.replace('_', '-')} {name.upper()}"
            arguments.append(option if parameter.default is inspect.Parameter.empty else f"[{option}]")
        summary = (inspect.getdoc(method) or "").splitlines()[0].replace("``", "")
        lines.append(" ".join([kind, *arguments]) + f": {summary}")
    return lines
