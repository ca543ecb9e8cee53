"""The configuration every protocol's devices and tags share; each driver's models extend these.

What a tag *means* (its group, unit, plausible range, write limits) is the same whether it is a
Modbus register or an OPC UA node, so it is declared and checked once here; where the value is
and how it is decoded is the driver's business (``drivers/<protocol>/config.py``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from decimal import Decimal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from gateway.config_base import SHARED, Backoff, Name, Strict, StrictTagged, plain_fields
from gateway.yaml_source import Path_

MAX_DECIMALS = 9


class PollGroup(Strict):
    """Tags polled together at one interval (e.g. fast process values, slow meter totals)."""

    interval_s: float = Field(gt=0, le=86_400)


class WriteLimits(Strict):
    """What the gateway may write to a tag. Nothing outside these bounds ever reaches the PLC."""

    min: float
    max: float
    max_step: float | None = Field(default=None, gt=0, description="largest change per write")
    min_interval_s: float = Field(default=0.0, ge=0, description="least time between two writes")

    @model_validator(mode="after")
    def _ordered(self) -> WriteLimits:
        if self.max <= self.min:
            raise ValueError("max must be greater than min")
        if not math.isfinite(self.max - self.min):
            raise ValueError("max - min must be a finite number: give the limits the process really has")
        return self


class TagBase(Strict, ABC):
    """What a tag means, whatever the protocol; a driver's tag model adds where it is and how it
    is decoded, and says how fine its values are (``resolution``, ``telemetry_digits``)."""

    unit: str = ""
    description: str = ""
    group: Name = "default"
    deadband: float = Field(default=0.0, ge=0)
    range: tuple[float, float] | None = Field(default=None, description="plausible physical range")
    writable: WriteLimits | None = None

    @abstractmethod
    def resolution(self) -> float:
        """The smallest step the device holds, in engineering units (> 0): the controller rounds
        what it writes to it, and a read-back within half of it is the value written."""

    @abstractmethod
    def telemetry_digits(self) -> int:
        """How published values are rounded: ``n >= 0`` decimal places, or ``-n`` significant
        digits for floating-point values, so no digit the device does not have crosses the link."""

    def problems(self) -> list[tuple[Path_, str]]:
        """Checks that need more than one field and are reported at one of them (path relative
        to the tag); the model's own validators report at the tag."""
        return []

    @model_validator(mode="after")
    def _limits_consistent(self) -> TagBase:
        if self.range is not None and self.range[1] <= self.range[0]:
            raise ValueError("range must be [low, high] with low < high")
        if self.writable is not None and self.range is not None:
            low, high = self.range
            if self.writable.min < low or self.writable.max > high:
                raise ValueError("writable limits must lie inside the tag's range")
        return self


class DeviceConfigBase(StrictTagged, ABC):
    """Settings every device has, whatever the protocol. A driver's device model declares
    ``protocol: Literal["<key>"]`` (the YAML's ``protocol:``, the registry's key) and ``tags``
    with its own tag model."""

    _plain_base = plain_fields("backoff", "tags")

    protocol: str  # each driver's model narrows it to its Literal key(s)
    backoff: Backoff = Backoff()
    tags: dict[Name, TagBase] = Field(min_length=1)

    @field_validator("tags", mode="after", check_fields=False)
    @classmethod
    def _shared_definitions(cls, tags: dict[str, TagBase], info: ValidationInfo) -> dict[str, TagBase]:
        """Equal tag definitions (devices of one PLC model written out one by one) become one
        object, as a template's are: a validated tag costs most of a kilobyte, a shared one the
        entry that names it. Done per device, as it is validated, so the copies never pile up."""
        shared = info.context.get(SHARED) if isinstance(info.context, dict) else None
        if shared is None:
            return tags
        try:
            return {name: shared.setdefault(tag, tag) for name, tag in tags.items()}
        except TypeError:  # a tag model with a list or dict field cannot be hashed: it is not shared
            return tags

    @abstractmethod
    def answer_budget_s(self) -> float:
        """The longest one request may take before it is given up (timeout times attempts); the
        staleness limit is built from it in one place, ``GatewayConfig.max_silence_s``."""


def decimals(number: float) -> int:
    """Decimal places needed to write ``number`` exactly (0.001 -> 3, 0.25 -> 2, 10 -> 0)."""
    exponent = Decimal(repr(number)).normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # finite by construction of the config
    return min(MAX_DECIMALS, max(0, -exponent))
