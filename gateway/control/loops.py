"""The small dynamic parts of the controller: a PI loop with anti-windup, a lag, a ramp, a line.

Each is pure arithmetic on explicit state (no clock, no I/O), so each is tested on its own at the
edges that bite in the field: a loop wound up against a clamp, a filter fed a jump, a ramp asked
to go backwards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.control.settings import LinePoint
from gateway.curves import interpolate


@dataclass
class PiLoop:
    """Positional PI with a clamped output and conditional integration.

    Output = ``gain * error + integral``, clamped to [low, high]. The integral only moves when
    doing so could change the output: not further up while the output is held at ``high`` (or
    something downstream says "up is blocked"), not further down at ``low`` likewise. That is the
    anti-windup: a loop that was blocked for a day must act the moment it is released, not first
    unwind a day of accumulated error. The integral itself is also kept inside [low, high].
    """

    gain: float
    integral_s: float
    low: float
    high: float
    integral: float = 0.0

    def update(self, error: float, dt_s: float, *, up_blocked: bool = False, down_blocked: bool = False) -> float:
        """Advance by ``dt_s`` with ``error`` (positive pushes the output up); return the output."""
        unclamped = self.gain * error + self.integral
        at_high = unclamped >= self.high or up_blocked
        at_low = unclamped <= self.low or down_blocked
        if dt_s > 0 and not (error > 0 and at_high) and not (error < 0 and at_low):
            self.integral += self.gain * error * dt_s / self.integral_s
        self.integral = min(self.high, max(self.low, self.integral))
        return self.output(error)

    def output(self, error: float) -> float:
        """The output for ``error`` with the integral as it stands (no integration)."""
        return min(self.high, max(self.low, self.gain * error + self.integral))

    def rebound(self, low: float, high: float) -> None:
        """New output bounds (after a reload); the integral is brought inside them."""
        self.low, self.high = low, high
        self.integral = min(high, max(low, self.integral))


@dataclass
class FirstOrderLag:
    """A first-order lag (exact discretisation, so any step length is stable).

    Used to damp the outdoor temperature with the building's time constant: a building does not
    feel a cold hour, it feels a cold day. The first value initialises the output, so a restart
    does not spend a time constant climbing from zero.
    """

    time_constant_s: float
    value: float | None = None

    def update(self, x: float, dt_s: float) -> float:
        if self.value is None or not math.isfinite(self.value):
            self.value = x
        elif dt_s > 0:
            self.value += (x - self.value) * (1.0 - math.exp(-dt_s / self.time_constant_s))
        return self.value


def ramp(previous: float, target: float, dt_s: float, up_k_per_h: float, down_k_per_h: float) -> tuple[float, bool]:
    """Move from ``previous`` toward ``target`` no faster than the ramps allow; (value, limited)."""
    rise = up_k_per_h * dt_s / 3600.0
    fall = down_k_per_h * dt_s / 3600.0
    value = min(previous + rise, max(previous - fall, target))
    return value, abs(value - target) > 1e-9


def line_value(points: Sequence[LinePoint], outdoor_c: float) -> float:
    """A limit line against outdoor temperature: piecewise linear, clamped at its ends."""
    return interpolate(float(outdoor_c), [p.outdoor_c for p in points], [p.value for p in points])
