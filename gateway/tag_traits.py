"""What the gateway's consumers ask of a tag on every polled value, worked out once per station file.

Three consumers each need a number or two per tag for every sample: the latest values (how long a
value stays current), the telemetry filter (deadband, and how long samples may pause before the
tag counts as silent) and the telemetry encoder (how many digits to publish). Each used to keep a
map of its own keyed by tag, four maps of a hundred thousand entries (15 MB) at a concentrator.
Now there is one map per configuration, shared by all of them (``GatewayConfig.tag_traits``), and
its values are shared too: one object per distinct combination, of which a templated station
has a handful.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_DIGITS = -15
"""Significant digits of a value with nothing known about it (a float64 carries about 15)."""


@dataclass(frozen=True, slots=True)
class TagTraits:
    """One tag's facts for the consumers of its samples.

    ``max_silence_s``: how long its samples may normally pause (poll interval and timeouts, see
    ``GatewayConfig.max_silence_s``); longer means they stopped. ``deadband``: the change below
    which a new value is not reported. ``digits``: ``n >= 0`` decimal places, or ``-n``
    significant digits, that its values are published with.
    """

    max_silence_s: float = 0.0
    deadband: float = 0.0
    digits: int = ALL_DIGITS
