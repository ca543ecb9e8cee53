"""Alarm states and open station events on disk, so a restart neither forgets an alarm nor raises an
acknowledged one again, and an interruption that began before it keeps its start and escalates on time.

SQLite in the state directory (``alarms-<station>.sqlite``), one row per alarm, written in one
synced transaction per group of transitions: a crash leaves the states before or after that group,
never half of it. The rows are the records of ``gateway.alarms.state`` as JSON; an alarm removed
from the configuration keeps its row, in state ``removed``: every start clears its retained MQTT
state again (``gateway.alarms.service``), and an alarm declared again starts anew.

The store is written *before* the transitions go to the outbox: a crash between the two loses the
transition message (the retained state published at the next connection still tells the truth),
whereas the other order would publish a duplicate activation after the restart.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from gateway.alarms.events import EventState, StationEvent
from gateway.alarms.state import AlarmRecord, AlarmState

SCHEMA = """
CREATE TABLE IF NOT EXISTS alarm_state (id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS open_event (id TEXT PRIMARY KEY, event TEXT NOT NULL);
"""


def store_path(state_dir: Path, station: str) -> Path:
    """One file per station id, like the outbox."""
    return state_dir / f"alarms-{station}.sqlite"


class AlarmStore:
    """Synchronous; use it from one thread (``AlarmService`` gives it its own)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def load(self) -> list[AlarmRecord]:
        """Every stored record; a row this version cannot read is skipped (the alarm starts normal)."""
        records = []
        for (text,) in self._db.execute("SELECT record FROM alarm_state"):
            try:
                data = json.loads(text)
                data["state"] = AlarmState(data["state"])
                records.append(AlarmRecord(**data))
            except (ValueError, TypeError, KeyError):
                continue
        return records

    def load_events(self) -> list[StationEvent]:
        """The station events that were open (started or escalated, not ended)."""
        events = []
        for (text,) in self._db.execute("SELECT event FROM open_event"):
            try:
                data = json.loads(text)
                data["state"] = EventState(data["state"])
                events.append(StationEvent(**data))
            except (ValueError, TypeError, KeyError):
                continue
        return events

    def save(self, records: Iterable[AlarmRecord], events: Iterable[StationEvent] = ()) -> None:
        """Store these alarm records and event updates (an ended or removed event is forgotten) in
        one synced transaction."""
        rows = [(record.id, json.dumps(_plain(record), ensure_ascii=False)) for record in records]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("INSERT OR REPLACE INTO alarm_state (id, record) VALUES (?, ?)", rows)
            for event in events:
                if event.state in (EventState.ENDED, EventState.REMOVED):
                    self._db.execute("DELETE FROM open_event WHERE id = ?", (event.id,))
                else:
                    self._db.execute("INSERT OR REPLACE INTO open_event (id, event) VALUES (?, ?)",
                                     (event.id, json.dumps(_plain(event), ensure_ascii=False)))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise


def _plain(record: AlarmRecord | StationEvent) -> dict[str, object]:
    data = dataclasses.asdict(record)
    data["state"] = record.state.value
    return data
