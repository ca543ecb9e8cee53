"""What every driver reports, whatever its protocol: a value with an honest quality.

A consumer (controller, alarms, historian) must never mistake a dead sensor for a cold room, so
every value carries a quality and, when it is not good, a short machine-readable reason.
"""

from __future__ import annotations

from enum import Enum


class Quality(str, Enum):
    """OPC-style quality, simplified to what a station operator acts on."""

    GOOD = "good"
    BAD = "bad"  # not a usable value; ``reason`` says why
    STALE = "stale"  # was good, but not refreshed within its expected time


class Reason(str, Enum):
    """Why a value is not good. Stable strings: they are published and stored."""

    TIMEOUT = "timeout"
    CONNECTION_LOST = "connection_lost"
    EXCEPTION = "exception"  # device answered with a protocol exception (code in the detail)
    BAD_REPLY = "bad_reply"  # device answered, but not a reply to the request (what was wrong in the detail)
    DECODE_ERROR = "decode_error"
    OUT_OF_RANGE = "out_of_range"  # decoded fine but physically implausible (open sensor: 850 C)
    NO_VALUE = "no_value"  # device says the sensor has no reading (a sentinel raw value)
    NOT_REFRESHED = "not_refreshed"
