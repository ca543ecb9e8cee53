"""The outdoor temperature the curve is read at: checked, corroborated, and replaced when it cannot be trusted.

A broken outdoor sensor is the most expensive single fault of a weather-compensated station: an
open PT1000 reads 850 C and a naive curve shuts the heat off for a whole district. So the reading
passes three checks before it is used (range, rate of change, frozen value) and, when it fails
one, the controller walks a fallback chain: the value dispatch sent over MQTT, the last good value
for a limited time, then a conservative configured default. Each step is a published signal.

A jump faster than the weather can move is a *suspicion*, not a new weather: a sensor that sticks
(a 16 K jump from -21.5 to -5 C, then frozen) looks exactly like it. The new level is believed
only when something independent of the sensor corroborates it: the dispatch centre's value, or
the primary network's supply temperature (the utility runs it on its own outdoor curve, so a real
warm spell lowers it within hours), or, with neither available, the reading itself moving like
weather after it has held ``jump_confirm_s``. Evidence that contradicts it keeps it refused. Until
then "last good" is the value from before the suspicion began, held from that moment, never the
suspicious value itself; a frozen reading likewise falls back to the value from before it froze.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.control.model import OutdoorSource, Reading, Signal
from gateway.control.settings import OutdoorSettings

_QUANTISATION_ALLOWANCE_K = 0.5
"""Rate checks allow this much on top of the rate: sensor noise and the 0.1 K register step."""
AGREE_K = 4.0
"""An independent estimate this close to the sensor's new level corroborates it (dispatch's value
comes from another sensor, the network's is read back through a curve it lags by hours)."""
_NETWORK_MEMORY_S = 86_400.0
"""The primary supply's relation to the outdoor temperature is learned over about the last day: long
enough for the daily swing to show the slope, short enough to follow the utility's curve changes."""
_NETWORK_MIN_SLOPE = 0.5
"""Primary supply K per outdoor K below which the network says nothing about the weather (a
network held at its summer floor for hot water)."""
_NETWORK_MIN_SPREAD_K = 2.0
"""Outdoor spread (standard deviation, K) the learned relation needs before it is used as evidence."""


@dataclass(frozen=True, slots=True)
class OutdoorEstimate:
    """The outdoor temperature in use this cycle, where it came from, and what went wrong."""

    raw_c: float | None
    value_c: float
    source: OutdoorSource
    fault: str
    signals: tuple[Signal, ...]
    network_c: float | None = None  # what the primary supply says the outdoor temperature is (None: no evidence)


@dataclass
class NetworkRelation:
    """The primary supply temperature against the trusted outdoor temperature: an exponentially
    weighted least-squares line, so the network's own weather compensation can be read backwards."""

    n: float = 0.0
    mean_x: float = 0.0
    mean_y: float = 0.0
    var_x: float = 0.0
    cov_xy: float = 0.0

    def learn(self, outdoor_c: float, primary_c: float, dt_s: float) -> None:
        weight = min(1.0, dt_s / _NETWORK_MEMORY_S) if self.n else 1.0
        self.n += 1.0
        dx, dy = outdoor_c - self.mean_x, primary_c - self.mean_y
        self.mean_x += weight * dx
        self.mean_y += weight * dy
        self.var_x = (1.0 - weight) * (self.var_x + weight * dx * dx)
        self.cov_xy = (1.0 - weight) * (self.cov_xy + weight * dx * dy)

    def outdoor_for(self, primary_c: float) -> float | None:
        """The outdoor temperature the network's supply corresponds to, or None without evidence."""
        if self.var_x < _NETWORK_MIN_SPREAD_K**2:
            return None
        slope = self.cov_xy / self.var_x  # negative: colder outdoors, hotter network
        if -slope < _NETWORK_MIN_SLOPE:
            return None
        return self.mean_x + (primary_c - self.mean_y) / slope


def corroboration(value_c: float, dispatch_c: float | None, network_c: float | None) -> bool | None:
    """Does independent evidence confirm a suspicious outdoor value? True, False (contradicted),
    or None (no evidence). Dispatch, when fresh, is the stronger witness and decides alone."""
    for witness in (dispatch_c, network_c):
        if witness is not None:
            return abs(witness - value_c) <= AGREE_K
    return None


