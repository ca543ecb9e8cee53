"""Gap and duplicate accounting, without a broker: the clock is a number the test passes in."""

from __future__ import annotations

import json
import random

from gateway.historian.sequence import MAX_SPANS, TOO_MANY_HOLES, Gap, SequenceTracker, Verdict

GRACE = 10.0
RETRY = 30.0
CHUNK = 500
DROPPED = "dropped by the station's outbox cap"


def lost(tracker: SequenceTracker, now: float) -> list[Gap]:
    """Ask for every due hole and let the station answer that its cap dropped all of it."""
    gaps = []
    for ask in tracker.due(now, RETRY, CHUNK):
        gaps += tracker.resolve(ask.station, ask.first, ask.last, (ask.first, ask.last), 0, DROPPED, now)[0]
    return gaps


def gap(station: str, first: int, last: int) -> Gap:
    return Gap(station, first, last, DROPPED)


def test_in_order_numbers_are_new_and_leave_nothing_open() -> None:
    tracker = SequenceTracker(GRACE)
    assert [tracker.observe("st1", seq, 0.0) for seq in range(100, 110)] == [Verdict.NEW] * 10
    state = tracker.stations["st1"]
    assert (state.floor, state.done, state.spans) == (100, 109, [])
    assert tracker.due(1000.0, RETRY, CHUNK) == []


def test_a_replayed_number_is_a_duplicate_whether_settled_or_still_open() -> None:
    tracker = SequenceTracker(GRACE)
    for seq in (1, 2, 3, 7):
        tracker.observe("st1", seq, 0.0)
    assert tracker.observe("st1", 2, 1.0) is Verdict.DUPLICATE  # below the watermark
    assert tracker.observe("st1", 7, 1.0) is Verdict.DUPLICATE  # in an open span
    assert tracker.stations["st1"].duplicates == 2


def test_a_hole_is_asked_for_after_the_grace_time_and_again_each_retry_but_is_not_counted() -> None:
    tracker = SequenceTracker(GRACE)
    for seq in (1, 2, 5, 6):
        tracker.observe("st1", seq, 100.0)
    assert tracker.due(100.0 + GRACE - 0.1, RETRY, CHUNK) == []
    assert tracker.due(100.0 + GRACE, RETRY, CHUNK) == [Gap("st1", 3, 4)]
    assert tracker.due(100.0 + GRACE + RETRY - 0.1, RETRY, CHUNK) == [], "not asked again before the retry time"
    assert tracker.due(100.0 + GRACE + RETRY, RETRY, CHUNK) == [Gap("st1", 3, 4)]
    state = tracker.stations["st1"]
    assert (state.gaps, state.missing, state.done) == (0, 0, 2), "asked for is not lost"


def test_a_hole_becomes_a_gap_only_when_the_station_says_its_cap_dropped_it_and_only_once() -> None:
    tracker = SequenceTracker(GRACE)
    for seq in (1, 2, 5, 6):
        tracker.observe("st1", seq, 100.0)
    [ask] = tracker.due(100.0 + GRACE, RETRY, CHUNK)
    assert tracker.resolve("st1", ask.first, ask.last, (3, 4), 0, DROPPED, 111.0) == ([gap("st1", 3, 4)], 0)
    state = tracker.stations["st1"]
    assert (state.gaps, state.missing, state.done) == (1, 2, 6)
    assert tracker.resolve("st1", 3, 4, (3, 4), 0, DROPPED, 112.0) == ([], 0), "a second answer counts nothing"
    assert tracker.due(1000.0, RETRY, CHUNK) == []


def test_a_partly_dropped_hole_counts_only_the_dropped_part_and_waits_for_the_resent_rest() -> None:
    tracker = SequenceTracker(GRACE)
    for seq in (1, 10):
        tracker.observe("st1", seq, 0.0)
    [ask] = tracker.due(GRACE, RETRY, CHUNK)
    assert (ask.first, ask.last) == (2, 9)
    gaps, confirmed = tracker.resolve("st1", 2, 9, (2, 4), 5, DROPPED, GRACE)
    assert gaps == [gap("st1", 2, 4)] and confirmed == 0
    for seq in range(5, 10):
        assert tracker.observe("st1", seq, GRACE + 1) is Verdict.NEW
    state = tracker.stations["st1"]
    assert (state.gaps, state.missing, state.done) == (1, 3, 10)


def test_numbers_the_station_no_longer_has_but_never_dropped_were_confirmed_earlier_not_lost() -> None:
    """A bridge that lost its state asks for what another confirmation already freed: no loss."""
    tracker = SequenceTracker(GRACE)
    for seq in (1, 8):
        tracker.observe("st1", seq, 0.0)
    tracker.due(GRACE, RETRY, CHUNK)
    assert tracker.resolve("st1", 2, 7, None, 0, DROPPED, GRACE) == ([], 6)
    state = tracker.stations["st1"]
    assert (state.gaps, state.missing, state.done) == (0, 0, 8)


def test_long_holes_are_asked_for_in_bounded_pieces_oldest_first() -> None:
    tracker = SequenceTracker(GRACE)
    tracker.observe("st1", 1, 0.0)
    tracker.observe("st1", 1200, 0.0)
    assert tracker.due(GRACE, RETRY, CHUNK) == [Gap("st1", 2, 501), Gap("st1", 502, 1001), Gap("st1", 1002, 1199)]


