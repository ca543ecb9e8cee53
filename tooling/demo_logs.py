"""Keeps the demo's log readable while the controller runs 600 times faster than on a station.

On a station the controller cycles once a minute, so one ``write done`` line per write is what an
operator wants. At the demo's speed it cycles ten times a second and may write on every cycle of
a morning boost; a line each would bury everything else (and scroll the live view away). The
demo therefore lets one line per message of the controller's through every ``every_s`` wall seconds and
says in the next one how many it left out. The live view and the final summary count every write.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from gateway.logs import Throttle


class OriginThrottle(logging.Filter):
    """Passes one record per message every ``every_s`` among those of ``origin``; others all pass."""

    def __init__(self, origin: str, every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._origin = origin
        self._throttle = Throttle(every_s)
        self._clock = clock

    def filter(self, record: logging.LogRecord) -> bool:
        fields = getattr(record, "fields", {})
        if fields.get("origin") != self._origin:
            return True
        left_out = self._throttle.allow(str(record.msg), self._clock())
        if left_out is None:
            return False
        if left_out:
            record.fields = {**fields, "left_out": left_out}
        return True


@contextlib.contextmanager
def throttled(logger_name: str, origin: str, every_s: float) -> Iterator[OriginThrottle]:
    """Throttle ``logger_name``'s records of ``origin`` while the block runs."""
    logger = logging.getLogger(logger_name)
    throttle = OriginThrottle(origin, every_s)
    logger.addFilter(throttle)
    try:
        yield throttle
    finally:
        logger.removeFilter(throttle)
