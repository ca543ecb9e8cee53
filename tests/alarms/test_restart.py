"""A gateway killed with alarms open comes back with the same states: nothing acknowledged is
raised again, what cleared meanwhile shows as returned, and no activation is published twice."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tooling.devstack import Mosquitto, stop_process
from sim.runner import SimRunner
from tests.gateway.conftest import demo_station
from tests.mqtt.conftest import TOPIC, Subscriber, station_with_mqtt, until

ROOT = Path(__file__).resolve().parents[2]


def start_gateway(config: Path, state_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(config), "--state-dir", str(state_dir)],
            stdout=sink, stderr=sink, cwd=ROOT)


def transitions(subscriber: Subscriber, alarm: str) -> list[str]:
    """The alarm's transitions, each once: QoS 1 and the outbox's replay after the kill may deliver
    a message twice, always with the same ``seq``, which is how a receiver tells a repeat."""
    by_seq = {m.json()["seq"]: m.json() for m in subscriber.on(f"{TOPIC}/events")}
    return [event["state"] for _, event in sorted(by_seq.items()) if event["id"] == alarm]


def retained(port: int, alarm: str) -> dict[str, Any]:
    with Subscriber(port, topics=(f"{TOPIC}/alarms/{alarm}",)) as late:
        deadline = time.monotonic() + 5
        while not late.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        assert late.messages, f"no retained state for {alarm}"
        return late.messages[-1].json()  # type: ignore[no-any-return]


async def test_sigkill_with_alarms_open_keeps_their_states_without_a_duplicate_activation(
        tmp_path: Path, broker: Mosquitto) -> None:
    async with SimRunner(demo_station(), speed=60.0, tick_s=0.05, control_port=None) as runner:
        await killed_and_restarted(tmp_path, runner, broker)


async def killed_and_restarted(tmp_path: Path, runner: SimRunner, broker: Mosquitto) -> None:
    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump(station_with_mqtt(runner.server.port, broker.port), allow_unicode=True))
    state_dir, log = tmp_path / "state", tmp_path / "gateway.log"
    faults = runner.station.faults
    process: subprocess.Popen[bytes] | None = None
    with Subscriber(broker.port) as dispatch:
        try:
            process = start_gateway(config, state_dir, log)
            await until(lambda: bool(dispatch.seqs()), 20, "telemetry from the first run")
            faults.pump_trip()
            faults.trip_interlock("overtemp")
            await until(lambda: "active" in transitions(dispatch, "pump_trip"), 10, "the pump trip")
            await until(lambda: "active" in transitions(dispatch, "overtemp_trip"), 10, "the over-temperature trip")
            dispatch.publish(f"{TOPIC}/cmd/alarm_ack", json.dumps({
                "id": "ack-1", "origin": "dispatch/zhang.wei", "expires": time.time() + 60,
                "args": {"alarm_id": "pump_trip"}}))
            await until(lambda: "acknowledged" in transitions(dispatch, "pump_trip"), 10, "the acknowledgement")

            process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=10) == -signal.SIGKILL
            faults.clear("overtemp")  # the interlock is reset while the gateway is down
            await asyncio.sleep(0.2)  # a PLC scan without the cause, then the operator's reset
            runner.station.plc.reset_alarms()

            process = start_gateway(config, state_dir, log)
            await until(lambda: "returned" in transitions(dispatch, "overtemp_trip"), 20,
                        "the over-temperature trip shown as returned")
            await until(lambda: len([s for s in dispatch.statuses() if s["state"] == "online"]) == 2, 10,
                        "the second birth")
            await asyncio.sleep(1.0)  # a second of polling after the restart: time for a duplicate to show
            assert retained(broker.port, "pump_trip")["state"] == "acknowledged"
            assert retained(broker.port, "pump_trip")["origin"] == "dispatch/zhang.wei"
            assert retained(broker.port, "overtemp_trip")["state"] == "returned"
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0, log.read_text()[-3000:]
        finally:
            stop_process(process)
    assert transitions(dispatch, "pump_trip") == ["active", "acknowledged"]
    assert transitions(dispatch, "overtemp_trip") == ["active", "returned"]
    first: dict[int, bytes] = {}
    for message in dispatch.on(f"{TOPIC}/events"):
        assert first.setdefault(message.json()["seq"], message.payload) == message.payload, "a seq reused"
    assert "Traceback" not in log.read_text()
