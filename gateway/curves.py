"""Heating curves: secondary supply temperature as a function of outdoor temperature.

Each heating company files its curve table (供热曲线表) with the dispatch centre before the season,
so a curve file carries its identity (name, version, author, date) as well as its shape. Two shapes
are supported, because operators use both:

* a point table, piecewise linear and clamped at its ends (Danfoss ECL style);
* the physical form of quality regulation, derived from the radiator law Q ~ dT^m:
  ``q = (T_room - T_out) / (T_room_design - T_out_design)``,
  ``T_supply = T_room + (0.5 (Ts0 + Tr0) - T_room_design) q^(1/m) + 0.5 (Ts0 - Tr0) q``.

Both are then clamped to the circuit's min/max supply temperature. A curve whose supply rises with
outdoor temperature is rejected: it would heat most when heat is needed least.

Plain Python floats, one temperature at a time (a sequence is mapped value by value): the
controller asks for one value per cycle, and keeping numpy out of the running gateway saves its
20 MB of shared libraries.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from numbers import Real
from typing import overload

from pydantic import Field, ValidationInfo, field_validator, model_validator

from gateway.config_base import Strict

Temperatures = float | Iterable[float]


class CurvePoint(Strict):
    """One row of a curve table."""

    outdoor_c: float = Field(ge=-60, le=40)
    supply_c: float = Field(ge=0, le=130)


class PhysicalCurve(Strict):
    """Design conditions of a radiator or floor-heating circuit (GB 50736 design room is 18 C)."""

    design_room_c: float = Field(default=18.0, ge=10, le=26)
    design_outdoor_c: float = Field(ge=-45, le=5)
    design_supply_c: float = Field(gt=0, le=130)
    design_return_c: float = Field(gt=0, le=130)
    exponent: float = Field(default=1.3, ge=1.0, le=2.0, description="radiator exponent m = 1 + b")

    @model_validator(mode="after")
    def _physical(self) -> PhysicalCurve:
        if not self.design_supply_c > self.design_return_c > self.design_room_c:
            raise ValueError("design temperatures must satisfy supply > return > room")
        if self.design_outdoor_c >= self.design_room_c:
            raise ValueError("design outdoor temperature must be below the design room temperature")
        return self


class Curve(Strict):
    """A versioned heating curve as filed with the dispatch centre."""

    name: str = Field(min_length=1)
    version: int = Field(ge=1)
    author: str = Field(min_length=1)
    date: dt.date
    filed_with: str = ""
    circuit: str = "radiators"
    room_c: float = Field(default=18.0, ge=10, le=26, description="room temperature the curve serves")
    min_supply_c: float = Field(default=20.0, ge=0, le=130)
    max_supply_c: float = Field(default=90.0, ge=0, le=130)
    points: list[CurvePoint] | None = Field(default=None, min_length=2)
    physical: PhysicalCurve | None = None

    @field_validator("points")
    @classmethod
    def _table_is_a_curve(cls, points: list[CurvePoint] | None, info: ValidationInfo) -> list[CurvePoint] | None:
        if points is None:
            return None
        outdoor = [p.outdoor_c for p in points]
        supply = [p.supply_c for p in points]
        if any(b <= a for a, b in zip(outdoor, outdoor[1:], strict=False)):
            raise ValueError("points must be sorted by outdoor_c, strictly increasing")
        if any(b > a for a, b in zip(supply, supply[1:], strict=False)):
            raise ValueError("supply_c must not rise as outdoor_c rises")
        low, high = info.data.get("min_supply_c"), info.data.get("max_supply_c")
        for p in points:
            if low is not None and high is not None and not low <= p.supply_c <= high:
                raise ValueError(f"point at {p.outdoor_c} C outdoor has supply {p.supply_c} C outside [{low}, {high}]")
        return points

    @model_validator(mode="after")
    def _one_shape(self) -> Curve:
        if (self.points is None) == (self.physical is None):
            raise ValueError("give exactly one of points (a table) or physical (design conditions)")
        if self.max_supply_c <= self.min_supply_c:
            raise ValueError("max_supply_c must be greater than min_supply_c")
        return self

    @overload
    def supply_at(self, outdoor_c: float) -> float: ...
    @overload
    def supply_at(self, outdoor_c: Iterable[float]) -> list[float]: ...
    def supply_at(self, outdoor_c: Temperatures) -> float | list[float]:
        """Supply setpoint for the given outdoor temperature(s), clamped to the circuit limits."""
        return _each(outdoor_c, lambda outdoor: self._clamped(self._unclamped(outdoor)))

    @overload
    def supply_for_room(self, outdoor_c: float, room_c: float) -> float: ...
    @overload
    def supply_for_room(self, outdoor_c: Iterable[float], room_c: float) -> list[float]: ...
    def supply_for_room(self, outdoor_c: Temperatures, room_c: float) -> float | list[float]:
        """Supply for a room temperature other than the one the curve serves (``room_c``).

        Heat demand depends on room minus outdoor temperature, and the radiators' excess
        temperature is counted from the room: so serving a room ``d`` K warmer is the curve read
        ``d`` K colder outdoors, plus ``d``. This is the parallel displacement Danfoss and Siemens
        apply for a room setpoint change; for the physical form it is exact, for a table it is
        the same shift applied to the filed points. The result is clamped to the circuit limits.
        """
        shift = float(room_c) - self.room_c
        return _each(outdoor_c, lambda outdoor: self._clamped(self._unclamped(outdoor - shift) + shift))

    @overload
    def return_at(self, outdoor_c: float) -> float | None: ...
    @overload
    def return_at(self, outdoor_c: Iterable[float]) -> list[float] | None: ...
    def return_at(self, outdoor_c: Temperatures) -> float | list[float] | None:
        """Design return temperature of the physical form (None for a table, which files no return)."""
        physical = self.physical
        if physical is None:
            return None
        return _each(outdoor_c, lambda outdoor: physical_return(physical, self.room_c, outdoor))

    def _unclamped(self, outdoor: float) -> float:
        if self.points is not None:
            return interpolate(outdoor, [p.outdoor_c for p in self.points], [p.supply_c for p in self.points])
        assert self.physical is not None
        return physical_supply(self.physical, self.room_c, outdoor)

    def _clamped(self, supply: float) -> float:
        """Within the circuit limits; NaN stays NaN (as numpy's ``clip``), for the caller to refuse."""
        return self.min_supply_c if supply < self.min_supply_c else self.max_supply_c if supply > self.max_supply_c \
            else supply

    @property
    def identity(self) -> str:
        """How the curve is named in logs and the published state: ``name v3 (2026-10-20)``."""
        return f"{self.name} v{self.version} ({self.date.isoformat()})"


def _each(outdoor_c: Temperatures, at: Callable[[float], float]) -> float | list[float]:
    """``at`` of one temperature, or of each temperature of a sequence (a list back)."""
    if isinstance(outdoor_c, Real):
        return at(float(outdoor_c))
    return [at(float(outdoor)) for outdoor in outdoor_c]


def interpolate(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """Piecewise linear through the points ``(xs, ys)`` (``xs`` increasing), clamped at the ends;
    the same arithmetic as numpy's ``interp``, so a curve reads exactly as it did with numpy."""
    if x != x:  # NaN in, NaN out
        return x
    if x >= xs[-1]:
        return ys[-1]
    if x <= xs[0]:
        return ys[0]
    j = bisect_right(xs, x) - 1
    if xs[j] == x:
        return ys[j]
    slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j])
    return slope * (x - xs[j]) + ys[j]


