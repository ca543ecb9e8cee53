"""Tell systemd how the service is doing: ready, a one-line status, alive, stopping.

The protocol is a datagram of ``KEY=VALUE`` lines to the Unix socket named in ``NOTIFY_SOCKET``
(sd_notify(3)); it is a few lines, so heatgw speaks it itself rather than depend on libsystemd.
Outside systemd (a terminal, the tests' subprocesses without the variable) every call is a no-op.

The watchdog is what makes an unattended station restart itself when it hangs: systemd kills and
restarts the service when no ``WATCHDOG=1`` arrives within ``WatchdogSec``. A keep-alive sent by a
timer alone would prove only that the event loop turns; so a keep-alive is sent only while every
part that matters (each poller, the outbox, the controller) says it is making progress. A stuck
event loop sends nothing at all; a wedged part stops the keep-alives and is named in the log and
in ``STATUS=`` so the journal says why systemd restarted the station.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable

from gateway.logs import kv

log = logging.getLogger(__name__)

Stalled = Callable[[], list[str]]
"""Returns the names of the parts that made no progress within their own patience (empty: healthy)."""


class Notifier:
    """The service manager's notification socket, if there is one."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        # An address starting with "@" is in the abstract namespace (a leading NUL byte).
        self._address = None if not address else ("\0" + address[1:] if address.startswith("@") else address)
        self.watchdog_s = watchdog_usec / 1e6 if watchdog_usec else None
        self._socket: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environment(cls) -> Notifier:
        """From ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` (honouring ``WATCHDOG_PID`` as sd_notify does)."""
        watchdog = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        usec = int(watchdog) if watchdog.isdigit() and int(watchdog) > 0 else None
        if pid and pid != str(os.getpid()):
            usec = None  # the watchdog is another process's
        return cls(os.environ.get("NOTIFY_SOCKET"), usec)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **fields: str | int) -> None:
        """Send ``KEY=VALUE`` lines; never raises (a lost notification must not stop the station)."""
        if self._address is None:
            return
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items())
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(message.encode(), self._address)
        except OSError as exc:
            if not self._failed:  # once: systemd restarting would be the next thing anyway
                log.warning("cannot notify the service manager", extra=kv(socket=self._address, reason=exc.strerror))
            self._failed = True

    def ready(self, status: str) -> None:
        self.send(ready=1, status=status)

    def stopping(self) -> None:
        self.send(stopping=1, status="stopping")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class KeepAlive:
    """One keep-alive decision: ``WATCHDOG=1`` with the status while nothing is stalled, else the
    stalled parts in ``STATUS=`` and no keep-alive; each change between the two logged once."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self._was_stalled: list[str] = []

    @property
    def period_s(self) -> float | None:
        """How often to decide: half the watchdog period (None without a watchdog)."""
        return self.notifier.watchdog_s / 2 if self.notifier.watchdog_s else None

    def stalled(self, parts: list[str]) -> None:
        self.notifier.send(status="stalled: " + ", ".join(parts))
        if parts != self._was_stalled:
            log.error("no progress; withholding the watchdog keep-alive so systemd restarts the service",
                      extra=kv(stalled=",".join(parts), watchdog_s=self.notifier.watchdog_s))
        self._was_stalled = parts

    def alive(self, status: str) -> None:
        if self._was_stalled:
            log.warning("progress again; watchdog keep-alives resumed", extra=kv(were_stalled=",".join(self._was_stalled)))
        self._was_stalled = []
        if self.notifier.watchdog_s:
            self.notifier.send(watchdog=1, status=status)
        else:
            self.notifier.send(status=status)


async def keep_alive(notifier: Notifier, stalled: Stalled, status: Callable[[], Awaitable[str]],
                     status_every_s: float = 10.0) -> None:
    """Send ``WATCHDOG=1`` at half the watchdog period while nothing is stalled, and the status line.

    Without a watchdog only the status is refreshed. Runs until cancelled. The status is given at
    most a quarter period: a slow disk delays the line, never the keep-alive.
    """
    decide = KeepAlive(notifier)
    period = decide.period_s or status_every_s
    while True:
        parts = stalled()
        if parts:
            decide.stalled(parts)
        else:
            try:
                line = await asyncio.wait_for(status(), period / 4)
            except TimeoutError:
                line = "running (status slow to read)"
            decide.alive(line)
        await asyncio.sleep(period)
