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


class DeviceError(Exception):
    """A request to a device did not produce what was asked, whatever the protocol.

    Each driver raises these (or its own subclasses of them) at its edge, so the write queue and
    the rest of the core tell the cases apart without knowing the protocol. The message is short
    and operator-facing; it ends up in a write result or a quality reason.
    """


class DeviceUnreachable(DeviceError):
    """No session with the device (refused, reset, closed mid-reply, serial port gone)."""


class DeviceTimeout(DeviceError):
    """The device did not answer within its timeout (after the configured retries)."""


class DeviceRefused(DeviceError):
    """The device answered, refusing the request (a Modbus exception, an OPC UA Bad status code)."""


class DeviceBadReply(DeviceError):
    """The device answered, but not with a reply to the request sent: it cannot be believed."""
