"""The alarm store: states and open events survive a reopen; what it cannot read it skips."""

from __future__ import annotations

from pathlib import Path

from gateway.alarms.events import EventState, StationEvent
from gateway.alarms.state import AlarmRecord, AlarmState
from gateway.alarms.store import AlarmStore


def test_records_and_open_events_survive_a_reopen_and_ended_events_are_forgotten(tmp_path: Path) -> None:
    store = AlarmStore(tmp_path / "alarms.sqlite")
    acked = AlarmRecord("pump_trip", AlarmState.ACKNOWLEDGED, True, 20.0, 10.0, 20.0, None, "dispatch/王工", value=True)
    started = StationEvent("interruption", "interruption", EventState.STARTED, 5.0, 65.0, "供热中断", "pump fault",
                           deadline=3605.0)
    flooding = StationEvent("pit_flooding", "trip", EventState.STARTED, 7.0, 7.0, "pit flooded")
    store.save([acked], [started, flooding])
    store.save([], [StationEvent("pit_flooding", "trip", EventState.ENDED, 7.0, 70.0, "pit flooded", ended=70.0)])
    store.close()
    again = AlarmStore(tmp_path / "alarms.sqlite")
    assert again.load() == [acked]
    assert again.load_events() == [started]


def test_a_row_this_version_cannot_read_is_skipped(tmp_path: Path) -> None:
    store = AlarmStore(tmp_path / "alarms.sqlite")
    store.save([AlarmRecord("a", AlarmState.ACTIVE, True, 1.0, 1.0)])
    store._db.execute("INSERT INTO alarm_state VALUES ('b', ?)", ('{"id": "b", "state": "exploded"}',))
    assert [record.id for record in store.load()] == ["a"]
