"""The bridge's two MQTT connections.

* ``DurableSession``, the **network thread**, owns the durable MQTT session (persistent,
  ``clean_start=False``, a stable client id, shared subscriptions). It only reads packets, queues
  received messages and sends the acknowledgements the worker hands it. It runs paho's loop
  itself rather than ``loop_start`` so that it can *stop reading* the socket: flow control must
  not depend on the broker honouring Receive Maximum (Mosquitto 2.0.11 lets each PUBACK release a
  whole window more, measured while building this), so at ``max_pending_messages``
  un-acknowledged messages the thread stops reading, TCP pushes back and the broker queues for
  us. Memory stays bounded however long the database is away.
* ``MetaSession``, a second, **non-durable client** (paho's own loop thread), receives the
  retained ``meta`` of every station (not shared: every bridge needs every station's units and
  devices), the other bridges' reports of which sequence numbers they wrote, which is how a fleet
  sharing the load still agrees on holes (see ``sequence``), and the stations' answers to replay
  requests. It also publishes what the worker decided: the retained ``delivered`` confirmations,
  the ``cmd/replay`` requests and this bridge's own peer reports. It is a separate connection so
  that a full pending window on the durable session can never hold back the metadata the queued
  messages wait for.

Acknowledgements are tagged with the connection generation they belong to: after a reconnect the
broker redelivers everything unacknowledged under possibly reused packet ids, so an ack meant for
the old connection is dropped rather than risk acknowledging a different message.

Each session's state is its own thread's; what crosses to the worker goes through ``handoff.Handoff``.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.historian.handoff import Handoff, Incoming
from gateway.historian.schema import Kind, PayloadLimits, parse_meta, parse_peer_report, parse_topic, printable
from gateway.historian.settings import HistorianSettings, MqttSettings
from gateway.logs import Throttle, kv
from gateway.mqtt.broker import read_password, tls_context
from gateway.mqtt.payloads import (
    COMMANDS_TOPIC,
    RECORDED_TOPICS,
    REPLAY_COMMAND,
    Topics,
    historian_peers_topic,
    parse_replay_answer,
    station_of,
)

log = logging.getLogger(__name__)

NETWORK_POLL_S = 0.05


def make_client(settings: MqttSettings, client_id: str, durable: bool) -> mqtt.Client:
    """A paho client that logs in as the settings say (``gateway.mqtt.broker``, as a station does);
    a durable one acknowledges by hand, when the worker says the message is written."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                         manual_ack=durable)
    if settings.username is not None:
        password = settings.password if settings.password is not None else read_password(settings.password_file)
        client.username_pw_set(settings.username, password)
    if settings.tls is not None:
        client.tls_set_context(tls_context(settings.tls))
    return client


