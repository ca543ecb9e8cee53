"""One alarm's life (ISA-18.2 / IEC 62682), as pure functions on an immutable record.

::

    NORMAL ──condition──▶ ACTIVE (unacknowledged) ──ack──▶ ACKNOWLEDGED
      ▲                     │ condition gone                 │ condition gone
      │                     ▼                                ▼
      └──────ack─────── RETURNED (unacknowledged)          NORMAL

    any ──shelve──▶ SHELVED ──expiry / unshelve──▶ ACTIVE or NORMAL, by the condition
    any ──a suppressor is active──▶ SUPPRESSED ──suppressor gone──▶ ACTIVE or NORMAL
    OUT_OF_SERVICE: by configuration, never leaves while configured so.

An acknowledged alarm whose condition persists stays acknowledged when a suppressor comes: the
operator has seen it, and raising it again when the suppressor goes would be a duplicate. The
record keeps the debounced ``condition`` even while shelved, suppressed or out of service, so the
alarm lands in the true state when it comes back. Times are whatever clock the caller uses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum

from gateway.samples import Value


class AlarmState(str, Enum):
    """Published as these words (historian ``state`` codes in gateway/historian/schema.py)."""

    NORMAL = "normal"
    ACTIVE = "active"  # active, unacknowledged
    ACKNOWLEDGED = "acknowledged"  # active, acknowledged
    RETURNED = "returned"  # returned to normal, unacknowledged
    SHELVED = "shelved"
    SUPPRESSED = "suppressed"
    OUT_OF_SERVICE = "out_of_service"
    REMOVED = "removed"
    """Never held by an engine: the last state of an alarm a reload or a start found gone from the
    station file, published through the outbox and stored, so its end is on record
    (``gateway.alarms.service``)."""


OPEN_STATES = frozenset({AlarmState.ACTIVE, AlarmState.ACKNOWLEDGED, AlarmState.RETURNED})
"""States an operator has to see in the alarm list."""


class AlarmRefused(Exception):
    """An operator's action that does not apply to the alarm as it is; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """What is known about one alarm: stored across restarts and published."""

    id: str
    state: AlarmState = AlarmState.NORMAL
    condition: bool = False  # the debounced condition, whatever the state shows
    changed: float = 0.0  # time of the last transition
    activated: float | None = None
    acknowledged: float | None = None
    returned: float | None = None
    origin: str = ""  # who acknowledged or shelved it
    shelved_until: float | None = None
    note: str = ""  # the shelving reason
    value: Value = None  # the value at the last transition


def step(record: AlarmRecord, condition: bool, suppressed: bool, now: float, value: Value = None) -> AlarmRecord:
    """The record after its condition or its suppression changed (either may be unchanged)."""
    state = record.state
    if state in (AlarmState.OUT_OF_SERVICE, AlarmState.SHELVED):
        return dataclasses.replace(record, condition=condition)
    if state is AlarmState.SUPPRESSED:
        if suppressed and condition:
            return record
        return _enter(record, condition, suppressed, now, value)
    if condition and suppressed and state is not AlarmState.ACKNOWLEDGED:
        return _to(record, AlarmState.SUPPRESSED, now, value, condition=True)
    if condition and state in (AlarmState.NORMAL, AlarmState.RETURNED):
        return _activate(record, now, value)
    if not condition and state is AlarmState.ACTIVE:
        return _to(record, AlarmState.RETURNED, now, value, condition=False, returned=now)
    if not condition and state is AlarmState.ACKNOWLEDGED:
        return _to(record, AlarmState.NORMAL, now, value, condition=False, returned=now)
    if condition != record.condition:
        return dataclasses.replace(record, condition=condition)
    return record


def acknowledge(record: AlarmRecord, now: float, origin: str) -> AlarmRecord:
    """An operator has seen the alarm; raises ``AlarmRefused`` when there is nothing to acknowledge."""
    if record.state is AlarmState.ACTIVE:
        return _to(record, AlarmState.ACKNOWLEDGED, now, record.value, acknowledged=now, origin=origin)
    if record.state is AlarmState.RETURNED:
        return _to(record, AlarmState.NORMAL, now, record.value, acknowledged=now, origin=origin)
    reasons = {
        AlarmState.NORMAL: "not active",
        AlarmState.ACKNOWLEDGED: "already acknowledged",
        AlarmState.SHELVED: "shelved: nothing to acknowledge until the shelving ends",
        AlarmState.SUPPRESSED: "suppressed by an active alarm that explains it",
        AlarmState.OUT_OF_SERVICE: "out of service by configuration",
    }
    raise AlarmRefused(reasons[record.state])


def shelve(record: AlarmRecord, now: float, until: float, origin: str, note: str) -> AlarmRecord:
    """Hide a nuisance alarm until ``until`` (it comes back by itself); shelving again moves the end."""
    if record.state is AlarmState.OUT_OF_SERVICE:
        raise AlarmRefused("out of service by configuration")
    return _to(record, AlarmState.SHELVED, now, record.value, shelved_until=until, origin=origin, note=note)


def unshelve(record: AlarmRecord, suppressed: bool, now: float) -> AlarmRecord:
    """The shelving ended: the alarm shows its condition again (a persisting one as a new activation)."""
    return _enter(dataclasses.replace(record, shelved_until=None, note=""), record.condition, suppressed, now,
                  record.value)


def set_out_of_service(record: AlarmRecord, out_of_service: bool, now: float) -> AlarmRecord:
    """Apply the configuration's ``out_of_service`` to a (restored) record."""
    if out_of_service and record.state is not AlarmState.OUT_OF_SERVICE:
        return _to(record, AlarmState.OUT_OF_SERVICE, now, record.value)
    if not out_of_service and record.state is AlarmState.OUT_OF_SERVICE:
        return _enter(record, record.condition, False, now, record.value)
    return record


def _enter(record: AlarmRecord, condition: bool, suppressed: bool, now: float, value: Value) -> AlarmRecord:
    """Come back from a state that hid the condition."""
    if condition and suppressed:
        return _to(record, AlarmState.SUPPRESSED, now, value, condition=True)
    if condition:
        return _activate(record, now, value)
    return _to(record, AlarmState.NORMAL, now, value, condition=False)


def _activate(record: AlarmRecord, now: float, value: Value) -> AlarmRecord:
    return _to(record, AlarmState.ACTIVE, now, value, condition=True, activated=now, acknowledged=None,
               returned=None, origin="")


def _to(record: AlarmRecord, state: AlarmState, now: float, value: Value, **changes: object) -> AlarmRecord:
    return dataclasses.replace(record, state=state, changed=now, value=value, **changes)  # type: ignore[arg-type]
