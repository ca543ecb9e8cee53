"""One MQTT connection driven by the asyncio loop: paho speaks the protocol, asyncio does the I/O.

paho's socket callbacks hand its socket to ``loop.add_reader`` / ``add_writer``, and a small task
calls ``loop_misc`` for keepalive, so no paho thread exists and every paho callback runs on the
event loop's thread (aiomqtt works the same way; doing it here is about a hundred lines and keeps
PUBACK handling, which the outbox depends on, in plain view).

The one blocking step is ``connect``: name lookup, TCP connect and the TLS handshake. It runs on a
worker thread so a cellular link that takes seconds to answer never stalls polling. Socket
callbacks paho makes on that thread are ignored; the socket is registered with the loop when
``connect`` returns (paho has only queued the CONNECT packet by then; the loop writes it).

A connection is used once: after it drops, the next attempt builds a new one. Messages that were
waiting for a PUBACK fail with ``ConnectionLost``; the outbox still holds them and the publisher
sends them again on the next connection, so paho's own session state is never needed
(``clean_session=True``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.logs import kv

log = logging.getLogger(__name__)

MISC_INTERVAL_S = 1.0


class ConnectFailed(Exception):
    """The broker could not be reached or refused us; ``str()`` says why in an operator's words."""


class ConnectionLost(Exception):
    """The connection dropped while a message was waiting for its acknowledgement."""


