"""Which station status the historian stored last, so a repeated copy is not stored as a transition.

A station's ``status`` (birth, clean stop, or the broker's last will) is retained: a broker hands
the current one to every new subscription, and a message written but not yet acknowledged when a
bridge stopped is delivered again. The will carries no time of its own and is stored at its
arrival, so every copy of it would otherwise become a new "offline" point. A status is a new
transition only when it differs from the last one stored for that station; consecutive statuses
always differ (a birth carries its own time, and a will or a stop follows a birth), so nothing real
is ever skipped. The memory is saved with the sequence state, after the write, before the
acknowledgement: a bridge restarted at any moment knows at least what it wrote.
"""

from __future__ import annotations

import hashlib


class StatusMemory:
    """Per station, a digest of the last status payload written."""

    def __init__(self, digests: dict[str, str] | None = None) -> None:
        self._digests = dict(digests or {})
        self.changed = False
        """Something was remembered since the last ``snapshot``: the file needs saving (statuses are
        rare, batches are not, and each save is a synced write)."""

    @classmethod
    def restore(cls, data: object) -> StatusMemory:
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise ValueError("status memory is not a mapping of station to digest")
        return cls(data)

    def snapshot(self) -> dict[str, str]:
        self.changed = False
        return dict(self._digests)

    def is_new(self, station: str, payload: bytes) -> bool:
        return self._digests.get(station) != _digest(payload)

    def remember(self, station: str, payload: bytes) -> None:
        self._digests[station] = _digest(payload)
        self.changed = True


def _digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()[:32]
