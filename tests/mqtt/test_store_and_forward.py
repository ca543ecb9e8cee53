"""Nothing lost when the link or the process dies: a real broker, the simulated station, and the
gateway in-process (broker outage) or as a real process killed with SIGKILL."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml

from gateway.app import Gateway
from gateway.mqtt.service import outbox_path
from sim.modbus_server import StationModbusServer
from tests.mqtt.conftest import (
    STATION,
    TOPIC,
    Subscriber,
    assert_in_order_without_gap,
    broker_lines,
    gateway_config,
    station_with_mqtt,
    until,
)
from tooling.devstack import Mosquitto, stop_process

ROOT = Path(__file__).resolve().parents[2]
OUTAGE_S = 30.0


def stored(state_dir: Path) -> tuple[int, list[int]]:
    """(last sequence number given, numbers still waiting) as the outbox file says."""
    with sqlite3.connect(outbox_path(state_dir, STATION)) as db:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        waiting = [seq for (seq,) in db.execute("SELECT seq FROM outbox ORDER BY seq")]
    return (row[0] if row else 0), waiting


def duplicates_are_identical(subscriber: Subscriber) -> None:
    """A number seen twice must be the same message: a number is never reused for other data."""
    first: dict[int, bytes] = {}
    for message in subscriber.on(f"{TOPIC}/telemetry"):
        seq = message.json()["seq"]
        assert first.setdefault(seq, message.payload) == message.payload, f"seq {seq} reused for other data"


async def test_broker_outage_of_30_s_loses_nothing_and_replays_in_order(
        tmp_path: Path, station_server: StationModbusServer) -> None:
    # The broker keeps the subscriber's session across its own restart, as a production broker
    # with persistence would: the test checks the gateway, not the broker's memory.
    store = tmp_path / "mosquitto"
    broker = Mosquitto(store, extra_config=broker_lines(
        "allow_anonymous true", "persistence true", f"persistence_location {store}/", "max_queued_messages 0"))
    broker.start()
    subscriber = Subscriber(broker.port, client_id="historian-test", persistent=True)
    config = gateway_config(station_with_mqtt(station_server.port, broker.port))
    try:
        subscriber.start()
        async with Gateway(config, state_dir=tmp_path / "state") as gateway:
            assert gateway.mqtt is not None
            outbox = gateway.mqtt.outbox
            await until(lambda: len(subscriber.seqs()) >= 5, 15, "live telemetry before the outage")

            broker.stop()
            stopped_at_seq = outbox.last_seq
            await asyncio.sleep(OUTAGE_S)
            backlog = outbox.last_seq - stopped_at_seq
            assert backlog >= 50, f"the gateway should have kept storing during the outage (only {backlog})"
            restarted = time.time()
            broker.start()

            target = outbox.last_seq + 10  # the whole backlog, then live messages after it
            await until(lambda: max(subscriber.seqs(), default=0) >= target, 30, f"seq {target} after the outage")
            # The birth is retained again, with this connection's time, for anyone who looks now.
            with Subscriber(broker.port, topics=(f"{TOPIC}/status",)) as late:
                await until(lambda: bool(late.statuses()), 5, "the retained status")
                status = late.statuses()[-1]
                assert late.on(f"{TOPIC}/status")[-1].retain
            assert status["state"] == "online" and status["ts"] >= restarted
            assert status["config_hash"] == gateway.mqtt.identity.config_hash
    finally:
        subscriber.stop()
        broker.stop()

    seqs = subscriber.seqs()
    assert_in_order_without_gap(seqs)
    duplicates_are_identical(subscriber)
    last, waiting = stored(tmp_path / "state")
    assert set(seqs) | set(waiting) == set(range(1, last + 1)), "every stored message was delivered or still waits"
    assert max(seqs) > stopped_at_seq + backlog


def write_config(directory: Path, data: dict[str, object]) -> Path:
    path = directory / "station.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start_gateway(config: Path, state_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(config), "--state-dir", str(state_dir)],
            stdout=sink, stderr=sink, cwd=ROOT)


async def test_sigkill_mid_run_loses_no_stored_message_and_the_will_announces_it(
        tmp_path: Path, station_server: StationModbusServer, broker: Mosquitto) -> None:
    config = write_config(tmp_path, station_with_mqtt(station_server.port, broker.port))
    state_dir, log = tmp_path / "state", tmp_path / "gateway.log"
    process: subprocess.Popen[bytes] | None = None
    with Subscriber(broker.port) as subscriber:
        try:
            process = start_gateway(config, state_dir, log)
            await until(lambda: max(subscriber.seqs(), default=0) >= 20, 20, "telemetry from the first run")
            first_start = next(s for s in subscriber.statuses() if s["state"] == "online")["started"]

            process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=10) == -signal.SIGKILL
            killed_at = time.time()
            await until(lambda: subscriber.statuses()[-1]["state"] == "offline", 5, "the last will")
            assert subscriber.statuses()[-1] == {"state": "offline", "reason": "connection lost"}
            assert subscriber.on(f"{TOPIC}/status")[-1].at - killed_at < 3, "the will comes when the socket drops"
            last_before, _ = stored(state_dir)
            assert last_before >= max(subscriber.seqs())

            process = start_gateway(config, state_dir, log)
            target = last_before + 20
            await until(lambda: max(subscriber.seqs(), default=0) >= target, 20, f"seq {target} after the restart")
            births = [s for s in subscriber.statuses() if s["state"] == "online"]
            assert births[-1]["started"] > first_start and births[-1]["config_hash"] == births[0]["config_hash"]

            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0, log.read_text()[-3000:]
            await until(lambda: subscriber.statuses()[-1].get("reason") == "shutdown", 5, "the clean offline status")
        finally:
            stop_process(process)

    seqs = subscriber.seqs()
    assert_in_order_without_gap(seqs)
    duplicates_are_identical(subscriber)
    assert set(range(1, last_before + 1)) <= set(seqs), "everything stored before the kill was delivered"
    last, waiting = stored(state_dir)
    assert set(seqs) | set(waiting) == set(range(1, last + 1))
    assert "Traceback" not in log.read_text()


async def test_a_frozen_gateway_is_announced_dead_after_its_keepalive_and_reborn_after(
        tmp_path: Path, station_server: StationModbusServer, broker: Mosquitto) -> None:
    """The usual cellular failure: no FIN, no RST, just silence. The broker's keepalive check
    publishes the will (MQTT says after 1.5 keepalives; Mosquitto 2.0 checks on its own period
    and was measured at about 1.9), and the thawed gateway finds its socket closed and connects again."""
    keepalive_s = 5
    config = write_config(tmp_path, station_with_mqtt(station_server.port, broker.port, keepalive_s=keepalive_s))
    process: subprocess.Popen[bytes] | None = None
    with Subscriber(broker.port) as subscriber:
        try:
            process = start_gateway(config, tmp_path / "state", tmp_path / "gateway.log")
            await until(lambda: len(subscriber.seqs()) >= 3, 20, "the gateway online")
            process.send_signal(signal.SIGSTOP)
            frozen_at = time.time()
            await until(lambda: subscriber.statuses()[-1]["state"] == "offline", 3 * keepalive_s, "the last will")
            silent_for = subscriber.on(f"{TOPIC}/status")[-1].at - frozen_at
            assert 1.5 * keepalive_s <= silent_for <= 2.5 * keepalive_s, silent_for
            assert subscriber.statuses()[-1] == {"state": "offline", "reason": "connection lost"}

            seen = len(subscriber.seqs())
            process.send_signal(signal.SIGCONT)
            await until(lambda: subscriber.statuses()[-1]["state"] == "online", 10, "a new birth")
            await until(lambda: len(subscriber.seqs()) > seen + 3, 10, "telemetry again")
        finally:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGCONT)
            stop_process(process)
    assert_in_order_without_gap(subscriber.seqs())