def _demand(design: PhysicalCurve, room_c: float, outdoor_c: float) -> float:
    """Relative heat demand q, 0 when the outdoors is as warm as the room (NaN stays NaN)."""
    q = (room_c - outdoor_c) / (design.design_room_c - design.design_outdoor_c)
    return 0.0 if q < 0.0 else q


def physical_supply(design: PhysicalCurve, room_c: float, outdoor_c: float) -> float:
    """Quality-regulation supply temperature; no heat demand (q <= 0) gives the room temperature."""
    q = _demand(design, room_c, outdoor_c)
    mean_excess = 0.5 * (design.design_supply_c + design.design_return_c) - design.design_room_c
    half_spread = 0.5 * (design.design_supply_c - design.design_return_c)
    return room_c + mean_excess * q ** (1.0 / design.exponent) + half_spread * q


def physical_return(design: PhysicalCurve, room_c: float, outdoor_c: float) -> float:
    """The matching return temperature: the same mean excess, minus half the (flow-constant) spread."""
    q = _demand(design, room_c, outdoor_c)
    mean_excess = 0.5 * (design.design_supply_c + design.design_return_c) - design.design_room_c
    half_spread = 0.5 * (design.design_supply_c - design.design_return_c)
    return room_c + mean_excess * q ** (1.0 / design.exponent) - half_spread * q
