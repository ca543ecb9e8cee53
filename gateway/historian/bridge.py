"""The historian bridge: broker in, InfluxDB v2 write API out, nothing acknowledged before it is written.

Split by role, each module owning its state:

* ``session``: the two MQTT connections, the durable session on the **network thread** (reads,
  flow control, acknowledgements) and the **metadata client** on paho's loop thread (stations'
  ``meta``, peer reports, replay answers; publishes confirmations and replay requests);
* ``worker``: the **worker thread** (line protocol, batches, writes and retries, accounting,
  confirmations), which acknowledges nothing before it is written;
* ``state``: what is kept in the state directory across restarts (sequence accounting, statuses);
* ``metrics``: the bridge's counters, its own measurement and log line, its Prometheus endpoint;
* ``handoff``: the one place where what the threads hand each other is named, with its writer
  and its readers.

This module builds them, starts and stops the threads, and answers the watchdog and the metrics
endpoint.
"""

from __future__ import annotations

import logging
import threading
import time

import paho.mqtt.client as mqtt

from gateway.historian.handoff import Handoff
from gateway.historian.metrics import BridgeCollector, Stats
from gateway.historian.quarantine import Quarantine
from gateway.historian.schema import StationMeta
from gateway.historian.sequence import StationSequence
from gateway.historian.session import DurableSession, MetaSession
from gateway.historian.settings import HistorianSettings
from gateway.historian.state import PersistedState
from gateway.historian.worker import Worker
from gateway.historian.writer import DatabaseWriter
from gateway.logs import Throttle, kv
from gateway.metrics_server import MetricsServer
from gateway.systemd_notify import KeepAlive, Notifier

log = logging.getLogger(__name__)

__all__ = ["Bridge", "Throttle", "run_bridge"]  # Throttle: the log throttle the bridge's parts use

SHUTDOWN_FLUSH_S = 10.0
"""On SIGTERM, how long the worker may keep trying to write what it already holds. Whatever is
still unwritten then stays unacknowledged at the broker; systemd's TimeoutStopSec is 20 s."""
STATUS_EVERY_S = 10.0
"""How often the status line is refreshed for systemd when it runs no watchdog."""


