"""The historian bridge's figures: its counters, the lines it writes about itself into the database
it feeds (measurement ``historian``), its periodic stats log line, and its Prometheus endpoint
(opt-in: the ``metrics:`` section of historian.yaml).

The endpoint is for the monitoring that must work when that database does not. The collector reads
the worker's counters at scrape time (plain integers, each read atomic under the GIL) and the write
round-trip histogram the worker records into.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.historian.schema import escape_tag, line_problem
from gateway.historian.sequence import StationSequence
from gateway.logs import kv

if TYPE_CHECKING:
    from gateway.historian.bridge import Bridge

log = logging.getLogger(__name__)

WRITE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""A batch write to a database on the same LAN takes milliseconds; seconds mean it is struggling."""


@dataclass(slots=True)
class Stats:
    """The worker's counters (the network thread counts ``received`` itself)."""

    written_values: int = 0
    written_batches: int = 0
    write_failures: int = 0
    rejected_values: int = 0
    invalid_messages: int = 0
    skipped_samples: int = 0
    status_repeats: int = 0


@dataclass(frozen=True, slots=True)
class Figures:
    """The bridge's figures at one moment, gathered by the worker for its line and its log."""

    received: int
    stats: Stats
    invalid_meta: int
    quarantined: int
    pending: int
    parked: int
    stations: Mapping[str, StationSequence]


def metric_lines(instance: str, figures: Figures, wall: float) -> list[str]:
    """The bridge's own metrics, written to the same database (measurement ``historian``)."""
    ts = round(wall * 1000)
    stats = figures.stats
    lines = [
        f"historian,instance={instance} received={figures.received}i,written_values={stats.written_values}i,"
        f"written_batches={stats.written_batches}i,write_failures={stats.write_failures}i,"
        f"rejected_values={stats.rejected_values}i,invalid_messages={stats.invalid_messages + figures.invalid_meta}i,"
        f"skipped_samples={stats.skipped_samples}i,quarantined={figures.quarantined}i,"
        f"status_repeats={stats.status_repeats}i,"
        f"pending={figures.pending}i,parked={figures.parked}i {ts}"
    ]
    for station, state in figures.stations.items():
        lines.append(
            f"historian,instance={instance},station={escape_tag(station)} gaps={state.gaps}i,missing={state.missing}i,"
            f"duplicates={state.duplicates}i,late={state.late}i,last_seq={state.done}i {ts}")
    return [line for line in lines if line_problem(line) is None]


def log_stats(figures: Figures) -> None:
    stats = figures.stats
    log.info("historian stats", extra=kv(
        received=figures.received, written_values=stats.written_values, batches=stats.written_batches,
        write_failures=stats.write_failures, rejected=stats.rejected_values,
        invalid=stats.invalid_messages + figures.invalid_meta, skipped=stats.skipped_samples,
        quarantined=figures.quarantined,
        pending=figures.pending, stations=len(figures.stations)))


def write_histogram() -> Histogram:
    """The write round-trip histogram, registered nowhere until a ``BridgeCollector`` serves it."""
    return Histogram("heatgw_historian_write_duration_seconds", "database write round-trip time",
                     buckets=WRITE_BUCKETS_S, registry=None)


class BridgeCollector(Collector):
    """Reads a running bridge's figures at scrape time."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge

    def collect(self) -> Iterator[Metric]:
        bridge = self._bridge
        stats = bridge.stats
        counters = {
            "received_messages": ("messages received from the broker", bridge.received),
            "written_values": ("values written to the database", stats.written_values),
            "written_batches": ("batches written", stats.written_batches),
            "write_failures": ("write attempts that failed (retried)", stats.write_failures),
            "rejected_values": ("values the database refused for good", stats.rejected_values),
            "invalid_messages": ("messages refused by the contract's checks", stats.invalid_messages),
            "skipped_samples": ("samples left out of otherwise written messages", stats.skipped_samples),
            "quarantined_messages": ("messages kept in the quarantine", bridge.quarantined),
            "status_repeats": ("station statuses received again and not stored again", stats.status_repeats),
        }
        for name, (text, value) in counters.items():
            yield CounterMetricFamily(f"heatgw_historian_{name}", text, value=value)
        yield GaugeMetricFamily("heatgw_historian_unacknowledged_messages", "received, not yet written and acknowledged",
                                value=bridge.pending)
        yield GaugeMetricFamily("heatgw_historian_database_up", "0 while writes are being retried",
                                value=1.0 if bridge.healthy else 0.0)
        per_station = {
            "gaps": CounterMetricFamily("heatgw_historian_gaps", "sequence holes declared", labels=["station"]),
            "missing": CounterMetricFamily("heatgw_historian_missing_messages", "messages the station could no longer send",
                                           labels=["station"]),
            "duplicates": CounterMetricFamily("heatgw_historian_duplicate_messages", "messages received again",
                                              labels=["station"]),
            "last_seq": GaugeMetricFamily("heatgw_historian_contiguous_seq", "every number up to this is held",
                                          labels=["station"]),
        }
        for station, state in bridge.station_sequences():
            per_station["gaps"].add_metric([station], state.gaps)
            per_station["missing"].add_metric([station], state.missing)
            per_station["duplicates"].add_metric([station], state.duplicates)
            per_station["last_seq"].add_metric([station], state.done)
        yield from per_station.values()
        yield from bridge.write_seconds.collect()
