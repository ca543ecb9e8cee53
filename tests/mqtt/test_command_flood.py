"""A flood of commands through a real broker: every command gets an answer, the inbox stays bounded,
telemetry keeps flowing."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from gateway.app import Gateway
from tooling.devstack import Mosquitto
from gateway.mqtt.publisher import INBOX_SIZE
from sim.modbus_server import StationModbusServer
from tests.mqtt.conftest import TOPIC, Subscriber, broker_lines, gateway_config, station_with_mqtt, until

FLOOD = 5000


def rss_bytes() -> int:
    """The resident memory of this process (the gateway runs in it) now, not its peak."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) * 1024


def send_all(port: int, topic: str, payloads: list[str]) -> None:
    """Publish as fast as one client can (QoS 0: no waiting for acknowledgements)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="flood")
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        sent = [client.publish(topic, payload, qos=0) for payload in payloads]
        sent[-1].wait_for_publish(60)
    finally:
        client.disconnect()
        client.loop_stop()


async def test_every_command_of_a_flood_is_answered_busy_ones_included_while_memory_and_telemetry_hold(
        tmp_path: Path, station_server: StationModbusServer) -> None:
    # The broker must not drop anything itself (its default queue is 1000 messages per client):
    # what is measured is the gateway.
    broker = Mosquitto(tmp_path / "mosquitto", extra_config=broker_lines("allow_anonymous true",
                                                                         "max_queued_messages 0"))
    broker.start()
    try:
        data = station_with_mqtt(station_server.port, broker.port)
        # A write that really goes to the PLC each time (no min_interval_s, no max_step): the
        # gateway answers much slower than dispatch can send, so its inbox fills.
        data["devices"]["plc"]["tags"]["pump_frequency_setpoint"]["writable"] = {"min": 30, "max": 50}
        config = gateway_config(data)
        expires = time.time() + 600
        flood = [json.dumps({"id": f"f{i}", "origin": "dispatch/flood", "expires": expires,
                             "args": {"tag": "pump_frequency_setpoint", "value": 40 + i % 2}}) for i in range(FLOOD)]
        with Subscriber(broker.port) as dispatch:
            async with Gateway(config, state_dir=tmp_path / "state") as gateway:
                await until(lambda: bool(dispatch.seqs()), 10, "the gateway online")
                before_rss = rss_bytes()
                await asyncio.to_thread(send_all, broker.port, f"{TOPIC}/cmd/write", flood)
                sent_at_seq = max(dispatch.seqs())
                await until(lambda: len(dispatch.on(f"{TOPIC}/cmd/write/result")) >= FLOOD, 90,
                            "an answer to every command of the flood")
                await until(lambda: max(dispatch.seqs()) > sent_at_seq + 2, 10, "telemetry after the flood")
                grown = rss_bytes() - before_rss
                assert gateway.mqtt is not None
                busy_counted = gateway.mqtt.publisher.busy_answers
    finally:
        broker.stop()

    answers: dict[str, dict[str, object]] = {}
    for message in dispatch.on(f"{TOPIC}/cmd/write/result"):
        answer = message.json()
        answers.setdefault(str(answer["id"]), answer)
    assert set(answers) == {f"f{i}" for i in range(FLOOD)}, "a command without an answer"
    busy = [a for a in answers.values() if "busy, retry later" in str(a.get("reason", ""))]
    done = [a for a in answers.values() if a["ok"]]
    assert busy, "the flood never filled the inbox: nothing was tested"
    assert len(busy) == busy_counted
    assert len(done) >= INBOX_SIZE, "commands that found room were executed"
    assert all(a["ok"] or a.get("reason") for a in answers.values()), "a refusal without a reason"
    assert grown < 100 * 1024 * 1024, f"memory grew by {grown / 1e6:.0f} MB under the flood"
