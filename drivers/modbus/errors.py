"""The typed failures of a Modbus request, so callers can set the right quality reason.

Each is also one of the protocol-neutral ``drivers.base`` errors, which is all the write queue and
the rest of the core catch.
"""

from __future__ import annotations

from drivers.base import DeviceBadReply, DeviceError, DeviceRefused, DeviceTimeout, DeviceUnreachable

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class LinkError(DeviceError):
    """A request did not produce data."""


class LinkTimeout(LinkError, DeviceTimeout):
    """The device did not answer within its timeout (after the configured retries)."""


class LinkDown(LinkError, DeviceUnreachable):
    """No connection (refused, reset, closed mid-reply, serial port gone)."""


class ExceptionReply(LinkError, DeviceRefused):
    """The device answered with a Modbus exception."""

    def __init__(self, code: int) -> None:
        super().__init__(f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})")
        self.code = code


class BadReply(LinkError, DeviceBadReply):
    """The device answered, but not with a reply to the request sent: wrong function code, byte or
    register count, transaction or unit id, framing, or a write echo that differs from the write.

    The message is short and names what was wrong (``0 registers for 1``); it becomes the detail
    of the ``bad_reply`` quality reason.
    """
