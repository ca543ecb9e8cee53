"""Operating-system errors become short, stable causes an operator can act on."""

from __future__ import annotations

import errno
import socket

import pytest

from drivers.modbus.errors import os_cause


@pytest.mark.parametrize(("error", "cause"), [
    (FileNotFoundError(errno.ENOENT, "No such file or directory"), "no_such_port"),
    (OSError(errno.ENXIO, "No such device or address"), "no_such_port"),
    (PermissionError(errno.EACCES, "Permission denied"), "permission_denied"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"), "connection_refused"),
    (OSError(errno.EHOSTUNREACH, "No route to host"), "host_unreachable"),
    (TimeoutError(errno.ETIMEDOUT, "Connection timed out"), "timeout"),
    (TimeoutError(), "timeout"),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "unknown_host"),
    (OSError(errno.EIO, "Input/output error"), "eio"),  # no name of ours: the system's symbol
])
def test_an_os_error_keeps_its_cause_in_a_short_stable_word(error: OSError, cause: str) -> None:
    assert os_cause(error) == cause