class OutdoorSupervisor:
    """Plausibility checks, corroboration and the fallback chain, with the little memory they need."""

    def __init__(self, settings: OutdoorSettings) -> None:
        self.settings = settings
        self.network = NetworkRelation()
        self._accepted: tuple[float, float] | None = None  # (time, value) of the last accepted reading
        self._suspect: tuple[float, float] | None = None  # (since, first suspicious value) of a jump
        self._steady: tuple[float, float] | None = None  # (since, value) of an unchanged reading
        self._last_good: tuple[float, float] | None = None  # (time, value) from sensor or dispatch
        self._last_learned: float | None = None

    def update(self, sensor: Reading, dispatch: Reading, now: float, primary_supply: Reading | None = None) -> OutdoorEstimate:
        """Check the sensor, corroborate a jump, fall back if needed; return the value to use.

        ``primary_supply``: the network's supply temperature at the station (None or unusable: no
        such evidence).
        """
        s = self.settings
        low, high = s.range_c
        from_dispatch = dispatch.usable
        if from_dispatch is not None and not (dispatch.age_s <= s.dispatch_max_age_s and low <= from_dispatch <= high):
            from_dispatch = None
        primary = None if primary_supply is None else primary_supply.usable
        network = None if primary is None else self.network.outdoor_for(primary)
        fault = self._check(sensor, now, from_dispatch, network)
        raw = sensor.value
        if not fault:
            assert raw is not None
            self._last_good = (now, raw)
            if primary is not None:
                dt_s = 0.0 if self._last_learned is None else now - self._last_learned
                self.network.learn(raw, primary, dt_s)
                self._last_learned = now
            return OutdoorEstimate(raw, raw, OutdoorSource.SENSOR, "", (), network)
        signals = [Signal.OUTDOOR_SENSOR_FAULT]
        if self._suspect is not None:
            signals.append(Signal.OUTDOOR_SUSPECT)
        if from_dispatch is not None:
            self._last_good = (now, from_dispatch)
            signals.append(Signal.OUTDOOR_FROM_DISPATCH)
            return OutdoorEstimate(raw, from_dispatch, OutdoorSource.DISPATCH, fault, tuple(signals), network)
        if self._last_good is not None and now - self._last_good[0] <= s.hold_last_good_s:
            signals.append(Signal.OUTDOOR_LAST_GOOD)
            return OutdoorEstimate(raw, self._last_good[1], OutdoorSource.LAST_GOOD, fault, tuple(signals), network)
        signals.append(Signal.OUTDOOR_DEFAULT)
        return OutdoorEstimate(raw, s.default_c, OutdoorSource.DEFAULT, fault, tuple(signals), network)

    def _check(self, sensor: Reading, now: float, dispatch_c: float | None, network_c: float | None) -> str:
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
            self._roll_back_to(self._steady)
            return f"frozen at {value:g} C"
        if self._accepted is not None:
            since, last = self._accepted
            allowed = s.max_rate_k_per_h * (now - since) / 3600.0 + _QUANTISATION_ALLOWANCE_K
            # Still showing the suspicious value: that the weather could have got there by now
            # (8 K/h makes any level plausible after a few hours) is no evidence that it did.
            stuck = self._suspect is not None and abs(value - self._suspect[1]) <= s.frozen_tolerance_k
            if abs(value - last) > allowed or stuck:
                if self._suspect is None:
                    self._suspect = (now, value)
                why = self._unbelieved(value, now, dispatch_c, network_c)
                if why:
                    return f"implausible jump: {last:g} -> {value:g} C, {why}"
        self._suspect = None
        self._accepted = (now, value)
        return ""

    def _unbelieved(self, value: float, now: float, dispatch_c: float | None, network_c: float | None) -> str:
        """Why a suspicious new level is not believed yet ("" once it is corroborated)."""
        assert self._suspect is not None
        since, first = self._suspect
        verdict = corroboration(value, dispatch_c, network_c)
        if verdict is True:
            return ""
        if verdict is False:
            witness = dispatch_c if dispatch_c is not None else network_c
            source = "dispatch" if dispatch_c is not None else "the primary supply"
            return f"contradicted by {source} ({witness:.1f} C)"
        held = now - since >= self.settings.jump_confirm_s
        moving = abs(value - first) > self.settings.frozen_tolerance_k
        if held and moving:
            return ""
        return "not corroborated (no dispatch or network evidence; " + (
            "not moving since" if held else "held less than jump_confirm_s") + ")"

    def _roll_back_to(self, before: tuple[float, float] | None) -> None:
        """"Last good" is what the sensor said before the suspicion began, held from that moment:
        not the frozen or jumped value, and not for longer than ``hold_last_good_s`` after it."""
        if before is not None and self._last_good is not None and self._last_good[0] > before[0]:
            self._last_good = before

    def _is_frozen(self, value: float, now: float) -> bool:
        """An outdoor temperature does not stay within a few hundredths of a kelvin for hours."""
        s = self.settings
        if self._steady is None or abs(value - self._steady[1]) > s.frozen_tolerance_k:
            self._steady = (now, value)
            return False
        return s.frozen_after_s is not None and now - self._steady[0] >= s.frozen_after_s
