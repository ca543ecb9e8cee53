"""The base every configuration model derives from, kept apart so sections can live with their code."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Backoff(Strict):
    """Retry pacing: exponential from ``initial_s``, capped at ``max_s``, spread by ±``jitter`` so a
    fleet does not retry in lock-step. Variants redeclare only the defaults and bounds they need."""

    initial_s: float = Field(default=1.0, gt=0, le=3600)
    max_s: float = Field(default=60.0, gt=0, le=86_400)
    jitter: float = Field(default=0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Backoff:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must be at least initial_s")
        return self


class MetricsSettings(Strict):
    """An opt-in Prometheus endpoint (``/metrics``). Loopback by default: exposing it on the station
    network is a decision to write down, with the firewall rule that goes with it."""

    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65_535)
