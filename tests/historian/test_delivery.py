"""End-to-end delivery: from the PLC register to the database row, across restarts and kills of every
process and of the broker (issue #15).

The whole chain runs as real processes: the simulator, ``heatgw run`` with its controller, a
Mosquitto with ``persistence true`` (which does not keep shared subscriptions over its restart), a
bridge on a shared subscription that reconnects slower than the station, VictoriaMetrics. The
truth is the gateway's own outbox (every number it gave) and a plain persistent subscriber (which
Mosquitto does keep over a restart) recording what each number carried.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tooling.devstack import Mosquitto, VictoriaMetrics, stop_process
from gateway.mqtt.payloads import parse_delivered
from gateway.mqtt.service import outbox_path
from sim.modbus_server import StationModbusServer
from tests.historian.conftest import (
    BROKER_CONFIG,
    QUALITY,
    BridgeProcess,
    Feeder,
    Station,
    check_exactly_once,
    historian_metric,
    sent_count,
    stored,
    stored_count,
    wait_until,
)
from tests.historian.test_end_to_end import simulator  # noqa: F401 - a fixture used here
from tests.mqtt.conftest import STATION, TOPIC, Subscriber, broker_lines, station_with_mqtt, until
from tests.mqtt.conftest import station_server  # noqa: F401 - a fixture used here
from tests.mqtt.test_store_and_forward import stored as outbox_contents
from tests.mqtt.test_store_and_forward import write_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def durable_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """Mosquitto as the tester ran it: persistent, never dropping a queue."""
    store = tmp_path / "mosquitto"
    broker = Mosquitto(store, extra_config=broker_lines(*BROKER_CONFIG, "persistence true",
                                                        f"persistence_location {store}/"))
    broker.start()
    yield broker
    broker.stop()


class GatewayProcess:
    """``heatgw run`` with its controller as a real process, its log in a file."""

    def __init__(self, config: Path, controller: Path, state_dir: Path, log: Path) -> None:
        self.command = [sys.executable, "-m", "gateway", "run", "--config", str(config), "--state-dir",
                        str(state_dir), "--controller", str(controller)]
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(self.command, stdout=sink, stderr=sink, cwd=ROOT)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int | None:
        process, self.process = self.process, None
        stop_process(process, timeout_s=30)
        return None if process is None else process.returncode


def fast_controller(directory: Path) -> Path:
    """The demo controller on a 2 s cycle, so the test sees dozens of durable controller states."""
    shutil.copytree(ROOT / "config" / "curves", directory / "curves")
    path = directory / "controller.yaml"
    path.write_text((ROOT / "config" / "controller.yaml").read_text().replace("cycle_s: 60", "cycle_s: 2"))
    return path


def expected_samples(recorder: Subscriber) -> dict[tuple[str, int], tuple[float | None, int]]:
    """(tag, ts ms) -> (value, quality) of every telemetry sample the gateway published."""
    found: dict[tuple[str, int], tuple[float | None, int]] = {}
    for message in recorder.on(f"{TOPIC}/telemetry"):
        payload = message.json()
        base = round(payload["t0"] * 1000)
        for tag, value, dt_ms, quality, *_ in payload["s"]:
            found[(tag, base + dt_ms)] = (None if value is None else float(value), QUALITY[quality])
    return found


def numbered(recorder: Subscriber) -> dict[int, str]:
    """seq -> topic kind, of every durable message the recorder saw (telemetry, control, events)."""
    return {message.json()["seq"]: message.topic.rsplit("/", 1)[-1] for message in recorder.messages
            if message.topic.rsplit("/", 1)[-1] in ("telemetry", "control", "events")}


async def test_broker_restarts_kills_and_a_database_outage_leave_every_number_in_the_database(
        tmp_path: Path, simulator: int, durable_broker: Mosquitto, tsdb: VictoriaMetrics,  # noqa: F811
        bridge_on: Callable[..., BridgeProcess]) -> None:
    broker = durable_broker
    bridge = bridge_on(broker, mqtt={"reconnect": {"initial_s": 3, "max_s": 3, "jitter": 0.1}},
                       sequence={"gap_grace_s": 2, "meta_wait_s": 2, "peer_report_s": 0.5, "replay_retry_s": 3})
    await asyncio.to_thread(bridge.start)
    recorder = Subscriber(broker.port, topics=(f"{TOPIC}/telemetry", f"{TOPIC}/control", f"{TOPIC}/events"),
                          client_id="recorder",
                          persistent=True).start()
    state = tmp_path / "gateway-state"
    config = write_config(tmp_path, station_with_mqtt(simulator, broker.port, batch_max_age_s=0.3,
                                                      integrity_interval_s=1.0))
    gateway = GatewayProcess(config, fast_controller(tmp_path), state, tmp_path / "gateway.log")
    outbox = outbox_path(state, STATION)

    async def restart_broker() -> None:
        broker.stop()  # SIGTERM: Mosquitto saves its persistence file, without the shared subscription
        await asyncio.sleep(0.5)
        broker.start()
        await asyncio.sleep(5)  # the station is back at once, the bridge 3 s later

    try:
        gateway.start()
        await until(lambda: len(recorder.messages) >= 10, 20, "the gateway publishing")
        for _ in range(3):
            await restart_broker()
        gateway.kill()
        await asyncio.sleep(1)
        gateway.start()
        await asyncio.sleep(4)
        await asyncio.to_thread(bridge.kill)
        await asyncio.sleep(2)
        await asyncio.to_thread(bridge.start)
        tsdb.stop()
        await asyncio.sleep(5)
        tsdb.start()
        await restart_broker()

        # Faults over: every number given so far is confirmed, then deleted, with the gateway running.
        target = outbox_contents(state)[0]
        await until(lambda: min(outbox_contents(state)[1], default=target + 1) > target, 40,
                    f"the outbox confirmed up to seq {target}")
        assert gateway.stop() == 0
        last, waiting = outbox_contents(state)
    finally:
        gateway.stop()
        recorder.stop()

    seqs = numbered(recorder)
    assert set(range(1, last + 1)) <= set(seqs) | set(waiting), \
        "every number the gateway gave was published, or is still at the station (stored at the stop)"
    assert "control" in seqs.values(), "controller states share the station's one sequence"
    expected = expected_samples(recorder)
    controls = {round(message.json()["ts"] * 1000) for message in recorder.on(f"{TOPIC}/control")}

    def stored_controls() -> set[int]:
        return {ts for series in tsdb.export('{__name__=~"control_.*"}')
                for ts in series["timestamps"]}  # type: ignore[union-attr]

    def everything_stored() -> bool:
        # The last controller state may follow the last telemetry into the bridge's next batch.
        return stored_count(tsdb) >= len(expected) and controls <= stored_controls()

    await asyncio.to_thread(wait_until, everything_stored, 30,
                            f"{len(expected)} samples and {len(controls)} controller states in the database", 0.5)
    qualities, values = stored(tsdb, "quality"), stored(tsdb, "value")
    for (tag, ts), (value, quality) in expected.items():
        assert qualities[(STATION, tag)].get(ts) == [quality], (tag, ts)
        if value is not None:
            assert values[(STATION, tag)].get(ts) == [pytest.approx(value, rel=1e-9)], (tag, ts)
    assert controls <= stored_controls(), "every controller state is in the database"

    log = bridge.log()
    assert "replay requested" in log, "the broker lost messages on its restarts, and they were asked for"
    assert "telemetry sequence gap" not in log
    assert historian_metric(tsdb, "missing", station=STATION) == {"a": 0}
    assert set(waiting) <= set(range(target + 1, last + 1)), "only numbers after the confirmation remain"
    assert "Traceback" not in gateway.log.read_text()


async def test_a_range_the_station_no_longer_has_is_reported_lost_with_the_reason_exactly_once(
        tmp_path: Path, station_server: StationModbusServer, tsdb: VictoriaMetrics,  # noqa: F811
        bridge_on: Callable[..., BridgeProcess]) -> None:
    """A tiny outbox (messages older than 1.8 s dropped) and a broker restart while the bridge is
    away: what the broker lost and the cap dropped before the bridge asked for it is lost, and the
    station says so; the station's word is counted once however often it is repeated."""
    broker = Mosquitto(tmp_path / "mosquitto", extra_config=broker_lines(*BROKER_CONFIG))
    broker.start()
    retry_s = 2.0
    bridge = bridge_on(broker, mqtt={"reconnect": {"initial_s": 5, "max_s": 5, "jitter": 0.1}},
                       sequence={"gap_grace_s": 1, "meta_wait_s": 2, "peer_report_s": 0.5, "replay_retry_s": retry_s})
    process: subprocess.Popen[bytes] | None = None
    try:
        await asyncio.to_thread(bridge.start)
        config = write_config(tmp_path, station_with_mqtt(station_server.port, broker.port, batch_max_age_s=0.3,
                                                          outbox={"max_age_h": 0.0005}))
        gateway_log = tmp_path / "gateway.log"
        process = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(config),
                                    "--state-dir", str(tmp_path / "state")],
                                   stdout=gateway_log.open("ab"), stderr=subprocess.STDOUT, cwd=ROOT)
        await asyncio.to_thread(wait_until, lambda: stored_count(tsdb) > 50, 20, "telemetry in the database", 0.5)
        broker.stop()
        broker.start()  # no persistence: the bridge's subscription and queue are gone

        def lost_line() -> re.Match[str] | None:
            return re.search(r'msg="telemetry sequence gap" station=demo-01 first_missing=(\d+) '
                             r'last_missing=(\d+) missing=(\d+) reason="dropped by the station\'s outbox cap"',
                             bridge.log())

        await asyncio.to_thread(wait_until, lambda: lost_line() is not None, 30, "the loss reported")
        await asyncio.sleep(3 * retry_s)  # the station would be asked again if the hole were still open
        match = lost_line()
        assert match is not None
        missing = int(match[3])
        assert missing == int(match[2]) - int(match[1]) + 1 > 0
        assert bridge.log().count("telemetry sequence gap") == 1, "reported once"
        wait_until(lambda: historian_metric(tsdb, "missing", station=STATION) == {"a": missing}, 10,
                   "the metric counting the loss once")
        assert historian_metric(tsdb, "gaps", station=STATION) == {"a": 1}
        assert "replayed on request" in gateway_log.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        with sqlite3.connect(outbox_path(tmp_path / "state", STATION)) as db:
            dropped_up_to = db.execute("SELECT value FROM counters WHERE name = 'dropped_up_to'").fetchone()[0]
        assert dropped_up_to >= int(match[2]), "the station did drop what it said it dropped"
    finally:
        stop_process(process)
        broker.stop()


