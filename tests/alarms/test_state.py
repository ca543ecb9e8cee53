"""The ISA-18.2 state machine, transition by transition, as pure functions."""

from __future__ import annotations

import pytest

from gateway.alarms.state import (
    AlarmRecord,
    AlarmRefused,
    AlarmState,
    acknowledge,
    set_out_of_service,
    shelve,
    step,
    unshelve,
)

NORMAL = AlarmRecord("pump_trip")


def active() -> AlarmRecord:
    return step(NORMAL, True, False, 10.0, True)


def test_condition_raises_an_unacknowledged_alarm_with_its_activation_time_and_value() -> None:
    record = active()
    assert record.state is AlarmState.ACTIVE
    assert (record.activated, record.changed, record.value, record.condition) == (10.0, 10.0, True, True)


def test_acknowledging_an_active_alarm_keeps_it_active_and_records_who() -> None:
    record = acknowledge(active(), 20.0, "dispatch/zhang.wei")
    assert record.state is AlarmState.ACKNOWLEDGED
    assert (record.acknowledged, record.origin) == (20.0, "dispatch/zhang.wei")


def test_an_acknowledged_alarm_whose_condition_goes_returns_to_normal() -> None:
    record = step(acknowledge(active(), 20.0, "op"), False, False, 30.0, False)
    assert record.state is AlarmState.NORMAL
    assert record.returned == 30.0


def test_an_unacknowledged_alarm_whose_condition_goes_waits_as_returned_until_acknowledged() -> None:
    record = step(active(), False, False, 30.0)
    assert record.state is AlarmState.RETURNED and record.returned == 30.0
    assert acknowledge(record, 40.0, "op").state is AlarmState.NORMAL


def test_a_returned_alarm_that_comes_back_is_a_new_activation() -> None:
    record = step(step(active(), False, False, 30.0), True, False, 50.0)
    assert record.state is AlarmState.ACTIVE
    assert (record.activated, record.returned) == (50.0, None)


@pytest.mark.parametrize(("record", "reason"), [
    (NORMAL, "not active"),
    (acknowledge(active(), 20.0, "op"), "already acknowledged"),
    (shelve(active(), 20.0, 100.0, "op", "sensor repair"), "shelved"),
    (step(NORMAL, True, True, 5.0), "suppressed"),
    (set_out_of_service(NORMAL, True, 0.0), "out of service"),
])
def test_acknowledge_refuses_with_a_reason_when_there_is_nothing_to_acknowledge(record: AlarmRecord, reason: str) -> None:
    with pytest.raises(AlarmRefused, match=reason):
        acknowledge(record, 60.0, "op")


def test_a_shelved_alarm_keeps_its_condition_and_shows_it_when_the_shelving_ends() -> None:
    record = shelve(active(), 20.0, 100.0, "op", "sensor being replaced")
    assert record.state is AlarmState.SHELVED and record.shelved_until == 100.0 and record.note
    record = step(record, True, False, 50.0)
    assert record.state is AlarmState.SHELVED
    back = unshelve(record, False, 100.0)
    assert back.state is AlarmState.ACTIVE and back.activated == 100.0 and back.shelved_until is None
    cleared = unshelve(step(record, False, False, 60.0), False, 100.0)
    assert cleared.state is AlarmState.NORMAL


def test_suppression_hides_a_consequence_and_lifting_it_shows_what_remains() -> None:
    record = step(NORMAL, True, True, 5.0)
    assert record.state is AlarmState.SUPPRESSED
    assert step(record, True, False, 9.0).state is AlarmState.ACTIVE
    assert step(record, False, True, 9.0).state is AlarmState.NORMAL


def test_an_active_unacknowledged_alarm_is_suppressed_but_an_acknowledged_one_stays_seen() -> None:
    assert step(active(), True, True, 20.0).state is AlarmState.SUPPRESSED
    acked = acknowledge(active(), 15.0, "op")
    assert step(acked, True, True, 20.0) is acked


def test_out_of_service_ignores_the_condition_and_comes_back_in_its_true_state() -> None:
    record = set_out_of_service(NORMAL, True, 0.0)
    record = step(record, True, False, 10.0)
    assert record.state is AlarmState.OUT_OF_SERVICE and record.condition
    assert set_out_of_service(record, False, 20.0).state is AlarmState.ACTIVE
    with pytest.raises(AlarmRefused, match="out of service"):
        shelve(record, 10.0, 20.0, "op", "")


def test_nothing_changes_when_nothing_changed() -> None:
    record = active()
    assert step(record, True, False, 99.0) is record
