"""TLS with a CA made here, passwords, and the documented ACL: only dispatch can make the gateway act."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.historian.bridge import Bridge
from gateway.historian.settings import HistorianSettings
from sim.modbus_server import StationModbusServer, plc_settings
from tests.mqtt.conftest import (
    STATION,
    TOPIC,
    Pki,
    Subscriber,
    broker_lines,
    gateway_config,
    station_with_mqtt,
    until,
)
from tooling.devstack import Mosquitto

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {STATION: "station-secret", "dispatch": "dispatch-secret", "historian": "historian-secret"}


def documented_acl() -> str:
    """The ACL the docs document (docs/dispatch/broker-security.md), so the documented setup is the tested one."""
    page = (ROOT / "docs" / "dispatch" / "broker-security.md").read_text()
    block = re.search(r"<!-- mosquitto-acl -->\n```text\n(.*?)```", page, re.S)
    assert block is not None, "the broker security page lost its Mosquitto ACL block"
    return block[1]


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    directory = tmp_path / "mosquitto"
    broker = Mosquitto(directory)
    passwords = broker.password_file(PASSWORDS)
    acl = directory / "acl"
    acl.write_text(documented_acl())
    broker.extra_config = broker_lines(
        f"cafile {pki.ca}", f"certfile {pki.server_cert}", f"keyfile {pki.server_key}",
        "require_certificate true", "use_identity_as_username false",
        f"password_file {passwords}", f"acl_file {acl}", "allow_anonymous false")
    broker.start()
    yield broker
    broker.stop()


def account(broker: Mosquitto, pki: Pki, user: str) -> Subscriber:
    """A subscriber logged in as ``user``, with a client certificate (the broker requires one)."""
    tls = (pki.ca, pki.client_cert, pki.client_key)
    return Subscriber(broker.port, username=user, password=PASSWORDS[user], tls=tls)


def secure_station(tmp_path: Path, server: StationModbusServer, broker: Mosquitto, pki: Pki, *,
                   ca: Path, password: str = PASSWORDS[STATION]) -> dict[str, Any]:
    secret = tmp_path / "mqtt-password"
    secret.write_text(password + "\n")
    tls = {"ca_file": str(ca), "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}
    return station_with_mqtt(server.port, broker.port, username=STATION, password_file=str(secret), tls=tls)


async def test_tls_connects_with_the_right_ca_and_refuses_a_wrong_one_or_a_wrong_password(
        tmp_path: Path, pki: Pki, tls_broker: Mosquitto, station_server: StationModbusServer,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.mqtt.publisher")
    with account(tls_broker, pki, "dispatch") as dispatch:
        for ca, password, reason in [
            (pki.wrong_ca, PASSWORDS[STATION], "TLS certificate verification failed: "),
            (pki.ca, "guessed", "broker refused the connection: Not authorized"),  # OpenSSL words the first
        ]:
            caplog.clear()
            config = gateway_config(secure_station(tmp_path, station_server, tls_broker, pki, ca=ca, password=password))
            async with Gateway(config, state_dir=tmp_path / "state") as gateway:
                assert gateway.mqtt is not None
                await until(lambda: any("mqtt connection failed" in r.message for r in caplog.records), 10,
                            "a refused connection")
                assert not gateway.mqtt.publisher.connected.is_set()
            failures = [r for r in caplog.records if r.getMessage() == "mqtt connection failed"]
            assert failures[0].fields["reason"].startswith(reason)  # type: ignore[attr-defined]
        assert dispatch.statuses() == [], "nothing may reach the broker without trust both ways"

        config = gateway_config(secure_station(tmp_path, station_server, tls_broker, pki, ca=pki.ca))
        async with Gateway(config, state_dir=tmp_path / "state") as gateway:
            await until(lambda: bool(dispatch.seqs()), 10, "telemetry over TLS")
            assert dispatch.statuses()[0]["state"] == "online"


async def test_only_the_dispatch_account_can_make_the_gateway_act(
        tmp_path: Path, pki: Pki, tls_broker: Mosquitto, station_server: StationModbusServer) -> None:
    plc = station_server.station.plc
    before = plc_settings(plc)
    target = round(before.supply_setpoint_c) + 2.0  # within max_step of the present setpoint
    config = gateway_config(secure_station(tmp_path, station_server, tls_broker, pki, ca=pki.ca))

    def command(command_id: str) -> str:
        return json.dumps({"id": command_id, "origin": "dispatch/test", "expires": time.time() + 60,
                           "args": {"tag": "supply_setpoint", "value": target}})

    with account(tls_broker, pki, "dispatch") as dispatch, account(tls_broker, pki, "historian") as historian:
        async with Gateway(config, state_dir=tmp_path / "state"):
            await until(lambda: bool(dispatch.seqs()), 10, "the gateway online")
            # Read-only accounts (and the station itself) publish into the void: the broker drops it.
            historian.publish(f"{TOPIC}/cmd/write", command("from-historian"))
            await asyncio.sleep(2)
            assert dispatch.on(f"{TOPIC}/cmd/write/result") == []
            assert plc_settings(plc) == before, "a command from a read-only account changed the PLC"

            dispatch.publish(f"{TOPIC}/cmd/write", command("from-dispatch"))
            await until(lambda: bool(dispatch.on(f"{TOPIC}/cmd/write/result")), 10, "the answer to dispatch")
            answer = dispatch.on(f"{TOPIC}/cmd/write/result")[0].json()
            assert (answer["id"], answer["ok"]) == ("from-dispatch", True), answer
            assert plc.supply_setpoint_c == pytest.approx(target)
            assert [m.json()["id"] for m in historian.on(f"{TOPIC}/cmd/write/result")] == ["from-dispatch"]


async def test_the_historian_bridge_logs_in_with_the_stations_broker_settings_and_trusts_only_its_ca(
        tmp_path: Path, pki: Pki, tls_broker: Mosquitto) -> None:
    # One broker model and one login path for both ends: the same password file and TLS files a
    # station uses get the bridge in, and a CA the broker's certificate does not chain to keeps it out.
    secret = tmp_path / "historian-password"
    secret.write_text(PASSWORDS["historian"] + "\n")
    for ca, connects in ((pki.wrong_ca, False), (pki.ca, True)):
        settings = HistorianSettings.model_validate({
            "instance": "tls", "state_dir": str(tmp_path / "historian"),
            "mqtt": {"host": "127.0.0.1", "port": tls_broker.port, "username": "historian",
                     "password_file": str(secret), "reconnect": {"initial_s": 0.2, "max_s": 1},
                     "tls": {"ca_file": str(ca), "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}},
            "influxdb": {"url": "http://127.0.0.1:9", "token": "unused", "org": "heating", "bucket": "stations"}})
        bridge = Bridge(settings)
        bridge.start()
        try:
            if connects:
                await until(lambda: bridge._client.is_connected(), 10, "the bridge logged in over TLS")  # noqa: SLF001
            else:
                await asyncio.sleep(2)
                assert not bridge._client.is_connected()  # noqa: SLF001
        finally:
            bridge.close()
