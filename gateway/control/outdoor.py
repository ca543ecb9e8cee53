"""The outdoor temperature the curve is read at: checked, and replaced when it cannot be trusted.

A broken outdoor sensor is the most expensive single fault of a weather-compensated station: an
open PT1000 reads 850 C and a naive curve shuts the heat off for a whole district. So the reading
passes three checks before it is used (range, rate of change, frozen value) and, when it fails
one, the controller walks a fallback chain: the value dispatch sent over MQTT, the last good value
for a limited time, then a conservative configured default. Each step is a published signal.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.control.model import OutdoorSource, Reading, Signal
from gateway.control.settings import OutdoorSettings

_QUANTISATION_ALLOWANCE_K = 0.5
"""Rate checks allow this much on top of the rate: sensor noise and the 0.1 K register step."""


@dataclass(frozen=True, slots=True)
class OutdoorEstimate:
    """The outdoor temperature in use this cycle, where it came from, and what went wrong."""

    raw_c: float | None
    value_c: float
    source: OutdoorSource
    fault: str
    signals: tuple[Signal, ...]


class OutdoorSupervisor:
    """Plausibility checks and the fallback chain, with the little memory they need."""

    def __init__(self, settings: OutdoorSettings) -> None:
        self.settings = settings
        self._accepted: tuple[float, float] | None = None  # (time, value) of the last accepted reading
        self._jump_since: float | None = None
        self._steady: tuple[float, float] | None = None  # (since, value) of an unchanged reading
        self._last_good: tuple[float, float] | None = None  # (time, value) from sensor or dispatch

    def update(self, sensor: Reading, dispatch: Reading, now: float) -> OutdoorEstimate:
        """Check the sensor, fall back if needed; return the value to use."""
        fault = self._check(sensor, now)
        raw = sensor.value
        if not fault:
            assert raw is not None
            self._last_good = (now, raw)
            return OutdoorEstimate(raw, raw, OutdoorSource.SENSOR, "", ())
        signals = [Signal.OUTDOOR_SENSOR_FAULT]
        s = self.settings
        low, high = s.range_c
        from_dispatch = dispatch.usable
        if from_dispatch is not None and dispatch.age_s <= s.dispatch_max_age_s and low <= from_dispatch <= high:
            self._last_good = (now, from_dispatch)
            signals.append(Signal.OUTDOOR_FROM_DISPATCH)
            return OutdoorEstimate(raw, from_dispatch, OutdoorSource.DISPATCH, fault, tuple(signals))
        if self._last_good is not None and now - self._last_good[0] <= s.hold_last_good_s:
            signals.append(Signal.OUTDOOR_LAST_GOOD)
            return OutdoorEstimate(raw, self._last_good[1], OutdoorSource.LAST_GOOD, fault, tuple(signals))
        signals.append(Signal.OUTDOOR_DEFAULT)
        return OutdoorEstimate(raw, s.default_c, OutdoorSource.DEFAULT, fault, tuple(signals))

    def _check(self, sensor: Reading, now: float) -> str:
        """Why the reading cannot be used ("" if it can); accepts it into the memory if it can."""
        s = self.settings
        value = sensor.usable
        if value is None:
            self._steady = None
            return sensor.reason or "no value"
        low, high = s.range_c
        if not low <= value <= high:
            self._steady = None
            return f"out of range: {value:g} C"
        if self._is_frozen(value, now):
            return f"frozen at {value:g} C"
        if self._accepted is not None:
            since, last = self._accepted
            allowed = s.max_rate_k_per_h * (now - since) / 3600.0 + _QUANTISATION_ALLOWANCE_K
            if abs(value - last) > allowed:
                if self._jump_since is None:
                    self._jump_since = now
                if now - self._jump_since < s.jump_confirm_s:
                    return f"implausible jump: {last:g} -> {value:g} C"
                # The new level persisted: the weather (or a replaced sensor) really changed.
        self._jump_since = None
        self._accepted = (now, value)
        return ""

    def _is_frozen(self, value: float, now: float) -> bool:
        """An outdoor temperature does not stay within a few hundredths of a kelvin for hours."""
        s = self.settings
        if self._steady is None or abs(value - self._steady[1]) > s.frozen_tolerance_k:
            self._steady = (now, value)
            return False
        return s.frozen_after_s is not None and now - self._steady[0] >= s.frozen_after_s
