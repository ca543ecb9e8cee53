"""The typed failures of a Modbus request, so callers can set the right quality reason.

Each is also one of the protocol-neutral ``drivers.base`` errors, which is all the write queue and
the rest of the core catch.
"""

from __future__ import annotations

import errno
import socket

from drivers.base import DeviceBadReply, DeviceError, DeviceRefused, DeviceTimeout, DeviceUnreachable

ILLEGAL_FUNCTION = 1
ILLEGAL_DATA_ADDRESS = 2
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

    def __init__(self, code: int, meaning: str = "") -> None:
        """``meaning`` says what the refusal means for the request at hand, when the caller knows."""
        text = f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})"
        super().__init__(f"{text}: {meaning}" if meaning else text)
        self.code = code


class BadReply(LinkError, DeviceBadReply):
    """The device answered, but not with a reply to the request sent: wrong function code, byte or
    register count, transaction or unit id, framing, or a write echo that differs from the write.

    The message is short and names what was wrong (``0 registers for 1``); it becomes the detail
    of the ``bad_reply`` quality reason.
    """


# Why the operating system refused a port or a connection, as an operator reads it in a status or
# a quality reason. Stable names: dashboards and alarm texts may match on them.
_OS_CAUSES = {
    errno.ENOENT: "no_such_port",  # /dev/ttyUSB0 not there: adapter unplugged, wrong path
    errno.ENODEV: "no_such_port",
    errno.ENXIO: "no_such_port",
    errno.EACCES: "permission_denied",  # the service user is not in the dialout group
    errno.EPERM: "permission_denied",
    errno.EBUSY: "port_busy",
    errno.ECONNREFUSED: "connection_refused",  # nothing listens on that port
    errno.ECONNRESET: "connection_reset",
    errno.EPIPE: "connection_reset",
    errno.EHOSTUNREACH: "host_unreachable",
    errno.ENETUNREACH: "network_unreachable",
    errno.ETIMEDOUT: "timeout",
}


def os_cause(exc: BaseException) -> str:
    """A short, stable name for an operating-system error (``connection_refused``, ``no_such_port``).

    An error number without a name of ours keeps the system's symbol (``eio``), so the cause is
    never lost; the system's full text belongs in the debug log, not here.
    """
    if isinstance(exc, socket.gaierror):
        return "unknown_host"
    number = getattr(exc, "errno", None)
    if isinstance(number, int):
        return _OS_CAUSES.get(number) or errno.errorcode.get(number, f"errno_{number}").lower()
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "os_error"
