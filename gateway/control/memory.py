"""What the controller has learned, kept in the state directory across restarts.

A room trim's integral takes hours to learn, a room's heat-up factor a week of mornings, and the
cold-weather early-start rule needs the last few days' mean outdoor temperatures. A power cut, an
update or a crash must not throw that away: the trim would start from the bare curve (rooms off
target for hours), the optimum start from its careful default (boosts hours too early), and an
early start would wait for three new days.

The file is JSON, written atomically (a crash mid-write leaves the previous file), read with the
same strictness as a configuration file: a damaged or foreign file is reported and ignored, the
controller starts fresh, and the daemon runs on. What is restored is bounded by the settings in
force now, and dropped where it no longer applies:

* a circuit or room no longer configured: dropped;
* the trims of a circuit whose curve changed (another name or version): dropped, because the
  trim is what the *old* curve got wrong for the building; the heat-up factors and cooling
  rates are the building's own and are kept;
* the daily means, if the file is older than ``DAILY_MEANS_MAX_AGE_S``: the rule counts the last
  days, and a gap of days would make old weather look recent.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.logs import kv

log = logging.getLogger(__name__)

FILE_NAME = "controller-memory.json"
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


class MemoryFile:
    """Loads and saves ``ControllerMemory`` at ``path``, never raising on a bad file or a full disk."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> ControllerMemory | None:
        """The saved memory, or None (no file yet, or one that cannot be trusted: logged)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            log.info("no controller memory yet: starting from the settings", extra=kv(file=self.path))
            return None
        except OSError as exc:
            log.error("controller memory unreadable: starting from the settings", extra=kv(file=self.path, error=exc))
            return None
        try:
            return ControllerMemory.model_validate(json.loads(text))
        except (ValueError, ValidationError) as exc:
            reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            log.error("controller memory refused: starting from the settings",
                      extra=kv(file=self.path, reason=reason))
            return None

    def save(self, memory: ControllerMemory) -> bool:
        """Write atomically (temporary file, fsync, rename); False if it failed (logged)."""
        temporary = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with temporary.open("w", encoding="utf-8") as handle:
                handle.write(memory.model_dump_json(indent=1))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            log.error("controller memory not saved", extra=kv(file=self.path, error=exc))
            return False
        return True
