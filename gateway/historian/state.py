"""What the bridge keeps in its state directory across restarts: each station's sequence accounting
(``sequence-<instance>.json``) and the last status it stored (``status-<instance>.json``).

Loaded once when the bridge is built; from then on the worker owns both and saves them, always
before anyone is told what they record (see ``worker``). The bridge saves the accounting once more
at close, and only when the worker has ended, so a file is never written from two threads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path

from gateway.historian.sequence import SequenceTracker
from gateway.historian.settings import HistorianSettings
from gateway.historian.status import StatusMemory
from gateway.logs import Throttle, kv

log = logging.getLogger(__name__)


class PersistedState:
    """The sequence tracker and the status memory, with the files they are saved to."""

    def __init__(self, settings: HistorianSettings) -> None:
        self.sequence_path = settings.state_dir / f"sequence-{settings.instance}.json"
        self.status_path = settings.state_dir / f"status-{settings.instance}.json"
        self._throttle = Throttle()
        self.tracker = self._load_tracker(settings.sequence.gap_grace_s)
        self.statuses = self._load_statuses()

    def save_sequences(self) -> None:
        self._save_json(self.sequence_path, self.tracker.snapshot())

    def save_statuses(self) -> None:
        """Save the status memory if a status was stored since the last save."""
        if self.statuses.changed:
            self._save_json(self.status_path, self.statuses.snapshot())

    def _load_tracker(self, grace: float) -> SequenceTracker:
        try:
            return SequenceTracker.restore(json.loads(self.sequence_path.read_text()), grace)
        except FileNotFoundError:
            return SequenceTracker(grace)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("sequence state unreadable; starting afresh", extra=kv(path=str(self.sequence_path),
                                                                               reason=str(exc)))
            return SequenceTracker(grace)

    def _load_statuses(self) -> StatusMemory:
        try:
            return StatusMemory.restore(json.loads(self.status_path.read_text()))
        except FileNotFoundError:
            return StatusMemory()
        except (OSError, ValueError) as exc:
            log.warning("status memory unreadable; a station's current status may be stored again", extra=kv(
                path=str(self.status_path), reason=str(exc)))
            return StatusMemory()

    def _save_json(self, path: Path, data: object) -> None:
        """Atomically replace a state file, synced, so a crash or power cut leaves this one or the
        previous one, never a torn one, and never one older than what was confirmed."""
        temporary = path.with_suffix(".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with temporary.open("w") as file:
                file.write(json.dumps(data, separators=(",", ":")))
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except OSError as exc:
            if self._throttle.allow("state-save", time.monotonic()) is not None:
                log.error("cannot save the bridge's state", extra=kv(path=str(path), reason=str(exc)))
            with contextlib.suppress(OSError):
                temporary.unlink()
