"""The station's MQTT session: status, meta, the outbox's messages out, confirmations and commands in.

Per connection:

1. connect with the last will (retained ``offline``, ``connection lost``);
2. publish the retained birth (``online``, version, config hash, start time, outbox backlog and
   drops) and the retained meta, subscribe to ``cmd/+`` and to ``delivered``;
3. send the outbox (telemetry, controller state, alarm and event transitions) in sequence order,
   each on its own topic, QoS 1, at most ``max_inflight`` messages awaiting their PUBACK. The
   backlog goes first because it IS the head of the queue: replay and live are one ordered stream;
4. delete from the outbox what the historian's retained ``delivered`` confirms it holds. A PUBACK
   only frees a place in the window: the broker having a message is not the historian having it
   (a broker restart loses shared subscriptions and what was routed to them);
5. answer commands, one at a time, on ``cmd/<name>/result``; ``replay`` sends a range again from
   the outbox, or says which part of it the cap dropped.

When the connection drops, everything unconfirmed stays in the outbox and the next connection
starts again from the oldest; the receiver sees repeats, with the same sequence number.
Reconnection backs off exponentially with jitter. ``stop()`` publishes a retained ``offline``
(``shutdown``) status and disconnects cleanly, so the broker discards the will.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from gateway.logs import Throttle, kv
from gateway.mqtt.client import ConnectFailed, ConnectionLost, Endpoint, Incoming, MqttConnection, Will
from gateway.mqtt.commands import Command, CommandRegistry, Refused, ReplayArgs
from gateway.mqtt.outbox import AsyncOutbox
from gateway.mqtt.payloads import (
    REPLAY_COMMAND,
    ContractError,
    ReplayAnswer,
    StationIdentity,
    Topics,
    birth,
    death,
    parse_delivered,
)
from gateway.mqtt.broker import TlsFileError, read_password, tls_context
from gateway.mqtt.settings import MqttSettings
from gateway.yaml_source import ConfigError

log = logging.getLogger(__name__)

STATUS_TIMEOUT_S = 5.0
INBOX_SIZE = 64
"""Commands waiting for their turn; more are answered "busy, retry later" (commands run one at a
time, and a write may take seconds: a deeper queue would only answer later than dispatch waits)."""
BUSY_LOG_EVERY_S = 1.0


def endpoint(settings: MqttSettings, station: str) -> Endpoint:
    """Connection parameters. The password file is read and the TLS context built now, so that a
    missing file or a bad certificate stops the start with a configuration error (exit 2) rather
    than failing every reconnect. (``heatgw check`` finds the same problems first, with their
    line: ``gateway.preflight``.)"""
    try:
        password = read_password(settings.password_file)
    except OSError as exc:
        raise ConfigError([f"mqtt.password_file: cannot read {settings.password_file}: {exc.strerror}"]) from None
    try:
        context = tls_context(settings.tls) if settings.tls is not None else None
    except TlsFileError as exc:
        raise ConfigError([f"mqtt.tls.{exc.field}: {exc}"]) from None
    return Endpoint(settings.host, settings.port, settings.client_id or f"heatgw-{station}", settings.keepalive_s,
                    settings.connect_timeout_s, settings.username, password, context)


class Publisher:
    """Keeps one MQTT session alive and moves the outbox through it. Run ``run()``; ``stop()`` ends it."""

    def __init__(
        self,
        settings: MqttSettings,
        identity: StationIdentity,
        outbox: AsyncOutbox,
        commands: CommandRegistry,
        meta: Callable[[], bytes],
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.outbox = outbox
        self.commands = commands
        self.topics = Topics(settings.topic_prefix, identity.station)
        # Built at each connection, not kept: at a hundred thousand tags the message is 5 MB that
        # would otherwise stay in memory for the rare reconnect. Built in a thread: that takes a
        # third of a second, which on the event loop would hold every poll back as long.
        self._meta = meta
        self._endpoint = endpoint(settings, identity.station)
        self._clock = clock
        self._rng = rng or random.Random()
        self._stopping = asyncio.Event()
        self.connected = asyncio.Event()
        self._connection: MqttConnection | None = None
        self._retained: dict[str, bytes] = {}  # current states (alarms), by topic below the station
        self.published_messages = 0  # PUBACKed messages, replays included, for the benchmark and the demo
        self.confirmed_messages = 0  # deleted from the outbox on the historian's confirmation
        commands.register(REPLAY_COMMAND, ReplayArgs, self._replay)  # commands come over this session
        self.connections = 0  # sessions established since start (the first one, then reconnects)
        self.busy_answers = 0  # commands answered "busy, retry later" since the start
        self._busy_log = Throttle(BUSY_LOG_EVERY_S)

    async def run(self) -> None:
        """Connect, serve, reconnect with backoff, until ``stop()``."""
        failures = 0
        while not self._stopping.is_set():
            try:
                connection = await MqttConnection.open(self._endpoint, self._will(), inbox_size=INBOX_SIZE,
                                                       overflow=self._answer_busy)
            except ConnectFailed as exc:
                failures += 1
                delay = self.settings.reconnect.delay(failures, self._rng)
                log.warning("mqtt connection failed", extra=kv(
                    broker=f"{self.settings.host}:{self.settings.port}", reason=str(exc), attempt=failures,
                    retry_in_s=round(delay, 1)))
                await self._pause(delay)
                continue
            failures = 0
            self.connections += 1
            await self._serve(connection)
            # A broker that accepts and then drops us at once must not be hammered.
            await self._pause(self.settings.reconnect.delay(1, self._rng))

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when asked to stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    def publish_retained(self, suffix: str, payload: bytes) -> None:
        """Publish a current state (an alarm's, the open events') retained on ``suffix`` below the
        station, now if connected and again on every connection, so a dashboard that subscribes
        later, or a broker that lost its retained store, sees the truth. Only the latest payload
        per topic is kept: it is state, not history (history goes through the outbox)."""
        self._retained[suffix] = payload
        if self._connection is not None:
            self._connection.publish(self.topics.of(suffix), payload, qos=1, retain=True)

    async def restate(self, identity: StationIdentity, meta: Callable[[], bytes]) -> None:
        """A reload changed the station: the retained status (its config hash) and meta (its
        tags) say so now if connected, and on every connection from now on."""
        self.identity, self._meta = identity, meta
        if (connection := self._connection) is not None:
            stats = await self.outbox.stats()
            connection.publish(self.topics.status, birth(identity, self._clock(), stats.pending_messages,
                                                         stats.dropped_messages), qos=1, retain=True)
            connection.publish(self.topics.meta, await asyncio.to_thread(meta), qos=1, retain=True)

    def stop(self) -> None:
        """Ask ``run()`` to publish the offline status, disconnect and return."""
        self._stopping.set()

    def _will(self) -> Will:
        return Will(self.topics.status, death("connection lost", None))

    async def _serve(self, connection: MqttConnection) -> None:
        """One connection's life: birth, meta, commands, telemetry, until it drops or we stop."""
        tasks: list[asyncio.Task[None]] = []
        try:
            stats = await self.outbox.stats()
            status = birth(self.identity, self._clock(), stats.pending_messages, stats.dropped_messages)
            connection.publish(self.topics.status, status, retain=True)
            connection.publish(self.topics.meta, await asyncio.to_thread(self._meta), retain=True)
            await connection.subscribe(self.topics.commands)
            await connection.subscribe(self.topics.delivered)
            log.info("mqtt connected", extra=kv(broker=f"{self.settings.host}:{self.settings.port}",
                                                client_id=self._endpoint.client_id, backlog=stats.pending_messages,
                                                last_seq=stats.last_seq))
            self.connected.set()
            self._connection = connection
            # The retained states in the same step as the connection becomes ``_connection``: one
            # that changed during the subscriptions above is in ``_retained`` already, and every
            # later change is published by ``publish_retained`` itself.
            for suffix, payload in self._retained.items():
                connection.publish(self.topics.of(suffix), payload, retain=True)
            tasks = [asyncio.create_task(self._pump(connection), name="mqtt-telemetry"),
                     asyncio.create_task(self._answer_commands(connection), name="mqtt-commands")]
            stopping = asyncio.create_task(self._stopping.wait())
            ends: list[asyncio.Future[Any]] = [connection.closed, stopping, *tasks]
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            if self._stopping.is_set() and not connection.closed.done():
                await self._say_goodbye(connection)
            else:
                log.warning("mqtt connection lost", extra=kv(reason=connection.closed.result()))
        except (ConnectFailed, ConnectionLost, TimeoutError) as exc:
            log.warning("mqtt session ended", extra=kv(reason=str(exc) or type(exc).__name__))
        except Exception:  # noqa: BLE001 - the session must outlive a failing disk or a bug
            log.exception("mqtt session failed; reconnecting")
        finally:
            self.connected.clear()
            self._connection = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            connection.abort()

    async def _say_goodbye(self, connection: MqttConnection) -> None:
        """Retained ``offline``/``shutdown`` status, acknowledged, then DISCONNECT (no will)."""
        try:
            async with asyncio.timeout(STATUS_TIMEOUT_S):
                await connection.publish(self.topics.status, death("shutdown", self._clock()), retain=True)
        except (ConnectionLost, TimeoutError) as exc:
            log.warning("offline status not acknowledged; the broker will publish the will", extra=kv(
                reason=str(exc) or type(exc).__name__))
        await connection.disconnect()
        log.info("mqtt disconnected", extra=kv(reason="shutdown"))

    async def _pump(self, connection: MqttConnection) -> None:
        """Outbox -> broker, in sequence order, at most ``max_inflight`` awaiting PUBACK.

        A PUBACK frees a place in the window and nothing else: the message stays in the outbox
        until the historian confirms it (``_take_confirmation``).
        """
        window = self.settings.max_inflight
        inflight: set[int] = set()
        slot_freed = asyncio.Event()
        cursor = 0  # highest sequence number sent on this connection

        def settled(seq: int, done: asyncio.Future[None]) -> None:
            inflight.discard(seq)
            slot_freed.set()
            if not done.cancelled() and done.exception() is None:
                self.published_messages += 1

        while True:
            while len(inflight) >= window:
                slot_freed.clear()
                await slot_freed.wait()
            stored = self.outbox.last_seq
            entries = await self.outbox.pending(cursor, window - len(inflight))
            if not entries:
                # Everything up to ``stored`` was sent or dropped by the cap: wait for more.
                cursor = max(cursor, stored)
                await self.outbox.wait_beyond(cursor)
                continue
            for entry in entries:
                done = connection.publish(self.topics.of(entry.topic), entry.payload, qos=1)
                inflight.add(entry.seq)
                done.add_done_callback(functools.partial(settled, entry.seq))
                cursor = entry.seq

    async def _take_confirmation(self, payload: bytes) -> None:
        """Delete what the historian confirms it holds (the retained ``delivered``).

        A confirmation naming numbers this outbox never gave is refused whole: it belongs to an
        earlier life of the station (a replaced outbox restarts at 1), and obeying it would delete
        messages nobody has.
        """
        try:
            confirmation = parse_delivered(payload)
        except ContractError as exc:
            log.warning("confirmation ignored: not the contract's shape", extra=kv(reason=str(exc)))
            return
        if confirmation.highest > self.outbox.last_seq:
            log.warning("confirmation ignored: it names numbers this outbox never gave", extra=kv(
                confirmed=confirmation.highest, last_seq=self.outbox.last_seq))
            return
        deleted = await self.outbox.confirm(confirmation.upto, confirmation.ranges)
        self.confirmed_messages += deleted
        if deleted:
            log.debug("confirmed by the historian", extra=kv(upto=confirmation.upto, deleted=deleted))

    async def _replay(self, args: ReplayArgs, command: Command) -> dict[str, int]:
        """``cmd/replay``: send ``from_seq..to_seq`` again from the outbox, a window at a time, and
        say what the cap dropped of it: the historian counts those as lost, and only those."""
        connection = self._connection
        if connection is None:
            raise Refused("not connected")
        if args.to_seq > self.outbox.last_seq:
            raise Refused(f"to_seq {args.to_seq} was never given: the last seq is {self.outbox.last_seq}")
        found = await self.outbox.replay(args.from_seq, args.to_seq)
        window = self.settings.max_inflight
        for start in range(0, len(found.entries), window):
            await asyncio.gather(*(connection.publish(self.topics.of(entry.topic), entry.payload, qos=1)
                                   for entry in found.entries[start:start + window]))
        self.published_messages += len(found.entries)
        answer = ReplayAnswer(found.first, found.last, len(found.entries), found.dropped, found.absent)
        log.info("replayed on request", extra=kv(origin=command.origin, from_seq=found.first, to_seq=found.last,
                                                  resent=answer.resent, dropped=found.dropped or "-",
                                                  absent=answer.absent))
        return answer.result()

    def _answer_busy(self, connection: MqttConnection, message: Incoming) -> None:
        """A command arriving while ``INBOX_SIZE`` wait is answered "busy, retry later" at once:
        bounded memory, and still an answer. Logged once per ``BUSY_LOG_EVERY_S`` with a count."""
        name = self.topics.command_name(message.topic)
        connection.publish(self.topics.result(name), self.commands.busy(message.payload, connection.incoming.qsize()))
        self.busy_answers += 1
        if self._busy_log.allow("busy", time.monotonic()) is not None:
            log.warning("commands refused: busy, retry later", extra=kv(
                command=name, waiting=connection.incoming.qsize(), refused_busy=self.busy_answers))

    async def _answer_commands(self, connection: MqttConnection) -> None:
        while True:
            message = await connection.incoming.get()
            if message.topic == self.topics.delivered:
                await self._take_confirmation(message.payload)
                continue
            name = self.topics.command_name(message.topic)
            answer = await self.commands.handle(name, message.payload)
            connection.publish(self.topics.result(name), answer, qos=1)