def test_three_bridge_kills_never_make_a_number_in_the_database_missing(
        bridge_on: Callable[..., BridgeProcess], stations: Callable[..., list[Station]], broker: Mosquitto,
        tsdb: VictoriaMetrics) -> None:
    """The tester's second defect: a bridge SIGKILLed after acknowledging a batch, whose sequence
    state was saved seconds earlier, restarted believing written numbers were missing."""
    bridge = bridge_on(broker, sequence={"gap_grace_s": 1, "meta_wait_s": 2, "peer_report_s": 0.5,
                                         "replay_retry_s": 2})
    bridge.start()
    fleet = stations(3)
    with Feeder(fleet, interval_s=0.01):
        for _ in range(3):
            time.sleep(2.5)
            bridge.kill()
            bridge.start()
        time.sleep(2)
    wait_until(lambda: stored_count(tsdb) >= sent_count(fleet), 30, "every sample in the database", 0.5)
    time.sleep(3)  # grace and a replay period: a false hole would have been asked for by now
    assert check_exactly_once(tsdb, fleet) == sent_count(fleet)
    for station in fleet:
        assert historian_metric(tsdb, "missing", station=station.name) == {"a": 0}
        assert station.replays == [], f"{station.name} was asked for numbers the database has"
    assert "replay requested" not in bridge.log()
    assert bridge.stop() == 0


