"""The historian bridge: broker in, InfluxDB v2 write API out, nothing acknowledged before it is written.

Three threads, each owning its own state, talking through lock-free deques and events:

* the **network thread** owns the durable MQTT session (persistent, ``clean_start=False``, a
  stable client id, shared subscriptions). It only reads packets, queues received messages and
  sends the acknowledgements the worker hands it. It runs paho's loop itself rather than
  ``loop_start`` so that it can *stop reading* the socket: flow control must not depend on the
  broker honouring Receive Maximum (Mosquitto 2.0.11 lets each PUBACK release a whole window
  more, measured while building this), so at ``max_pending_messages`` un-acknowledged messages
  the thread stops reading, TCP pushes back and the broker queues for us. Memory stays bounded
  however long the database is away.
* the **worker thread** turns messages into line protocol, batches them (size and age bounds),
  writes each batch synchronously with gzip, retries with exponential backoff and jitter while the
  database is down or slow, and only then asks for the acknowledgements. A bridge killed at any
  moment has acknowledged only what is in the database; the broker redelivers the rest to it (same
  client id) and the replay lands on the same series and timestamps.
* a second, **non-durable MQTT client** (paho's own loop thread) receives the retained ``meta`` of
  every station (not shared: every bridge needs every station's units and devices), the other
  bridges' reports of which sequence numbers they wrote, which is how a fleet sharing the load
  still agrees on holes (see ``sequence``), and the stations' answers to replay requests. It also
  publishes what the worker decided: the retained ``delivered`` confirmations and the
  ``cmd/replay`` requests. It is a separate connection so that a full pending window on the
  durable session can never hold back the metadata the queued messages wait for.

**End to end, nothing is confirmed before it is durable.** After a batch is written, the worker
saves the sequence state (atomically, synced) and only then hands the acknowledgements to the
network thread and confirms to the stations (``delivered``: every number up to the watermark and
the spans above it), so a bridge killed at any moment restarts knowing at least everything it
ever confirmed: it never asks for, nor counts as missing, a number that is in the database. The
station deletes a message on that confirmation, not at the broker's PUBACK, so a message the
broker lost (a restart drops shared subscriptions, and what was routed to them) is still at the
station: the hole it leaves is asked for again (``cmd/replay``), and only the station's answer that
its outbox cap dropped it makes it a loss.

Acknowledgements are tagged with the connection generation they belong to: after a reconnect the
broker redelivers everything unacknowledged under possibly reused packet ids, so an ack meant for
the old connection is dropped rather than risk acknowledging a different message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.historian.schema import (
    Kind,
    LineEncoder,
    PayloadError,
    StationMeta,
    Topic,
    escape_tag,
    line_problem,
    parse_meta,
    parse_peer_report,
    parse_topic,
    printable,
)
from gateway.historian.quarantine import Quarantine
from gateway.historian.sequence import Gap, SequenceTracker, StationSequence, Verdict
from gateway.historian.status import StatusMemory
from gateway.historian.metrics import BridgeCollector, write_histogram
from gateway.historian.settings import HistorianSettings
from gateway.historian.writer import TOO_LARGE, DatabaseWriter, WriteError
from gateway.logs import Throttle, kv
from gateway.mqtt.broker import read_password, tls_context
from gateway.metrics_server import MetricsServer
from gateway.systemd_notify import KeepAlive, Notifier
from gateway.mqtt.payloads import (
    COMMANDS_TOPIC,
    DELIVERED_MAX_RANGES,
    RECORDED_TOPICS,
    REPLAY_COMMAND,
    REPLAY_MAX_MESSAGES,
    Delivered,
    ReplayAnswer,
    Topics,
    delivered,
    historian_peers_topic,
    parse_replay_answer,
    replay_command,
    station_of,
)

log = logging.getLogger(__name__)

SHUTDOWN_FLUSH_S = 10.0
"""On SIGTERM, how long the worker may keep trying to write what it already holds. Whatever is
still unwritten then stays unacknowledged at the broker; systemd's TimeoutStopSec is 20 s."""
STATS_LOG_S = 60.0
SETTLE_S = 1.0
NETWORK_POLL_S = 0.05
STATUS_EVERY_S = 10.0
"""How often the status line is refreshed for systemd when it runs no watchdog."""


