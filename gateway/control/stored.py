"""Heat the emitters still hold: what a slab circuit's rooms get now that the trim did not learn.

A floor slab passes a supply change on to the rooms over its time constant (``emitter_lag_h``,
10 h and more), so what warms the rooms now is the supply of the last hours, not the supply
asked now. The room trim's integral is meant to learn what the filed curve gets wrong for the
building in the steady state; everything else the controller adds to the supply (the trim's
proportional part acting on where the room is heading, a boost, the min clamp, a falling ramp)
is a transient that the slab keeps delivering for hours after it was asked. A room above its
aim on that heat is not a curve that gives too much.

Measured on the mixed station's floor circuit (``bench/season.py``, seed 32): at night the
proportional part, acting on the room as it will be when the slab passes a change on
(``_ahead``), raised the supply 2-6 K above what the integral alone asks; the rooms, warm from
that and from the afternoon, read 0.1-0.3 K above their aim, and the day trim (the circuit has no
setback, so it integrates all night) learned that surplus away: from about -3 K to -4.4 K before
the cold morning of day 8, which then found the slab under-charged (17.98 C at 06:00).

So the integral learns downward only from the part of a surplus that this stored heat does not
explain. The stored heat is the supply above the integral's own (``residue``) passed through the
slab's first-order lag, converted to room kelvin with the curve's own slope (supply K per room K:
the curve's steady-state answer to "how much warmer does this supply make the room"). Only
downward: a room below its aim always teaches the trim to give more (a cold room is a breach, a
warm one costs a little heat). Radiators (no lag) pass the supply on at once: nothing is stored,
and the trim learns as it always did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class StoredHeat:
    """The slab's surplus over the supply the trim's integral asks, as a first-order lag (K of supply)."""

    supply_k: float = 0.0

    def update(self, residue_k: float, dt_s: float, lag_h: float) -> float:
        """Feed this cycle's ``residue_k`` (setpoint minus the integral's own supply); without a
        lag nothing is stored. Exact discretisation, so any step length is stable."""
        if lag_h <= 0.0:
            self.supply_k = 0.0
        elif dt_s > 0.0:
            self.supply_k += (residue_k - self.supply_k) * (1.0 - math.exp(-dt_s / (lag_h * 3600.0)))
        return self.supply_k

    def room_k(self, supply_per_room_k: float) -> float:
        """The stored surplus as room kelvin (0 when the curve cannot say: clamped flat)."""
        if supply_per_room_k <= 0.0:
            return 0.0
        return self.supply_k / supply_per_room_k


def learnable_error(error_k: float, stored_room_k: float) -> float:
    """The room error the trim's integral may learn: a surplus (negative error, the room above
    its aim) less what the stored heat explains; a deficit always in full."""
    if error_k >= 0.0 or stored_room_k <= 0.0:
        return error_k
    return min(0.0, error_k + stored_room_k)
