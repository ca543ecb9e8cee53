"""The gateway's Prometheus endpoint (opt-in: the station file's ``metrics:`` section).

Nothing in the acquisition or control path knows Prometheus: the devices, the publisher and the
controller keep plain counters and states, and this collector reads them when a scrape arrives.
The scrape runs on prometheus-client's HTTP thread; it only reads numbers the event loop writes
(each read is atomic under the GIL). The outbox lives on its own thread with its own SQLite
connection, so its figures are refreshed by a task on the event loop every few seconds instead
of being queried from the scrape.

Names follow Prometheus conventions: units in the name, ``_total`` counters, labels only of
bounded sets (device and tag names from the configuration, reasons and sources from enums).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.acquisition.stats import RTT_BUCKETS_S
from gateway.control.model import OutdoorSource
from gateway.mqtt.outbox import AsyncOutbox, OutboxStats

if TYPE_CHECKING:
    from gateway.app import Gateway

OUTBOX_REFRESH_S = 5.0


class GatewayCollector(Collector):
    """Reads the running gateway's figures at scrape time."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self.outbox: OutboxStats | None = None  # refreshed by ``refresh_outbox``

    def collect(self) -> Iterator[Metric]:
        yield from self._devices()
        yield from self._mqtt()
        yield from self._controller()

    def _devices(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("heatgw_device_up", "1 while the device answers, 0 when it is lost", labels=["device"])
        polls = CounterMetricFamily("heatgw_device_polls", "group polls made", labels=["device"])
        requests = CounterMetricFamily("heatgw_device_requests", "requests sent", labels=["device"])
        errors = CounterMetricFamily("heatgw_device_errors", "failed requests and lost links", labels=["device", "reason"])
        rtt = HistogramMetricFamily("heatgw_device_request_duration_seconds", "read round-trip time", labels=["device"])
        for name, device in self._gateway.devices.items():
            stats = device.stats
            up.add_metric([name], 1.0 if device.online else 0.0)
            polls.add_metric([name], stats.polls)
            requests.add_metric([name], stats.requests)
            for reason, count in sorted(stats.errors.items()):
                errors.add_metric([name, reason], count)
            cumulative, buckets = 0, []
            for bound, count in zip((*RTT_BUCKETS_S, float("inf")), stats.rtt_counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            rtt.add_metric([name], buckets, stats.rtt_sum_s)
        yield from (up, polls, requests, errors, rtt)

    def _mqtt(self) -> Iterator[Metric]:
        mqtt = self._gateway.mqtt
        if mqtt is None:
            return
        yield GaugeMetricFamily("heatgw_mqtt_connected", "1 while the MQTT session is up",
                                value=1.0 if mqtt.publisher.connected.is_set() else 0.0)
        yield CounterMetricFamily("heatgw_mqtt_connections", "MQTT sessions established (reconnects after the first)",
                                  value=mqtt.publisher.connections)
        stats = self.outbox
        if stats is None:
            return
        yield GaugeMetricFamily("heatgw_outbox_pending_messages", "messages stored, not yet delivered",
                                value=stats.pending_messages)
        yield GaugeMetricFamily("heatgw_outbox_pending_samples", "samples in the stored messages",
                                value=stats.pending_samples)
        age = 0.0 if stats.oldest_created is None else max(0.0, time.time() - stats.oldest_created)
        yield GaugeMetricFamily("heatgw_outbox_oldest_age_seconds", "age of the oldest stored message", value=age)
        yield GaugeMetricFamily("heatgw_outbox_used_bytes", "database pages in use", value=stats.used_bytes)
        yield CounterMetricFamily("heatgw_outbox_dropped_messages", "messages the outbox cap dropped",
                                  value=stats.dropped_messages)
        yield GaugeMetricFamily("heatgw_outbox_last_seq", "the last sequence number given", value=stats.last_seq)

    def _controller(self) -> Iterator[Metric]:
        task = self._gateway.controller
        state = None if task is None else task.state
        if state is None:
            return
        yield GaugeMetricFamily("heatgw_controller_outdoor_celsius", "outdoor temperature in use", value=state.outdoor_c)
        source = GaugeMetricFamily("heatgw_controller_outdoor_source", "1 for the source of the outdoor value in use",
                                   labels=["source"])
        for option in OutdoorSource:
            source.add_metric([option.value], 1.0 if option is state.outdoor_source else 0.0)
        yield source
        setpoint = GaugeMetricFamily("heatgw_controller_setpoint_celsius", "supply setpoint decided", labels=["circuit"])
        limiting = GaugeMetricFamily("heatgw_controller_limiter_active", "1 while a limiter lowers the setpoint",
                                     labels=["circuit", "limiter"])
        for circuit in state.circuits:
            setpoint.add_metric([circuit.circuit], circuit.setpoint_c)
            for limiter in circuit.limiters:
                limiting.add_metric([circuit.circuit, limiter.name], 1.0 if limiter.active else 0.0)
        yield setpoint
        yield limiting


async def refresh_outbox(collector: GatewayCollector, outbox: AsyncOutbox, every_s: float = OUTBOX_REFRESH_S) -> None:
    """Keep the collector's outbox figures current, from the event loop (runs until cancelled)."""
    while True:
        collector.outbox = await outbox.stats()
        await asyncio.sleep(every_s)