class DurableSession:
    """The network thread's state and loop; ``run`` is the thread's target. ``client`` is read by
    other threads only to ask whether it is connected."""

    def __init__(self, settings: HistorianSettings, handoff: Handoff) -> None:
        self.settings = settings
        self._handoff = handoff
        self._prefix = settings.topics.prefix
        self.client = make_client(settings.mqtt, settings.client_id, durable=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self._generation = 0
        self._rng = random.Random()  # the reconnects' jitter
        self._next_connect = 0.0
        self._connect_failures = 0
        self._connected_once = False
        self._throttle = Throttle()

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
        if not self._handoff.closing.is_set():
            log.warning("broker connection lost", extra=kv(reason=str(reason),
                                                           unacknowledged=self._handoff.pending))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = ""  # parse_topic rejects it; the worker counts and acknowledges it
        self._handoff.inbox.append(Incoming(topic, message.payload, message.mid, message.qos, self._generation))
        self._handoff.received += 1
        self._handoff.arrived.set()

    def run(self) -> None:
        """Own the durable session: read while there is room, send acks, reconnect with backoff."""
        client = self.client
        limit = self.settings.mqtt.max_pending_messages
        while True:
            self._handoff.progress["network"] = time.monotonic()
            if client.socket() is None:
                if self._handoff.closing.is_set():
                    return
                self._connect(client)
                continue
            self._send_acks(client)
            closing = self._handoff.closing.is_set()
            if closing or (client.is_connected() and self._handoff.pending >= limit):
                if closing and self._handoff.worker_done.is_set() and not self._handoff.acks:
                    self._disconnect(client)
                    return
                rc = client.loop_write()
                if rc == mqtt.MQTT_ERR_SUCCESS:
                    rc = client.loop_misc()
                self._handoff.room.wait(NETWORK_POLL_S)
                self._handoff.room.clear()
            else:
                rc = client.loop(timeout=NETWORK_POLL_S)
            if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
                self._schedule_reconnect()

    def _connect(self, client: mqtt.Client) -> None:
        wait = self._next_connect - time.monotonic()
        if wait > 0:
            self._handoff.closing.wait(min(wait, 0.2))
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
        delay = self.settings.mqtt.reconnect.delay(self._connect_failures, self._rng)
        self._next_connect = time.monotonic() + delay
        return delay

    def _send_acks(self, client: mqtt.Client) -> None:
        while self._handoff.acks:
            for generation, mid, qos in self._handoff.acks.popleft():
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


class MetaSession:
    """The metadata client; paho's loop thread runs its callbacks. ``invalid`` is written by that
    thread only; ``publish`` may be called from any thread (paho queues it)."""

    def __init__(self, settings: HistorianSettings, handoff: Handoff, limits: PayloadLimits) -> None:
        self.settings = settings
        self._handoff = handoff
        self._limits = limits
        self._prefix = settings.topics.prefix
        self.peer_topic = historian_peers_topic(self._prefix, settings.topics.share_group)
        self.invalid = 0  # malformed metas, peer reports and replay answers
        self._throttle = Throttle()
        self.client = make_client(settings.mqtt, settings.client_id + "-meta", durable=False)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.max_queued_messages_set(100)  # peer reports while the broker is away: bounded
        reconnect = settings.mqtt.reconnect
        self.client.reconnect_delay_set(int(reconnect.initial_s) or 1, int(reconnect.max_s) or 1)

    def start(self) -> None:
        mqtt_settings = self.settings.mqtt
        self.client.connect_async(mqtt_settings.host, mqtt_settings.port, mqtt_settings.keepalive_s, clean_start=True)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: str | bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the metadata connection", extra=kv(reason=str(reason)))
            return
        stations = self.settings.topics.stations
        client.subscribe([(Topics(self._prefix, station).meta, SubscribeOptions(qos=1)) for station in stations]
                         + [(Topics(self._prefix, station).result(REPLAY_COMMAND), SubscribeOptions(qos=1))
                            for station in stations]
                         + [(self.peer_topic, SubscribeOptions(qos=1, noLocal=True))])

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            if message.topic == self.peer_topic:
                self._take_peer_report(message.payload)
                return
            station = self._replay_result_station(message.topic)
            if station is not None:
                self._handoff.answers.put((station, parse_replay_answer(message.payload)))
                self._handoff.arrived.set()
                return
            topic = parse_topic(self._prefix, message.topic)
            if topic is None or topic.kind is not Kind.META or not message.payload:
                return
            meta = parse_meta(message.payload, self._limits)
        except Exception as exc:  # noqa: BLE001 - any message, however hostile, must not end this thread:
            # every later station would be written without its device and unit tags.
            self.invalid += 1
            held = self._throttle.allow("invalid-meta", time.monotonic())
            if held is not None:
                log.warning("ignoring malformed metadata, peer report or replay answer", extra=kv(
                    topic=printable(repr(message.topic)), reason=printable(str(exc)), suppressed=held))
            return
        if self._handoff.metas.get(topic.station) != meta:
            self._handoff.metas[topic.station] = meta
            log.info("station metadata", extra=kv(station=topic.station, tags=len(meta.tags),
                                                  config_hash=meta.config_hash or "-", site=meta.site or "-"))
        self._handoff.arrived.set()

    def _replay_result_station(self, topic: str) -> str | None:
        """The station of ``<prefix>/<station>/cmd/replay/result``, else None."""
        return station_of(self._prefix, topic, f"{COMMANDS_TOPIC}/{REPLAY_COMMAND}/result")

    def _take_peer_report(self, payload: bytes) -> None:
        instance, spans = parse_peer_report(payload, self._limits)  # all checked before any is used
        if instance == self.settings.instance:
            return
        for span in spans:
            self._handoff.peer_reports.put(span)
