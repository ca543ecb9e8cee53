"""Report by exception: deadband, quality change, integrity interval, silent tags."""

from __future__ import annotations

from drivers.base import Quality, Reason
from gateway.mqtt.report import ReportFilter
from gateway.tag_traits import TagTraits
from gateway.samples import Sample


def make_filter(integrity_s: float = 300.0) -> ReportFilter:
    return ReportFilter({"t": TagTraits(deadband=0.5, max_silence_s=4.0), "b": TagTraits(),
                         "z": TagTraits(deadband=0.0, max_silence_s=4.0)}, integrity_s)


def test_first_sample_is_reported_then_only_moves_beyond_the_deadband() -> None:
    report = make_filter()
    offered = [20.0, 20.3, 20.5, 20.51, 20.9, 21.2, 20.7, 20.69]
    sent = [v for i, v in enumerate(offered) if report.offer(Sample("t", v, 100.0 + i))]
    # 20.5 is exactly the deadband from 20.0: "beyond" means more than it. Moves are measured
    # from the last REPORTED value, so a slow drift is reported once it adds up.
    assert sent == [20.0, 20.51, 21.2, 20.69]


def test_zero_deadband_reports_every_change_and_nothing_else() -> None:
    report = make_filter()
    sent = [v for i, v in enumerate([1, 1, 2, 2, 2, 1]) if report.offer(Sample("z", v, 100.0 + i))]
    assert sent == [1, 2, 1]


def test_booleans_and_missing_values_are_reported_on_change() -> None:
    report = make_filter()
    values = [False, False, True, True, None, None, False]
    sent = [v for i, v in enumerate(values) if report.offer(Sample("b", v, 100.0 + i))]
    assert sent == [False, True, None, False]


def test_quality_or_reason_change_is_reported_even_without_a_value_change() -> None:
    report = make_filter()
    assert report.offer(Sample("t", 20.0, 100.0))
    assert report.offer(Sample("t", None, 101.0, Quality.BAD, Reason.TIMEOUT.value))
    assert not report.offer(Sample("t", None, 102.0, Quality.BAD, Reason.TIMEOUT.value))
    assert report.offer(Sample("t", None, 103.0, Quality.BAD, Reason.CONNECTION_LOST.value))
    assert report.offer(Sample("t", 20.0, 104.0))


def test_every_tag_is_reported_at_least_every_integrity_interval() -> None:
    report = make_filter(integrity_s=10.0)
    times = [t * 1.0 for t in range(0, 35)]
    sent = [t for t in times if report.offer(Sample("t", 20.0, t))]
    assert sent == [0.0, 10.0, 20.0, 30.0]


def test_a_silent_tag_is_reported_again_as_stale_or_with_its_bad_reason() -> None:
    report = make_filter(integrity_s=10.0)
    report.offer(Sample("t", 20.0, 100.0))
    report.offer(Sample("z", None, 100.0, Quality.BAD, "connection_lost: refused"))
    assert report.overdue(109.0) == []  # within the integrity interval
    due = {s.tag: s for s in report.overdue(110.0)}
    assert due["t"] == Sample("t", 20.0, 110.0, Quality.STALE, Reason.NOT_REFRESHED.value)
    assert due["z"] == Sample("z", None, 110.0, Quality.BAD, "connection_lost: refused")
    assert report.overdue(115.0) == []  # reported at 110: next time at 120
    assert {s.tag for s in report.overdue(120.0)} == {"t", "z"}


def test_a_tag_still_sampled_is_never_declared_stale() -> None:
    report = make_filter(integrity_s=10.0)
    for t in range(100, 111):
        report.offer(Sample("t", 20.0, float(t)))
    # Reported at 100 and (integrity) at 110; a sample came 1 s ago, within its normal pause.
    assert report.overdue(111.0) == []
    assert report.overdue(125.0)[0].quality is Quality.STALE
