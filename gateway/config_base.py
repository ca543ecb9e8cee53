"""The base every configuration model derives from, kept apart so sections can live with their code."""

from __future__ import annotations

import datetime as dt
import random
import re
import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator, model_validator

_SHORT_TIME = re.compile(r"^[0-9]:[0-5][0-9](?::[0-5][0-9])?$")

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
"""Names of devices, tags and groups: lower-case identifiers, because they become MQTT topic
levels and historian tags, where spaces and case differences cause trouble."""


SHARED = "shared"
"""Key of the validation context's table of validated tag definitions (``validation_context``)."""


def validation_context(source: object) -> dict[str, Any]:
    """The context a configuration file is validated in: its path, and a table in which equal tag
    definitions become one object (see ``DeviceConfigBase``)."""
    return {"source": source, SHARED: {}}


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors, values are immutable once loaded, and
    nothing is silently turned into something else: NaN and infinity are refused wherever a number
    is configured (a NaN limit makes every comparison false), ``true`` is not the number 1, and a
    number is not a time or a date (``450`` is not 00:07:30). See ``plain_value``.

    A model with a discriminator field (pydantic refuses a validator on it) derives from
    ``StrictTagged`` and names its other fields with ``plain_fields``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_silent_conversion(cls, value: Any, info: ValidationInfo) -> Any:
        return _checked(cls, value, info)


class StrictTagged(BaseModel):
    """``Strict`` for the members of a tagged union: the same rules, on the fields ``plain_fields`` names."""

    model_config = Strict.model_config


def _checked(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    field = cls.model_fields.get(info.field_name or "")
    return value if field is None else plain_value(field.annotation, value)


def plain_fields(*names: str) -> Any:
    """A validator applying ``Strict``'s rules to ``names`` (of this model or of its subclasses)."""
    return field_validator(*names, mode="before", check_fields=False)(classmethod(_checked))


_KINDS: dict[int, tuple[Any, frozenset[Any]]] = {}
"""``_kinds`` by the annotation's id (with the annotation, so a reused id cannot match): every field
of every tag passes through ``plain_value``, and taking a typing annotation apart each time was a
fifth of validating a station's file."""


def _kinds(annotation: Any) -> frozenset[Any]:
    """The plain types an annotation accepts (unions flattened, ``X | None`` included)."""
    known = _KINDS.get(id(annotation))
    if known is None or known[0] is not annotation:
        known = _KINDS[id(annotation)] = (annotation, _kinds_of(annotation))
    return known[1]


def _kinds_of(annotation: Any) -> frozenset[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return frozenset(kind for member in typing.get_args(annotation) for kind in _kinds(member))
    if typing.get_origin(annotation) is typing.Annotated:
        return _kinds(typing.get_args(annotation)[0])
    return frozenset({annotation})


def plain_value(annotation: Any, value: Any) -> Any:
    """``value`` for a field of type ``annotation``, or ValueError if pydantic's lax mode would turn it
    into something else than what the file says."""
    kinds = _kinds(annotation)
    if isinstance(value, bool) and bool not in kinds and kinds & {int, float}:
        raise ValueError("expected a number, not true or false")
    if isinstance(value, int | float) and not isinstance(value, bool) and kinds & {dt.time, dt.date} \
            and not kinds & {int, float}:
        kind = "time" if dt.time in kinds else "date"
        example = '"06:00"' if kind == "time" else '"2026-10-20"'
        raise ValueError(f"expected a {kind}, not a number: write it in quotes, e.g. {example}")
    if isinstance(value, str) and dt.time in kinds and _SHORT_TIME.match(value):
        return "0" + value  # "7:30" is 07:30, as a person reads it
    if bool in kinds and not kinds & {int, float, str} and (isinstance(value, str) or
                                                        isinstance(value, int | float) and not isinstance(value, bool)):
        raise ValueError("expected true or false")
    for kind in kinds:
        items = {item for item in typing.get_args(kind) if item is not Ellipsis}
        if typing.get_origin(kind) in (tuple, list) and len(items) == 1 and isinstance(value, list):
            (item,) = items
            return [plain_value(item, element) for element in value]
    return value


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

    def delay(self, failures: int, rng: random.Random) -> float:
        """The pause before attempt ``failures + 1``: ``initial_s`` doubled per failure after the
        first, capped at ``max_s``, times a uniform factor within ±``jitter``."""
        base = min(self.max_s, self.initial_s * 2 ** max(0, failures - 1))
        return base * rng.uniform(1 - self.jitter, 1 + self.jitter)

    def longest_s(self) -> float:
        """The longest pause ``delay`` can return: what a watchdog's patience must cover."""
        return self.max_s * (1 + self.jitter)


class MetricsSettings(Strict):
    """An opt-in Prometheus endpoint (``/metrics``). Loopback by default: exposing it on the station
    network is a decision to write down, with the firewall rule that goes with it."""

    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65_535)
