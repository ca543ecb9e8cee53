"""Gap and duplicate accounting, without a broker: the clock is a number the test passes in."""

from __future__ import annotations

import json
import random

from gateway.historian.sequence import MAX_SPANS, Gap, SequenceTracker, Verdict

GRACE = 10.0


def test_in_order_numbers_are_new_and_leave_nothing_open() -> None:
    tracker = SequenceTracker(GRACE)
    assert [tracker.observe("st1", seq, 0.0) for seq in range(100, 110)] == [Verdict.NEW] * 10
    state = tracker.stations["st1"]
    assert (state.floor, state.done, state.spans) == (100, 109, [])
    assert tracker.settle(1000.0) == []


def test_a_replayed_number_is_a_duplicate_whether_settled_or_still_open() -> None:
    tracker = SequenceTracker(GRACE)
    for seq in (1, 2, 3, 7):
        tracker.observe("st1", seq, 0.0)
    assert tracker.observe("st1", 2, 1.0) is Verdict.DUPLICATE  # below the watermark
    assert tracker.observe("st1", 7, 1.0) is Verdict.DUPLICATE  # in an open span
    assert tracker.stations["st1"].duplicates == 2


def test_a_hole_becomes_a_gap_only_after_the_grace_time() -> None:
    tracker = SequenceTracker(GRACE)
    for seq in (1, 2, 5, 6):
        tracker.observe("st1", seq, 100.0)
    assert tracker.settle(100.0 + GRACE - 0.1) == []
    assert tracker.settle(100.0 + GRACE) == [Gap("st1", 3, 4)]
    state = tracker.stations["st1"]
    assert (state.gaps, state.missing, state.done) == (1, 2, 6)
    assert tracker.settle(1000.0) == [], "a gap is reported once"


def test_out_of_order_arrival_within_grace_is_no_gap() -> None:
    tracker = SequenceTracker(GRACE)
    order = list(range(1, 200))
    random.Random(7).shuffle(order)
    tracker.observe("st1", 0, 0.0)
    for seq in order:
        assert tracker.observe("st1", seq, 1.0) is Verdict.NEW
    assert tracker.settle(100.0) == []
    assert tracker.stations["st1"].done == 199


def test_a_late_number_fills_its_gap_instead_of_counting_as_duplicate() -> None:
    tracker = SequenceTracker(GRACE)
    for seq in (1, 2, 6):
        tracker.observe("st1", seq, 0.0)
    [gap] = tracker.settle(GRACE)
    assert gap.size == 3
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
    assert a.settle(100.0) == [] and b.settle(100.0) == []
    assert a.stations["st1"].done == b.stations["st1"].done == 100
    assert a.stations["st1"].duplicates == b.stations["st1"].duplicates == 0


def test_merge_never_counts_duplicates_and_fills_declared_gaps() -> None:
    tracker = SequenceTracker(GRACE)
    for seq in (1, 5):
        tracker.observe("st1", seq, 0.0)
    tracker.merge("st1", 1, 1, 1.0)
    assert tracker.stations["st1"].duplicates == 0
    tracker.settle(GRACE)
    tracker.merge("st1", 2, 3, 20.0)
    state = tracker.stations["st1"]
    assert (state.missing, state.late) == (1, 2)


def test_a_bridge_that_starts_late_still_sees_the_gap_just_before_it() -> None:
    """The first number a bridge sees is not necessarily the fleet's first: peers lower the floor."""
    tracker = SequenceTracker(GRACE)
    tracker.observe("st1", 24, 0.0)  # its first message of the station, after a lost 21..23
    tracker.merge("st1", 1, 20, 0.5)  # a peer wrote 1..20 before
    assert tracker.settle(0.5 + GRACE) == [Gap("st1", 21, 23)]
    late = SequenceTracker(GRACE)
    late.observe("st1", 24, 0.0)
    late.merge("st1", 1, 20, GRACE + 1)  # long after it started: history it never tracked
    assert late.settle(100.0) == [] and late.stations["st1"].floor == 24


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
    assert tracker.settle(GRACE) == [Gap("st1", 2, 2)]
    assert tracker.stations["st2"].gaps == 0


def test_open_spans_are_bounded() -> None:
    tracker = SequenceTracker(GRACE)
    for seq in range(0, 2 * (MAX_SPANS + 5), 2):
        tracker.observe("st1", seq, 0.0)
    gaps = tracker.settle(0.0)  # 0 is the watermark, MAX_SPANS + 4 spans above it: 4 too many
    assert len(tracker.stations["st1"].spans) == MAX_SPANS
    assert len(gaps) == 4


def test_snapshot_survives_json_and_a_restart() -> None:
    tracker = SequenceTracker(GRACE)
    for seq in (1, 2, 4):
        tracker.observe("st1", seq, 0.0)
    tracker.observe("st1", 9, 5.0)
    tracker.observe("st1", 2, 5.0)
    [first_gap] = tracker.settle(GRACE)
    restored = SequenceTracker.restore(json.loads(json.dumps(tracker.snapshot())), GRACE)
    assert restored.snapshot() == tracker.snapshot()
    assert restored.observe("st1", 3, 20.0) is Verdict.LATE
    assert first_gap == Gap("st1", 3, 3)
    assert restored.settle(100.0) == [Gap("st1", 5, 8)]
