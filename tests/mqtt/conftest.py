"""Fixtures for the MQTT tests: a real Mosquitto, a paho subscriber that records everything, a
test CA, and the simulated station's configuration with an ``mqtt`` section."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.config import GatewayConfig
from tests.gateway.conftest import station_config, station_server  # noqa: F401 - a fixture used here
from tooling.devstack import Mosquitto

STATION = "demo-01"
PREFIX = "heatgw"
TOPIC = f"{PREFIX}/{STATION}"
DURABLE_TOPICS = (f"{TOPIC}/telemetry", f"{TOPIC}/control", f"{TOPIC}/events")


def broker_lines(*extra: str) -> list[str]:
    """Mosquitto config lines. As root, mosquitto would switch to its own user, which cannot read
    the test's private temporary directory: keep it root (it only listens on loopback)."""
    lines = list(extra)
    if os.geteuid() == 0:
        lines.append("user root")
    return lines


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    service = Mosquitto(tmp_path / "mosquitto", extra_config=broker_lines("allow_anonymous true"))
    service.start()
    yield service
    service.stop()


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` without blocking the loop; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def mqtt_section(port: int, **overrides: Any) -> dict[str, Any]:
    """An ``mqtt:`` section for tests: fast batches, every sample reported, quick reconnects."""
    section: dict[str, Any] = {
        "host": "127.0.0.1", "port": port, "batch_max_age_s": 0.2, "integrity_interval_s": 0.1,
        "keepalive_s": 5, "connect_timeout_s": 3, "reconnect": {"initial_s": 0.2, "max_s": 1.0},
    }
    section.update(overrides)
    return section


def station_with_mqtt(modbus_port: int, broker_port: int, fast_s: float = 0.2, **overrides: Any) -> dict[str, Any]:
    """The demo station (as YAML data) on ``modbus_port``, publishing to ``broker_port``."""
    captured: dict[str, Any] = {}

    def edit(data: dict[str, Any]) -> None:
        data["mqtt"] = mqtt_section(broker_port, **overrides)
        data["groups"]["fast"]["interval_s"] = fast_s
        captured.update(data)

    station_config(modbus_port, edit)  # validates it
    return captured


def gateway_config(data: dict[str, Any]) -> GatewayConfig:
    return GatewayConfig.model_validate(data)


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """A paho client on its own thread recording every message on ``topics``.

    ``persistent=True`` keeps a broker-side session (clean_session false, QoS 1), so messages
    published while it is reconnecting after a broker restart are queued for it, as a historian's
    would be.
    """

    port: int
    topics: tuple[str, ...] = (f"{TOPIC}/#",)
    client_id: str = ""
    persistent: bool = False
    username: str | None = None
    password: str | None = None
    tls: tuple[Path, Path, Path] | None = None  # CA, client certificate, client key
    messages: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _client: mqtt.Client | None = None
    subscribed: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Subscriber:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             clean_session=not self.persistent)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls is not None:
            ca, cert, key = self.tls
            client.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key))
        client.reconnect_delay_set(1, 1)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_: self.subscribed.set()
        client.on_message = self._on_message
        client.connect("127.0.0.1", self.port, keepalive=10)
        client.loop_start()
        self._client = client
        if not self.subscribed.wait(10):
            raise RuntimeError("test subscriber did not get its SUBACK")
        return self

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def __enter__(self) -> Subscriber:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        assert self._client is not None
        self._client.publish(topic, payload, qos=qos).wait_for_publish(5)

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if not reason.is_failure:
            client.subscribe([(topic, 1) for topic in self.topics])

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(message.topic, bytes(message.payload), bool(message.retain), time.time()))

    def on(self, topic: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def seqs(self) -> list[int]:
        """Sequence numbers of the durable messages received (telemetry, controller state, the
        events stream: they share one sequence), in arrival order, duplicates included."""
        with self._lock:
            return [m.json()["seq"] for m in self.messages if m.topic in DURABLE_TOPICS]

    def statuses(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.on(f"{TOPIC}/status")]


def assert_in_order_without_gap(seqs: list[int], first: int = 1) -> None:
    """Every number from ``first`` to the highest, each new one exactly one above the highest so
    far; anything else must be a repeat of one already seen (a QoS 1 duplicate after a replay)."""
    highest = first - 1
    for position, seq in enumerate(seqs):
        if seq > highest:
            assert seq == highest + 1, f"gap or disorder at position {position}: {seq} after {highest}"
            highest = seq
    assert highest >= first, "no telemetry received"


# -- a test CA -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """File paths of a CA, a broker certificate for 127.0.0.1/localhost, a client certificate, and
    an unrelated CA (the "wrong" one)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    wrong_ca: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
                 issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
                 san: list[x509.GeneralName] | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer.subject if issuer is not None else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        assert issuer is not None
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                        critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_key, wrong_key = _key(), _key()
    ca = _certificate("heatgw test CA", ca_key, None, ca_key, ca=True)
    wrong = _certificate("heatgw test CA", wrong_key, None, wrong_key, ca=True)  # same name, other key
    server_key, client_key = _key(), _key()
    server = _certificate("localhost", server_key, ca, ca_key, san=[
        x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client = _certificate(STATION, client_key, ca, ca_key)
    return Pki(
        ca=_write_cert(ca, directory / "ca.pem"),
        server_cert=_write_cert(server, directory / "server.pem"),
        server_key=_write_key(server_key, directory / "server.key"),
        client_cert=_write_cert(client, directory / "client.pem"),
        client_key=_write_key(client_key, directory / "client.key"),
        wrong_ca=_write_cert(wrong, directory / "wrong-ca.pem"),
    )