@dataclass(frozen=True, slots=True)
class Will:
    """The message the broker publishes for us if we vanish without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and as whom to connect."""

    host: str
    port: int
    client_id: str
    keepalive_s: int
    connect_timeout_s: float
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message received on a subscription."""

    topic: str
    payload: bytes


class MqttConnection:
    """A connected MQTT 3.1.1 session. Create with ``await MqttConnection.open(...)``."""

    def __init__(self, endpoint: Endpoint, will: Will, inbox_size: int,
                 overflow: Callable[[MqttConnection, Incoming], None] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.endpoint = endpoint
        self.incoming: asyncio.Queue[Incoming] = asyncio.Queue(inbox_size)
        self.incoming_dropped = 0
        self._overflow = overflow
        self.closed: asyncio.Future[str] = self._loop.create_future()
        self._connected: asyncio.Future[None] = self._loop.create_future()
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._subscribed: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._misc: asyncio.Task[None] | None = None
        self._sock: Any = None
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=endpoint.client_id, clean_session=True,
                             protocol=MQTTProtocolVersion.MQTTv311, reconnect_on_failure=False)
        client.connect_timeout = endpoint.connect_timeout_s
        client.max_inflight_messages_set(0)  # the publisher bounds what is in flight
        if endpoint.username is not None:
            client.username_pw_set(endpoint.username, endpoint.password)
        if endpoint.tls is not None:
            client.tls_set_context(endpoint.tls)
        client.will_set(will.topic, will.payload, will.qos, will.retain)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        self._client = client

    @classmethod
    async def open(cls, endpoint: Endpoint, will: Will, *, inbox_size: int = 64,
                   overflow: Callable[[MqttConnection, Incoming], None] | None = None) -> MqttConnection:
        """Connect and wait for the broker's CONNACK; raise ``ConnectFailed`` with a reason.

        ``incoming`` holds at most ``inbox_size`` messages; one that arrives when it is full goes
        to ``overflow`` (with this connection, on the loop's thread, at once), or is dropped and
        counted when there is none.
        """
        connection = cls(endpoint, will, inbox_size, overflow)
        try:
            await connection._connect()
        except BaseException:
            connection.abort()
            raise
        return connection

    async def _connect(self) -> None:
        endpoint = self.endpoint
        try:
            await self._loop.run_in_executor(None, self._client.connect, endpoint.host, endpoint.port,
                                             endpoint.keepalive_s)
        except ssl.SSLCertVerificationError as exc:
            raise ConnectFailed(f"TLS certificate verification failed: {exc.verify_message}") from None
        except ssl.SSLError as exc:
            raise ConnectFailed(f"TLS handshake failed: {exc.reason or exc}") from None
        except TimeoutError:
            raise ConnectFailed(f"no answer within {endpoint.connect_timeout_s:g} s") from None
        except OSError as exc:
            raise ConnectFailed(exc.strerror or str(exc)) from None
        self._sock = self._client.socket()
        self._loop.add_reader(self._sock, self._read)
        self._loop.add_writer(self._sock, self._write)  # CONNECT is queued; paho unregisters when done
        self._misc = self._loop.create_task(self._keepalive(), name="mqtt-keepalive")
        try:
            async with asyncio.timeout(endpoint.connect_timeout_s):
                await asyncio.shield(self._connected)
        except TimeoutError:
            raise ConnectFailed(f"no CONNACK within {endpoint.connect_timeout_s:g} s") from None

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> asyncio.Future[None]:
        """Queue a message; the future completes on PUBACK (QoS 1) or once written (QoS 0)."""
        done: asyncio.Future[None] = self._loop.create_future()
        if self.closed.done():
            _fail(done, ConnectionLost(self.closed.result()))
            return done
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            _fail(done, ConnectionLost(paho.error_string(info.rc)))
        elif info.is_published():
            done.set_result(None)
        else:
            self._acks[info.mid] = done
        return done

    async def subscribe(self, topic: str, qos: int = 1) -> None:
        """Subscribe and wait for the SUBACK; a refused subscription raises ``ConnectFailed``."""
        result, mid = self._client.subscribe(topic, qos)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise ConnectionLost(paho.error_string(result))
        granted: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        self._subscribed[mid] = granted
        async with asyncio.timeout(self.endpoint.connect_timeout_s):
            codes = await granted
        if any(code.is_failure for code in codes):
            raise ConnectFailed(f"subscription to {topic} refused: {codes[0]}")

    async def disconnect(self, timeout_s: float = 5.0) -> None:
        """Send DISCONNECT (the broker then drops the will) and wait for the socket to close."""
        if not self.closed.done():
            self._client.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(self.closed)
        self.abort()

    def abort(self) -> None:
        """Drop the connection without DISCONNECT (the broker will publish the will)."""
        if self._misc is not None:
            self._misc.cancel()
        self._client._sock_close()  # noqa: SLF001 - paho has no public close without DISCONNECT
        self._lost("closed by the gateway")

    # -- I/O, driven by the loop ---------------------------------------------------------------

    def _read(self) -> None:
        self._client.loop_read()
        # TLS may hold decrypted bytes the selector cannot see: read until they are consumed.
        sock = self._client.socket()
        while isinstance(sock, ssl.SSLSocket) and sock.pending() and self._client.socket() is sock:
            self._client.loop_read()

    def _write(self) -> None:
        self._client.loop_write()

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(MISC_INTERVAL_S)
            if self._client.loop_misc() == MQTTErrorCode.MQTT_ERR_NO_CONN:
                return

    def _on_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def _on_socket_close(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        if self._on_loop_thread() and sock is self._sock:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
            self._sock = None

    def _on_register_write(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        if self._on_loop_thread() and sock is self._sock:
            self._loop.add_writer(sock, self._write)

    def _on_unregister_write(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        if self._on_loop_thread() and sock is self._sock:
            self._loop.remove_writer(sock)

    # -- protocol events (always on the loop thread) --------------------------------------------

    def _on_connect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        if self._connected.done():
            return
        if reason.is_failure:
            self._connected.set_exception(ConnectFailed(f"broker refused the connection: {reason}"))
        else:
            self._connected.set_result(None)

    def _on_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode,
                       _props: Any) -> None:
        self._lost(str(reason) if reason.is_failure else "disconnected")

    def _on_publish(self, _client: paho.Client, _userdata: Any, mid: int, _reason: ReasonCode, _props: Any) -> None:
        done = self._acks.pop(mid, None)
        if done is not None and not done.done():
            done.set_result(None)

    def _on_subscribe(self, _client: paho.Client, _userdata: Any, mid: int, codes: list[ReasonCode],
                      _props: Any) -> None:
        granted = self._subscribed.pop(mid, None)
        if granted is not None and not granted.done():
            granted.set_result(codes)

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        incoming = Incoming(message.topic, bytes(message.payload))
        try:
            self.incoming.put_nowait(incoming)
        except asyncio.QueueFull:
            if self._overflow is not None:
                self._overflow(self, incoming)
                return
            self.incoming_dropped += 1
            log.warning("incoming MQTT message dropped: inbox full", extra=kv(
                topic=message.topic, dropped=self.incoming_dropped))

    def _lost(self, reason: str) -> None:
        """Settle everything that waits on this connection."""
        if not self._connected.done():
            _fail(self._connected, ConnectFailed(f"connection closed before CONNACK: {reason}"))
        if not self.closed.done():
            self.closed.set_result(reason)
        waiters: list[asyncio.Future[Any]] = [*self._acks.values(), *self._subscribed.values()]
        for waiter in waiters:
            if not waiter.done():
                _fail(waiter, ConnectionLost(reason))
        self._acks.clear()
        self._subscribed.clear()


def _fail(future: asyncio.Future[Any], exc: Exception) -> None:
    """Fail ``future`` without asyncio's "exception never retrieved" warning: fire-and-forget
    publishes (status, results) are allowed to be lost with the connection, and the loss is logged
    by whoever notices the connection drop."""
    future.set_exception(exc)
    future.exception()