@dataclass(slots=True)
class Incoming:
    """A received message, as the network thread hands it over."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int


@dataclass(slots=True)
class Batch:
    """Lines waiting to be written together, and the messages they acknowledge once written."""

    lines: list[str] = field(default_factory=list)
    values: int = 0
    messages: list[Incoming] = field(default_factory=list)
    seqs: list[tuple[str, int]] = field(default_factory=list)
    opened: float | None = None

    def add(self, lines: list[str], values: int, now: float) -> None:
        if self.opened is None:
            self.opened = now
        self.lines.extend(lines)
        self.values += values


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


class Bridge:
    """One historian bridge instance. ``start()``, then ``close()`` (also on SIGTERM)."""

    def __init__(self, settings: HistorianSettings, writer: DatabaseWriter | None = None) -> None:
        self.settings = settings
        self._writer = writer or DatabaseWriter(settings.influxdb)
        self._limits = settings.validation.limits()
        self._encoder = LineEncoder(settings.site, settings.write_reason, self._limits)
        self._quarantine = Quarantine(settings.state_dir, settings.instance, settings.quarantine)
        self._state_path = settings.state_dir / f"sequence-{settings.instance}.json"
        self._tracker = self._load_tracker()
        self._status_path = settings.state_dir / f"status-{settings.instance}.json"
        self._statuses = self._load_statuses()
        self._prefix = settings.topics.prefix
        self._peer_topic = historian_peers_topic(self._prefix, settings.topics.share_group)

        # Handed from the network thread to the worker (deque appends and pops are atomic).
        self._inbox: deque[Incoming] = deque()
        self._arrived = threading.Event()
        self._received = 0  # written by the network thread only
        now = time.monotonic()
        self.progress = {"network": now, "worker": now}  # each written by its own thread: its last step
        self.write_seconds = write_histogram()
        # Handed from the worker to the network thread.
        self._acks: deque[list[tuple[int, int, int]]] = deque()
        self._released = 0  # written by the worker only
        self._room = threading.Event()
        # From the metadata client's thread to the worker.
        self._metas: dict[str, StationMeta] = {}
        self._peer_reports: queue.SimpleQueue[tuple[str, int, int]] = queue.SimpleQueue()
        self._invalid_meta = 0  # written by the metadata client's thread only
        self._meta_throttle = Throttle()
        self._answers: queue.SimpleQueue[tuple[str, ReplayAnswer | str]] = queue.SimpleQueue()

        self._generation = 0
        self._network_rng = random.Random()  # each thread its own, for the retry jitter
        self._worker_rng = random.Random()
        self._next_connect = 0.0
        self._connect_failures = 0
        self._connected_once = False
        self._closing = threading.Event()
        self._abandon = threading.Event()
        self._worker_done = threading.Event()
        self.failed = threading.Event()

        # Worker-owned.
        self._stats = Stats()
        self._parked: dict[str, list[Incoming]] = {}
        self._parked_since: dict[str, float] = {}
        self._without_meta: set[str] = set()
        self._meta_used: dict[str, StationMeta | None] = {}
        self._written_seqs: dict[str, list[int]] = {}
        self._unconfirmed: set[str] = set()
        self._healthy = True
        self._throttle = Throttle()

        self._client = self._make_client(settings.client_id, durable=True)
        self._meta_client = self._make_client(settings.client_id + "-meta", durable=False)
        self._threads = [
            threading.Thread(target=self._network, name="historian-mqtt", daemon=True),
            threading.Thread(target=self._work, name="historian-writer", daemon=True),
        ]

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (retrying in the background) and start writing."""
        mqtt_settings = self.settings.mqtt
        self._meta_client.connect_async(mqtt_settings.host, mqtt_settings.port, mqtt_settings.keepalive_s,
                                        clean_start=True)
        self._meta_client.loop_start()
        for thread in self._threads:
            thread.start()
        log.info("historian bridge started", extra=kv(
            instance=self.settings.instance, broker=f"{mqtt_settings.host}:{mqtt_settings.port}",
            database=self.settings.influxdb.url, bucket=self.settings.influxdb.bucket,
            group=self.settings.topics.share_group))

    def close(self) -> None:
        """Stop reading, write what was received (bounded time), acknowledge it, disconnect."""
        self._closing.set()
        self._arrived.set()
        network, worker = self._threads
        worker.join(timeout=SHUTDOWN_FLUSH_S)
        if worker.is_alive():
            self._abandon.set()  # stop retrying; a write already on the wire may still finish
            worker.join(timeout=2)
        network.join(timeout=5)
        self._meta_client.disconnect()
        self._meta_client.loop_stop()
        if not worker.is_alive():  # the tracker is the worker's; never read it while it may change
            self._save_tracker()
        self._writer.close()
        log.info("historian bridge stopped", extra=kv(
            instance=self.settings.instance, received=self._received, written=self._stats.written_values,
            unwritten=self.pending))

    @property
    def pending(self) -> int:
        """Messages received and not yet written and acknowledged: what reading is paused on."""
        return self._received - self._released

    # --- MQTT -----------------------------------------------------------------------------------

    def _make_client(self, client_id: str, durable: bool) -> mqtt.Client:
        settings = self.settings.mqtt
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                             manual_ack=durable)
        if settings.username is not None:
            password = settings.password if settings.password is not None else read_password(settings.password_file)
            client.username_pw_set(settings.username, password)
        if settings.tls is not None:
            client.tls_set_context(tls_context(settings.tls))
        if durable:
            client.on_connect = self._on_connect
            client.on_disconnect = self._on_disconnect
            client.on_message = self._on_message
            client.on_subscribe = self._on_subscribe
        else:
            client.on_connect = self._on_meta_connect
            client.on_message = self._on_meta_message
            client.max_queued_messages_set(100)  # peer reports while the broker is away: bounded
            client.reconnect_delay_set(int(settings.reconnect.initial_s) or 1, int(settings.reconnect.max_s) or 1)
        return client

    def _connect_properties(self) -> Properties:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.settings.mqtt.session_expiry_s
        properties.ReceiveMaximum = self.settings.mqtt.max_pending_messages
        return properties

    def _subscriptions(self) -> list[tuple[str, SubscribeOptions]]:
        topics = self.settings.topics
        return [
            (f"$share/{topics.share_group}/{Topics(self._prefix, station).of(suffix)}", SubscribeOptions(qos=1))
            for station in topics.stations for kind in topics.kinds for suffix in RECORDED_TOPICS[kind]
        ]

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the connection", extra=kv(reason=str(reason)))
            return
        self._generation += 1
        self._connect_failures = 0
        client.subscribe(self._subscriptions())
        log.info("broker connected", extra=kv(client_id=self.settings.client_id,
                                              session_present=flags.session_present, generation=self._generation))

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[Any], properties: Any) -> None:
        refused = [str(reason) for reason in reasons if reason.is_failure]
        if refused:
            log.error("broker refused subscriptions", extra=kv(reasons=",".join(refused)))
        else:
            log.info("subscribed", extra=kv(subscriptions=len(reasons), generation=self._generation))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not self._closing.is_set():
            log.warning("broker connection lost", extra=kv(reason=str(reason),
                                                           unacknowledged=self.pending))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = ""  # parse_topic rejects it; the worker counts and acknowledges it
        self._inbox.append(Incoming(topic, message.payload, message.mid, message.qos, self._generation))
        self._received += 1
        self._arrived.set()

    def _network(self) -> None:
        """Own the durable session: read while there is room, send acks, reconnect with backoff."""
        client = self._client
        limit = self.settings.mqtt.max_pending_messages
        while True:
            self.progress["network"] = time.monotonic()
            if client.socket() is None:
                if self._closing.is_set():
                    return
                self._connect(client)
                continue
            self._send_acks(client)
            closing = self._closing.is_set()
            if closing or (client.is_connected() and self.pending >= limit):
                if closing and self._worker_done.is_set() and not self._acks:
                    self._disconnect(client)
                    return
                rc = client.loop_write()
                if rc == mqtt.MQTT_ERR_SUCCESS:
                    rc = client.loop_misc()
                self._room.wait(NETWORK_POLL_S)
                self._room.clear()
            else:
                rc = client.loop(timeout=NETWORK_POLL_S)
            if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
                self._schedule_reconnect()

    def _connect(self, client: mqtt.Client) -> None:
        wait = self._next_connect - time.monotonic()
        if wait > 0:
            self._closing.wait(min(wait, 0.2))
            return
        settings = self.settings.mqtt
        try:
            if self._connected_once:
                client.reconnect()
            else:
                client.connect(settings.host, settings.port, settings.keepalive_s, clean_start=False,
                               properties=self._connect_properties())
                self._connected_once = True
        except OSError as exc:
            delay = self._schedule_reconnect()
            if self._throttle.allow("broker-unreachable", time.monotonic()) is not None:
                log.warning("broker unreachable, retrying", extra=kv(
                    broker=f"{settings.host}:{settings.port}", reason=str(exc), retry_s=round(delay, 1)))

    def _schedule_reconnect(self) -> float:
        self._connect_failures += 1
        delay = self.settings.mqtt.reconnect.delay(self._connect_failures, self._network_rng)
        self._next_connect = time.monotonic() + delay
        return delay

    def _send_acks(self, client: mqtt.Client) -> None:
        while self._acks:
            for generation, mid, qos in self._acks.popleft():
                # An ack for an earlier connection is dropped: the broker redelivers that message.
                if generation == self._generation and client.is_connected():
                    client.ack(mid, qos)

    def _disconnect(self, client: mqtt.Client) -> None:
        """End the connection but keep the session: the broker queues for us until we are back."""
        client.disconnect()
        deadline = time.monotonic() + 2
        while client.socket() is not None and time.monotonic() < deadline:
            if client.loop_write() != mqtt.MQTT_ERR_SUCCESS:
                break
            time.sleep(0.01)

    def _on_meta_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the metadata connection", extra=kv(reason=str(reason)))
            return
        stations = self.settings.topics.stations
        client.subscribe([(Topics(self._prefix, station).meta, SubscribeOptions(qos=1)) for station in stations]
                         + [(Topics(self._prefix, station).result(REPLAY_COMMAND), SubscribeOptions(qos=1))
                            for station in stations]
                         + [(self._peer_topic, SubscribeOptions(qos=1, noLocal=True))])

    def _on_meta_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            if message.topic == self._peer_topic:
                self._take_peer_report(message.payload)
                return
            station = self._replay_result_station(message.topic)
            if station is not None:
                self._answers.put((station, parse_replay_answer(message.payload)))
                self._arrived.set()
                return
            topic = parse_topic(self._prefix, message.topic)
            if topic is None or topic.kind is not Kind.META or not message.payload:
                return
            meta = parse_meta(message.payload, self._limits)
        except Exception as exc:  # noqa: BLE001 - any message, however hostile, must not end this thread:
            # every later station would be written without its device and unit tags.
            self._invalid_meta += 1
            held = self._meta_throttle.allow("invalid-meta", time.monotonic())
            if held is not None:
                log.warning("ignoring malformed metadata, peer report or replay answer", extra=kv(
                    topic=printable(repr(message.topic)), reason=printable(str(exc)), suppressed=held))
            return
        if self._metas.get(topic.station) != meta:
            self._metas[topic.station] = meta
            log.info("station metadata", extra=kv(station=topic.station, tags=len(meta.tags),
                                                  config_hash=meta.config_hash or "-", site=meta.site or "-"))
        self._arrived.set()

    def _replay_result_station(self, topic: str) -> str | None:
        """The station of ``<prefix>/<station>/cmd/replay/result``, else None."""
        return station_of(self._prefix, topic, f"{COMMANDS_TOPIC}/{REPLAY_COMMAND}/result")

    def _take_peer_report(self, payload: bytes) -> None:
        instance, spans = parse_peer_report(payload, self._limits)  # all checked before any is used
        if instance == self.settings.instance:
            return
        for span in spans:
            self._peer_reports.put(span)

    # --- read by the metrics endpoint's thread (plain values; each read is atomic) ---

    @property
    def stats(self) -> Stats:
        return self._stats

    @property
    def received(self) -> int:
        return self._received

    @property
    def quarantined(self) -> int:
        return self._quarantine.kept

    @property
    def healthy(self) -> bool:
        return self._healthy

    def station_sequences(self) -> list[tuple[str, StationSequence]]:
        """A snapshot of each station's accounting (copied at once: the worker keeps adding stations)."""
        return list(self._tracker.stations.items())

    # --- health (the systemd watchdog) ---

    def patience_s(self) -> dict[str, float]:
        """How long each thread may go without a step when nothing is stuck: the network thread's
        longest step is a connection attempt, bounded well within a keepalive; the worker's is one
        database write (its time-out) after the longest retry wait, plus a second of its own work."""
        retry = self.settings.retry
        return {"network": float(self.settings.mqtt.keepalive_s),
                "worker": retry.longest_s() + self.settings.influxdb.timeout_s + 1.0}

    def stalled(self, now: float) -> list[str]:
        """The threads that made no step within their patience (monotonic time ``now``)."""
        return [name for name, limit in self.patience_s().items() if now - self.progress[name] > limit]

    def status_line(self) -> str:
        """One line for ``systemctl status``: the broker session, the database, what waits."""
        broker = "connected" if self._client.is_connected() else "disconnected"
        database = "writing" if self._healthy else "retrying writes"
        return (f"broker {broker}, database {database}; {self._received} received, "
                f"{self._stats.written_values} values written, {self.pending} unacknowledged")

    # --- worker ---------------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            self._work_loop()
        except Exception:
            # A bridge that stops writing but stays subscribed would stall its share of the fleet:
            # fail loudly and let systemd restart it. Nothing unwritten was acknowledged.
            log.exception("historian worker failed; unacknowledged messages stay at the broker")
            self.failed.set()
            self._closing.set()
        finally:
            self._worker_done.set()
            self._room.set()

    def _work_loop(self) -> None:
        batch = Batch()
        limits = self.settings.batch
        max_messages = max(1, self.settings.mqtt.max_pending_messages // 2)
        next_settle = next_metrics = next_report = next_stats = next_confirm = time.monotonic()
        while True:
            self.progress["worker"] = time.monotonic()
            self._arrived.clear()
            now = time.monotonic()
            wall = time.time()
            while not self._peer_reports.empty():
                station, first, last = self._peer_reports.get()
                self._tracker.merge(station, first, last, now=wall)
                self._unconfirmed.add(station)
            while not self._answers.empty():
                self._take_answer(*self._answers.get(), wall)
            while self._inbox and batch.values < limits.max_values and len(batch.messages) < max_messages:
                self._take(self._inbox.popleft(), batch, now, wall)
            self._unpark(batch, now, wall)
            closing = self._closing.is_set()
            if now >= next_settle and self._healthy:
                self._ask_again(self._tracker.due(wall, self.settings.sequence.replay_retry_s, REPLAY_MAX_MESSAGES),
                                wall)
                next_settle = now + SETTLE_S
            if now >= next_metrics:
                batch.add(self._metric_lines(wall), 0, now)
                next_metrics = now + self.settings.metrics_interval_s
            if now >= next_stats:
                self._log_stats()
                next_stats = now + STATS_LOG_S
            if now >= next_report:
                self._publish_written()
                next_report = now + self.settings.sequence.peer_report_s
            due = (batch.values >= limits.max_values or len(batch.messages) >= max_messages
                   or (batch.opened is not None and now - batch.opened >= limits.max_age_s)
                   or (closing and not self._inbox))
            if due and (batch.lines or batch.messages):
                if not self._flush(batch):
                    return  # abandoned at shutdown: unacknowledged, the broker keeps it
                batch = Batch()
            if self._unconfirmed and not batch.messages and (now >= next_confirm or closing):
                # Only between batches: a number converted into an unwritten batch is not held yet.
                self._save_tracker()
                self._confirm(wall)
                next_confirm = now + self.settings.sequence.peer_report_s
            if closing and not self._inbox and not batch.lines and not batch.messages:
                self._publish_written()
                return
            if not self._inbox:
                timeout = 0.1 if batch.opened is None else max(0.0, batch.opened + limits.max_age_s - now)
                self._arrived.wait(min(timeout, 0.1))

    def _take(self, item: Incoming, batch: Batch, now: float, wall: float) -> None:
        """Convert one message into the batch, or park it until its station's meta is known."""
        topic = parse_topic(self._prefix, item.topic)
        if topic is None or topic.kind is Kind.META:
            self._invalid(item, f"unexpected topic {item.topic!r}", "?", batch)
            return
        station = topic.station
        if station in self._parked or (
                station not in self._metas and station not in self._without_meta
                and self.settings.sequence.meta_wait_s > 0):
            if self._closing.is_set():
                return  # left unacknowledged: redelivered after the restart, when meta is known
            self._parked.setdefault(station, []).append(item)
            self._parked_since.setdefault(station, now)
            return
        self._convert(item, topic, batch, now, wall)

    def _unpark(self, batch: Batch, now: float, wall: float) -> None:
        """Release parked stations whose meta arrived, or that waited long enough without it.

        At shutdown parked messages are left unacknowledged rather than written without their
        tags: the broker hands them back after the restart, when the meta will be known.
        """
        for station in list(self._parked):
            waited = now - self._parked_since[station]
            if station not in self._metas and (waited < self.settings.sequence.meta_wait_s or self._closing.is_set()):
                continue
            if station not in self._metas:
                self._without_meta.add(station)
                log.warning("no meta for station; writing its samples without device and unit tags", extra=kv(
                    station=station, waited_s=round(waited, 1)))
            for item in self._parked.pop(station):
                topic = parse_topic(self._prefix, item.topic)
                assert topic is not None
                self._convert(item, topic, batch, now, wall)
            del self._parked_since[station]

    def _station_meta(self, station: str) -> StationMeta | None:
        meta = self._metas.get(station)
        if self._meta_used.get(station) is not meta:
            self._encoder.forget(station)
            self._meta_used[station] = meta
            if meta is not None and station in self._without_meta:
                self._without_meta.discard(station)
                log.info("meta arrived for station; its new samples carry device and unit", extra=kv(station=station))
        return meta

    def _convert(self, item: Incoming, topic: Topic, batch: Batch, now: float, wall: float) -> None:
        meta = self._station_meta(topic.station)
        if topic.kind is Kind.STATUS and not self._statuses.is_new(topic.station, item.payload):
            # A retained or redelivered copy of the status already stored: not a new transition.
            self._stats.status_repeats += 1
            log.debug("station status repeated; not stored again", extra=kv(station=topic.station))
            batch.messages.append(item)
            return
        try:
            if topic.kind is Kind.TELEMETRY:
                encoded = self._encoder.telemetry(topic.station, meta, item.payload)
            elif topic.kind is Kind.STATUS:
                encoded = self._encoder.status(topic, meta, item.payload, wall)
                self._statuses.remember(topic.station, item.payload)
            else:
                encoded = self._encoder.state(topic, meta, item.payload)
        except PayloadError as exc:
            self._invalid(item, str(exc), topic.station, batch, exc.seq)
            return
        except Exception as exc:  # noqa: BLE001 - a message the encoder cannot handle is poison for this
            # message only: quarantined and acknowledged, never a stop of the bridge (and a crash loop).
            if self._throttle.allow("encoder-failed", now) is not None:
                log.exception("message could not be encoded; quarantined", extra=kv(station=printable(topic.station)))
            self._invalid(item, f"encoder failed: {type(exc).__name__}", topic.station, batch)
            return
        if encoded.skipped:
            self._stats.skipped_samples += encoded.skipped
            reason = f"{encoded.skipped} samples skipped, first: {encoded.skip_reason}; the others were written"
            self._keep(item, reason, topic.station, encoded.seq)
            held = self._throttle.allow(f"partial:{topic.station}", now)
            if held is not None:
                log.warning("samples not following the MQTT contract were skipped", extra=kv(
                    station=printable(topic.station), seq=encoded.seq, skipped_samples=encoded.skipped,
                    reason=encoded.skip_reason, suppressed=held))
        if encoded.unknown_strings:
            log.debug("text fields not written", extra=kv(station=topic.station, kind=topic.kind.value,
                                                          fields=",".join(encoded.unknown_strings)))
        if encoded.seq is not None:
            verdict = self._tracker.observe(topic.station, encoded.seq, wall)
            if verdict is Verdict.LATE:
                log.info("late telemetry filled a reported gap", extra=kv(station=topic.station, seq=encoded.seq))
            batch.seqs.append((topic.station, encoded.seq))
        batch.add(encoded.lines, encoded.values, now)
        batch.messages.append(item)

    def _invalid(self, item: Incoming, reason: str, station: str, batch: Batch, seq: int | None = None) -> None:
        """Contract violations are counted, quarantined, logged (throttled) and acknowledged with
        the batch: no retry can fix them, and holding them back would stall every station.

        A refused message that carries its number is held, in the quarantine, so the number counts
        as delivered: otherwise the station would keep it unconfirmed and resend it on every replay
        request, to be refused again, for as long as the outbox keeps it.
        """
        self._stats.invalid_messages += 1
        self._keep(item, reason, station, seq)
        if seq is not None:
            self._tracker.observe(station, seq, time.time())
            batch.seqs.append((station, seq))
        held = self._throttle.allow(f"invalid:{station}", time.monotonic())
        if held is not None:
            log.warning("message does not follow the MQTT contract; quarantined and acknowledged", extra=kv(
                station=printable(station), seq="-" if seq is None else seq, topic=printable(repr(item.topic)),
                reason=printable(reason), quarantine=str(self._quarantine.path), suppressed=held))
        batch.messages.append(item)

    def _keep(self, item: Incoming, reason: str, station: str, seq: int | None) -> None:
        """A copy in the quarantine; a disk that refuses is logged, and the message acknowledged all the same."""
        try:
            self._quarantine.keep(item.topic, item.payload, reason, station, seq)
        except OSError as exc:
            if self._throttle.allow("quarantine-failed", time.monotonic()) is not None:
                log.error("cannot write the quarantine; the refused message is only counted", extra=kv(
                    path=str(self._quarantine.path), reason=str(exc)))

    def _flush(self, batch: Batch) -> bool:
        """Write the batch until it is written; then acknowledge it. False if abandoned at shutdown."""
        body = batch.lines
        failures = 0
        while True:
            try:
                self._write(body)
                break
            except WriteError as exc:
                failures += 1
                delay = self.settings.retry.delay(failures, self._worker_rng)
                self._stats.write_failures += 1
                self._healthy = False
                if failures == 1 or self._throttle.allow("write-failed", time.monotonic()) is not None:
                    log.warning("database write failed, retrying", extra=kv(
                        reason=exc.reason, values=batch.values, attempt=failures, retry_s=round(delay, 1),
                        unacknowledged=self.pending))
                if self._abandon.wait(delay):
                    return False
                self.progress["worker"] = time.monotonic()  # waiting for the database is not being stuck
        if failures:
            log.info("database writes resumed", extra=kv(failed_attempts=failures, values=batch.values))
        self._healthy = True
        self._stats.written_values += batch.values
        self._stats.written_batches += 1
        # What was written is on disk in the sequence state before anyone is told it was: a bridge
        # killed after the acknowledgements must not restart believing those numbers are missing
        # (nor store a redelivered status again as a new transition).
        self._save_tracker()
        if self._statuses.changed:
            self._save_json(self._status_path, self._statuses.snapshot())
        self._acks.append([(item.generation, item.mid, item.qos) for item in batch.messages if item.qos > 0])
        self._released += len(batch.messages)
        self._room.set()
        for station, seq in batch.seqs:
            self._written_seqs.setdefault(station, []).append(seq)
            self._unconfirmed.add(station)
        return True

    def _write(self, lines: list[str]) -> None:
        """One attempt; a batch too large for the database is halved until it fits."""
        self.progress["worker"] = time.monotonic()
        try:
            with self.write_seconds.time():
                self._writer.write("\n".join(lines).encode())
        except WriteError as exc:
            if exc.status == TOO_LARGE and len(lines) > 1:
                half = len(lines) // 2
                self._write(lines[:half])
                self._write(lines[half:])
                return
            if exc.retry:
                raise
            self._stats.rejected_values += len(lines)
            log.error("database refused lines; they are dropped (retrying cannot change its answer)", extra=kv(
                reason=exc.reason, lines=len(lines), first=lines[0][:200] if lines else ""))

    # --- accounting -----------------------------------------------------------------------------

    def _report_gaps(self, gaps: list[Gap]) -> None:
        for gap in gaps:
            state = self._tracker.stations[gap.station]
            self._unconfirmed.add(gap.station)
            log.warning("telemetry sequence gap", extra=kv(
                station=gap.station, first_missing=gap.first, last_missing=gap.last, missing=gap.size,
                reason=gap.reason, station_gaps=state.gaps, station_missing=state.missing))

    def _ask_again(self, holes: list[Gap], wall: float) -> None:
        """Ask the stations to send their holes again (``cmd/replay``); report the ones given up.

        Every bridge of a group asks for the same hole under the same command id within one retry
        period, so the station executes it once and answers the others from its memory.
        """
        retry_s = self.settings.sequence.replay_retry_s
        self._report_gaps([hole for hole in holes if hole.reason])
        for hole in holes:
            if hole.reason:
                continue
            command_id = f"{self.settings.topics.share_group}:{hole.first}-{hole.last}:{int(wall // retry_s)}"
            payload = replay_command(command_id, f"historian/{self.settings.instance}", wall + retry_s,
                                     hole.first, hole.last)
            self._meta_client.publish(Topics(self._prefix, hole.station).command(REPLAY_COMMAND), payload, qos=1)
            log.info("replay requested", extra=kv(station=hole.station, from_seq=hole.first, to_seq=hole.last,
                                                  id=command_id))

    def _take_answer(self, station: str, answer: ReplayAnswer | str, wall: float) -> None:
        """A station's answer to a replay request: what its cap dropped is lost, said once."""
        if isinstance(answer, str):
            log.warning("replay refused by the station", extra=kv(station=station, reason=answer))
            return
        gaps, confirmed = self._tracker.resolve(station, answer.first, answer.last, answer.dropped, answer.resent,
                                                "dropped by the station's outbox cap", wall)
        self._report_gaps(gaps)
        if confirmed:
            self._unconfirmed.add(station)
            log.info("numbers the station no longer has were confirmed earlier: not missing", extra=kv(
                station=station, from_seq=answer.first, to_seq=answer.last, filled=confirmed))

    def _confirm(self, wall: float) -> None:
        """Retained ``delivered`` for every station whose held numbers changed since the last one."""
        for station in sorted(self._unconfirmed):
            upto, ranges = self._tracker.delivered(station, DELIVERED_MAX_RANGES)
            self._meta_client.publish(Topics(self._prefix, station).delivered,
                                      delivered(Delivered(upto, tuple(ranges)), wall), qos=1, retain=True)
        self._unconfirmed.clear()

    def _metric_lines(self, wall: float) -> list[str]:
        """The bridge's own metrics, written to the same database (measurement ``historian``)."""
        ts = round(wall * 1000)
        instance = self.settings.instance
        stats = self._stats
        parked = sum(len(items) for items in self._parked.values())
        lines = [
            f"historian,instance={instance} received={self._received}i,written_values={stats.written_values}i,"
            f"written_batches={stats.written_batches}i,write_failures={stats.write_failures}i,"
            f"rejected_values={stats.rejected_values}i,invalid_messages={stats.invalid_messages + self._invalid_meta}i,"
            f"skipped_samples={stats.skipped_samples}i,quarantined={self._quarantine.kept}i,"
            f"status_repeats={stats.status_repeats}i,"
            f"pending={self.pending}i,parked={parked}i {ts}"
        ]
        for station, state in self._tracker.stations.items():
            lines.append(
                f"historian,instance={instance},station={escape_tag(station)} gaps={state.gaps}i,missing={state.missing}i,"
                f"duplicates={state.duplicates}i,late={state.late}i,last_seq={state.done}i {ts}")
        return [line for line in lines if line_problem(line) is None]

    def _log_stats(self) -> None:
        stats = self._stats
        log.info("historian stats", extra=kv(
            received=self._received, written_values=stats.written_values, batches=stats.written_batches,
            write_failures=stats.write_failures, rejected=stats.rejected_values,
            invalid=stats.invalid_messages + self._invalid_meta, skipped=stats.skipped_samples,
            quarantined=self._quarantine.kept,
            pending=self.pending, stations=len(self._tracker.stations)))

    def _publish_written(self) -> None:
        """Tell the other bridges of the group which sequence numbers this one has written."""
        if not self._written_seqs:
            return
        seen = {station: _spans(seqs) for station, seqs in self._written_seqs.items()}
        self._written_seqs = {}
        payload = json.dumps({"instance": self.settings.instance, "seen": seen}, separators=(",", ":"))
        self._meta_client.publish(self._peer_topic, payload, qos=1)

    def _load_tracker(self) -> SequenceTracker:
        grace = self.settings.sequence.gap_grace_s
        try:
            return SequenceTracker.restore(json.loads(self._state_path.read_text()), grace)
        except FileNotFoundError:
            return SequenceTracker(grace)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("sequence state unreadable; starting afresh", extra=kv(path=str(self._state_path),
                                                                               reason=str(exc)))
            return SequenceTracker(grace)

    def _load_statuses(self) -> StatusMemory:
        try:
            return StatusMemory.restore(json.loads(self._status_path.read_text()))
        except FileNotFoundError:
            return StatusMemory()
        except (OSError, ValueError) as exc:
            log.warning("status memory unreadable; a station's current status may be stored again", extra=kv(
                path=str(self._status_path), reason=str(exc)))
            return StatusMemory()

    def _save_tracker(self) -> None:
        self._save_json(self._state_path, self._tracker.snapshot())

    def _save_json(self, path: Path, data: object) -> None:
        """Atomically replace a state file, synced, so a crash or power cut leaves this one or the
        previous one, never a torn one, and never one older than what was confirmed."""
        temporary = path.with_suffix(".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with temporary.open("w") as file:
                file.write(json.dumps(data, separators=(",", ":")))
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except OSError as exc:
            if self._throttle.allow("state-save", time.monotonic()) is not None:
                log.error("cannot save the bridge's state", extra=kv(path=str(path), reason=str(exc)))
            with contextlib.suppress(OSError):
                temporary.unlink()


def _spans(seqs: list[int]) -> list[list[int]]:
    """[5, 3, 4, 9] -> [[3, 5], [9, 9]]: compact for the peer report."""
    spans: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if spans and seq == spans[-1][1] + 1:
            spans[-1][1] = seq
        else:
            spans.append([seq, seq])
    return spans


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