class Bridge:
    """One historian bridge instance. ``start()``, then ``close()`` (also on SIGTERM)."""

    def __init__(self, settings: HistorianSettings, writer: DatabaseWriter | None = None) -> None:
        self.settings = settings
        self._writer = writer or DatabaseWriter(settings.influxdb)
        self._handoff = Handoff()
        self._state = PersistedState(settings)
        self._session = DurableSession(settings, self._handoff)
        self._meta = MetaSession(settings, self._handoff, settings.validation.limits())
        self._worker = Worker(settings, self._handoff, self._state, self._meta, self._writer)
        self._threads = [
            threading.Thread(target=self._session.run, name="historian-mqtt", daemon=True),
            threading.Thread(target=self._worker.run, name="historian-writer", daemon=True),
        ]
        self.failed = self._handoff.failed
        self.write_seconds = self._worker.write_seconds

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (retrying in the background) and start writing."""
        self._meta.start()
        for thread in self._threads:
            thread.start()
        mqtt_settings = self.settings.mqtt
        log.info("historian bridge started", extra=kv(
            instance=self.settings.instance, broker=f"{mqtt_settings.host}:{mqtt_settings.port}",
            database=self.settings.influxdb.url, bucket=self.settings.influxdb.bucket,
            group=self.settings.topics.share_group))

    def close(self) -> None:
        """Stop reading, write what was received (bounded time), acknowledge it, disconnect."""
        self._handoff.closing.set()
        self._handoff.arrived.set()
        network, worker = self._threads
        worker.join(timeout=SHUTDOWN_FLUSH_S)
        if worker.is_alive():
            self._handoff.abandon.set()  # stop retrying; a write already on the wire may still finish
            worker.join(timeout=2)
        network.join(timeout=5)
        self._meta.stop()
        if not worker.is_alive():  # the tracker is the worker's; never read it while it may change
            self._state.save_sequences()
        self._writer.close()
        log.info("historian bridge stopped", extra=kv(
            instance=self.settings.instance, received=self.received, written=self.stats.written_values,
            unwritten=self.pending))

    @property
    def pending(self) -> int:
        """Messages received and not yet written and acknowledged: what reading is paused on."""
        return self._handoff.pending

    # --- read by the metrics endpoint's thread (plain values; each read is atomic) ---

    @property
    def stats(self) -> Stats:
        return self._worker.stats

    @property
    def received(self) -> int:
        return self._handoff.received

    @property
    def quarantined(self) -> int:
        return self._worker.quarantine.kept

    @property
    def healthy(self) -> bool:
        return self._worker.healthy

    def station_sequences(self) -> list[tuple[str, StationSequence]]:
        """A snapshot of each station's accounting (copied at once: the worker keeps adding stations)."""
        return list(self._state.tracker.stations.items())

    # --- the parts, under the names the tests look at them by ---

    @property
    def _client(self) -> mqtt.Client:
        return self._session.client

    @property
    def _meta_client(self) -> mqtt.Client:
        return self._meta.client

    @property
    def _metas(self) -> dict[str, StationMeta]:
        return self._handoff.metas

    @property
    def _invalid_meta(self) -> int:
        return self._meta.invalid

    @property
    def _quarantine(self) -> Quarantine:
        return self._worker.quarantine

    # --- health (the systemd watchdog) ---

    def patience_s(self) -> dict[str, float]:
        """How long each thread may go without a step when nothing is stuck: the network thread's
        longest step is a connection attempt, bounded well within a keepalive; the worker's is one
        database write (its time-out) after the longest retry wait, plus a second of its own work."""
        return {"network": float(self.settings.mqtt.keepalive_s),
                "worker": self.settings.retry.longest_s() + self.settings.influxdb.timeout_s + 1.0}

    def stalled(self, now: float) -> list[str]:
        """The threads that made no step within their patience (monotonic time ``now``)."""
        progress = self._handoff.progress
        return [name for name, limit in self.patience_s().items() if now - progress[name] > limit]

    def status_line(self) -> str:
        """One line for ``systemctl status``: the broker session, the database, what waits."""
        broker = "connected" if self._client.is_connected() else "disconnected"
        database = "writing" if self.healthy else "retrying writes"
        return (f"broker {broker}, database {database}; {self.received} received, "
                f"{self.stats.written_values} values written, {self.pending} unacknowledged")


def run_bridge(settings: HistorianSettings, stop: threading.Event) -> bool:
    """Run until ``stop`` is set (the CLI sets it on SIGTERM/SIGINT); False if the bridge failed.

    Under systemd it says when it is ready, keeps the watchdog fed while both threads make
    progress, and says when it stops (``gateway.systemd_notify``).
    """
    notifier = Notifier.from_environment()
    keep_alive = KeepAlive(notifier)
    period = keep_alive.period_s or STATUS_EVERY_S
    bridge = Bridge(settings)
    endpoint = MetricsServer(settings.metrics, BridgeCollector(bridge)) if settings.metrics is not None else None
    bridge.start()
    if endpoint is not None:
        endpoint.__enter__()
    notifier.ready(bridge.status_line())
    next_beat = time.monotonic() + period
    try:
        while not stop.wait(min(0.5, period)) and not bridge.failed.is_set():
            if time.monotonic() >= next_beat:
                stalled = bridge.stalled(time.monotonic())
                if stalled:
                    keep_alive.stalled(stalled)
                else:
                    keep_alive.alive(bridge.status_line())
                next_beat = time.monotonic() + period
    finally:
        notifier.stopping()
        if endpoint is not None:
            endpoint.__exit__(None, None, None)
        bridge.close()
        notifier.close()
    return not bridge.failed.is_set()
