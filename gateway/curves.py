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
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import Field, ValidationInfo, field_validator, model_validator

from gateway.config_base import Strict


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

    def supply_at(self, outdoor_c: ArrayLike) -> NDArray[np.float64]:
        """Supply setpoint for the given outdoor temperature(s), clamped to the circuit limits."""
        return np.clip(self._unclamped(np.asarray(outdoor_c, dtype=float)), self.min_supply_c, self.max_supply_c)

    def supply_for_room(self, outdoor_c: ArrayLike, room_c: float) -> NDArray[np.float64]:
        """Supply for a room temperature other than the one the curve serves (``room_c``).

        Heat demand depends on room minus outdoor temperature, and the radiators' excess
        temperature is counted from the room: so serving a room ``d`` K warmer is the curve read
        ``d`` K colder outdoors, plus ``d``. This is the parallel displacement Danfoss and Siemens
        apply for a room setpoint change; for the physical form it is exact, for a table it is
        the same shift applied to the filed points. The result is clamped to the circuit limits.
        """
        shift = float(room_c) - self.room_c
        raw = self._unclamped(np.asarray(outdoor_c, dtype=float) - shift) + shift
        return np.clip(raw, self.min_supply_c, self.max_supply_c)

    def return_at(self, outdoor_c: ArrayLike) -> NDArray[np.float64] | None:
        """Design return temperature of the physical form (None for a table, which files no return)."""
        if self.physical is None:
            return None
        outdoor = np.asarray(outdoor_c, dtype=float)
        return physical_return(self.physical, self.room_c, outdoor)

    def _unclamped(self, outdoor: NDArray[np.float64]) -> NDArray[np.float64]:
        if self.points is not None:
            xs = np.array([p.outdoor_c for p in self.points])
            ys = np.array([p.supply_c for p in self.points])
            return np.interp(outdoor, xs, ys)
        assert self.physical is not None
        return physical_supply(self.physical, self.room_c, outdoor)

    @property
    def identity(self) -> str:
        """How the curve is named in logs and the published state: ``name v3 (2026-10-20)``."""
        return f"{self.name} v{self.version} ({self.date.isoformat()})"


def physical_supply(design: PhysicalCurve, room_c: float, outdoor_c: NDArray[np.float64]) -> NDArray[np.float64]:
    """Quality-regulation supply temperature; no heat demand (q <= 0) gives the room temperature."""
    q = np.maximum((room_c - outdoor_c) / (design.design_room_c - design.design_outdoor_c), 0.0)
    mean_excess = 0.5 * (design.design_supply_c + design.design_return_c) - design.design_room_c
    half_spread = 0.5 * (design.design_supply_c - design.design_return_c)
    return room_c + mean_excess * q ** (1.0 / design.exponent) + half_spread * q


def physical_return(design: PhysicalCurve, room_c: float, outdoor_c: NDArray[np.float64]) -> NDArray[np.float64]:
    """The matching return temperature: the same mean excess, minus half the (flow-constant) spread."""
    q = np.maximum((room_c - outdoor_c) / (design.design_room_c - design.design_outdoor_c), 0.0)
    mean_excess = 0.5 * (design.design_supply_c + design.design_return_c) - design.design_room_c
    half_spread = 0.5 * (design.design_supply_c - design.design_return_c)
    return room_c + mean_excess * q ** (1.0 / design.exponent) - half_spread * q