def test_a_quarantined_message_counts_as_delivered_so_it_is_never_asked_for_again(
        bridge_on: Callable[..., BridgeProcess], stations: Callable[..., list[Station]], broker: Mosquitto,
        tsdb: VictoriaMetrics) -> None:
    """A station whose message is poison (a time no database takes) must be allowed to forget it:
    the historian holds it in the quarantine, and asking for it again would only bring it back."""
    bridge = bridge_on(broker, sequence={"gap_grace_s": 1, "meta_wait_s": 2, "peer_report_s": 0.5,
                                         "replay_retry_s": 1})
    bridge.start()
    (station,) = stations(1)
    now = time.time()
    station.telemetry(now - 2)
    station.seq += 1
    poison = json.dumps({"seq": station.seq, "t0": 1e308, "s": [["tag_00", 1.0, 0, "g"]]}).encode()
    station.payloads[station.seq] = poison
    assert station.client is not None
    station.client.publish(f"heatgw/{station.name}/telemetry", poison, qos=1).wait_for_publish(10)
    last = station.telemetry(now - 1)
    topic = f"heatgw/{station.name}/delivered"
    with Subscriber(broker.port, topics=(topic,)) as subscriber:
        wait_until(lambda: any(parse_delivered(m.payload).upto >= last for m in subscriber.on(topic)), 20,
                   "a delivered confirmation covering the quarantined number")
    time.sleep(2.5)  # more than the grace and a replay period
    assert station.replays == [], "a quarantined number is not a hole"
    assert historian_metric(tsdb, "quarantined") == {"a": 1}
    assert bridge.stop() == 0