def test_out_of_order_arrival_within_grace_is_no_gap() -> None:
    tracker = SequenceTracker(GRACE)
    order = list(range(1, 200))
    random.Random(7).shuffle(order)
    tracker.observe("st1", 0, 0.0)
    for seq in order:
        assert tracker.observe("st1", seq, 1.0) is Verdict.NEW
    assert tracker.due(100.0, RETRY, CHUNK) == []
    assert tracker.stations["st1"].done == 199


def test_a_late_number_fills_its_gap_instead_of_counting_as_duplicate() -> None:
    tracker = SequenceTracker(GRACE)
    for seq in (1, 2, 6):
        tracker.observe("st1", seq, 0.0)
    [declared] = lost(tracker, GRACE)
    assert declared.size == 3
    assert tracker.observe("st1", 4, 20.0) is Verdict.LATE
    assert tracker.observe("st1", 4, 21.0) is Verdict.DUPLICATE
    state = tracker.stations["st1"]
    assert (state.gaps, state.missing, state.late, state.duplicates) == (1, 2, 1, 1)


def test_peers_reports_close_the_holes_of_a_shared_subscription() -> None:
    """Two bridges each see every other number; with each other's reports neither sees a gap."""
    a, b = SequenceTracker(GRACE), SequenceTracker(GRACE)
    for seq in range(1, 101):
        (a if seq % 2 else b).observe("st1", seq, 0.0)
    for seq in range(1, 101):
        (b if seq % 2 else a).merge("st1", seq, seq, 1.0)
    assert a.due(100.0, RETRY, CHUNK) == [] and b.due(100.0, RETRY, CHUNK) == []
    assert a.stations["st1"].done == b.stations["st1"].done == 100
    assert a.stations["st1"].duplicates == b.stations["st1"].duplicates == 0


def test_merge_never_counts_duplicates_and_fills_declared_gaps() -> None:
    tracker = SequenceTracker(GRACE)
    for seq in (1, 5):
        tracker.observe("st1", seq, 0.0)
    tracker.merge("st1", 1, 1, 1.0)
    assert tracker.stations["st1"].duplicates == 0
    lost(tracker, GRACE)
    tracker.merge("st1", 2, 3, 20.0)
    state = tracker.stations["st1"]
    assert (state.missing, state.late) == (1, 2)


def test_a_bridge_that_starts_late_still_sees_the_gap_just_before_it() -> None:
    """The first number a bridge sees is not necessarily the fleet's first: peers lower the floor."""
    tracker = SequenceTracker(GRACE)
    tracker.observe("st1", 24, 0.0)  # its first message of the station, after a lost 21..23
    tracker.merge("st1", 1, 20, 0.5)  # a peer wrote 1..20 before
    assert tracker.due(0.5 + GRACE, RETRY, CHUNK) == [Gap("st1", 21, 23)]
    late = SequenceTracker(GRACE)
    late.observe("st1", 24, 0.0)
    late.merge("st1", 1, 20, GRACE + 1)  # long after it started: history it never tracked
    assert late.due(100.0, RETRY, CHUNK) == [] and late.stations["st1"].floor == 24


def test_numbers_before_tracking_began_are_neither_gaps_nor_duplicates() -> None:
    tracker = SequenceTracker(GRACE)
    tracker.observe("st1", 50, 0.0)
    assert tracker.observe("st1", 10, 100.0) is Verdict.BEFORE
    assert tracker.stations["st1"].duplicates == 0


def test_stations_are_accounted_separately() -> None:
    tracker = SequenceTracker(GRACE)
    for seq in (1, 3):
        tracker.observe("st1", seq, 0.0)
        tracker.observe("st2", seq + 1, 0.0)
    tracker.observe("st2", 3, 0.0)
    assert lost(tracker, GRACE) == [gap("st1", 2, 2)]
    assert tracker.stations["st2"].gaps == 0


def test_open_spans_are_bounded_and_the_holes_given_up_say_why() -> None:
    tracker = SequenceTracker(GRACE)
    for seq in range(0, 2 * (MAX_SPANS + 5), 2):
        tracker.observe("st1", seq, 0.0)
    gaps = tracker.due(0.0, RETRY, CHUNK)  # 0 is the watermark, MAX_SPANS + 4 spans above it: 4 too many
    assert len(tracker.stations["st1"].spans) == MAX_SPANS
    assert gaps == [Gap("st1", seq, seq, TOO_MANY_HOLES) for seq in (1, 3, 5, 7)]


def test_snapshot_survives_json_and_a_restart() -> None:
    tracker = SequenceTracker(GRACE)
    for seq in (1, 2, 4):
        tracker.observe("st1", seq, 0.0)
    tracker.observe("st1", 9, 5.0)
    tracker.observe("st1", 2, 5.0)
    [first_gap] = lost(tracker, GRACE)
    restored = SequenceTracker.restore(json.loads(json.dumps(tracker.snapshot())), GRACE)
    assert restored.snapshot() == tracker.snapshot()
    assert restored.observe("st1", 3, 20.0) is Verdict.LATE
    assert first_gap == gap("st1", 3, 3)
    assert lost(restored, 100.0) == [gap("st1", 5, 8)]
