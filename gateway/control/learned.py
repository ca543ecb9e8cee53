"""What the controller has learned (trims, heat-up factors, cooling rates, daily means), as typed values.

Pure data: the controller's core builds and restores these without touching a file; ``memory``
saves and loads them in the state directory.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DAILY_MEANS_MAX_AGE_S = 86_400.0
"""Older than a day, the saved daily means are no longer "the last days" and are not restored."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class CircuitMemory(_Strict):
    """One circuit's learned state."""

    curve: str = Field(description="identity of the curve the trims were learned against")
    day_trim_k: float
    night_trim_k: float
    heatup_factors: dict[str, float] = Field(default_factory=dict)
    heatup_rates: dict[str, list[float]] = Field(
        default_factory=dict, description="each room's latest achieved boost rates, K/h (they bound its planned rate)")
    cooling_per_h: dict[str, float] = Field(default_factory=dict,
                                            description="each room's learned cooling with the supply cut, K/h per K")
    boost_hold_k: float | None = Field(default=None, description="the learned hold after a boost, room K")


class DailyMean(_Strict):
    day: dt.date
    mean_c: float


class ControllerMemory(_Strict):
    """The whole controller's learned state, as saved."""

    format: Literal[1] = 1
    saved_at: float = Field(description="POSIX time of the save")
    circuits: dict[str, CircuitMemory] = Field(default_factory=dict)
    daily_means: list[DailyMean] = Field(default_factory=list)
