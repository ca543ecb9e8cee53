"""Poison messages through a real Mosquitto and a real VictoriaMetrics: one station's bad message
never stops the bridge for the others, is counted and quarantined, and never comes back.

Corpus entries whose topic holds a control character are left out here: Mosquitto disconnects a
client that publishes one, so they never reach the bridge through it (``test_poison`` covers them
for brokers that let them through).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tooling.devstack import Mosquitto, VictoriaMetrics
from gateway.historian.bridge import Bridge
from gateway.historian.schema import unsafe_name
from gateway.historian.settings import load_historian_settings
from tests.historian.conftest import BridgeProcess, Station, bridge_config, historian_metric, stored, wait_until
from tests.historian.poison import VALIDATION, Poison, corpus

Stations = Callable[..., list[Station]]
PEER_TOPIC = "heatgw/_historian/historian/seen"


class Publisher:
    """A raw MQTT client: publishes exact bytes to any topic, waiting for each PUBACK."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="poisoner", protocol=mqtt.MQTTv311)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, poison: Poison) -> None:
        topic = PEER_TOPIC if poison.topic == "peer" else f"heatgw/{poison.station}/{poison.topic}"
        info = self.client.publish(topic, poison.payload, qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published(), poison.id

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def publisher(broker: Mosquitto) -> Iterator[Publisher]:
    made = Publisher(broker.port)
    yield made
    made.close()


def reachable(poisons: list[Poison]) -> list[Poison]:
    """The entries a Mosquitto delivers (no control character in the topic)."""
    return [p for p in poisons if unsafe_name(p.station) is None and unsafe_name(p.topic) is None]


def threads_alive(bridge: Bridge) -> bool:
    meta_thread = bridge._meta_client._thread  # paho's loop thread of the metadata client
    return all(thread.is_alive() for thread in bridge._threads) and meta_thread is not None and meta_thread.is_alive()


def canary_stored(tsdb: VictoriaMetrics, canary: Station) -> bool:
    qualities = stored(tsdb, "quality")
    found = {(tag, ts) for (station, tag), points in qualities.items() if station == canary.name for ts in points}
    return found >= set(canary.sent)


def test_every_poison_message_is_quarantined_and_the_next_stations_message_is_still_written(
        tmp_path: Path, broker: Mosquitto, tsdb: VictoriaMetrics, stations: Stations, publisher: Publisher) -> None:
    config = bridge_config(tmp_path / "inproc", broker, tsdb, "poison", validation=VALIDATION,
                           batch={"max_values": 2000, "max_age_s": 0.1}, sequence={"meta_wait_s": 0})
    bridge = Bridge(load_historian_settings(config))
    bridge.start()
    try:
        [canary] = stations(1)
        wait_until(lambda: canary.name in bridge._metas and bridge._client.is_connected(), 10, "the bridge ready")
        base = time.time() - 3600
        poisons = reachable(corpus(time.time()))
        assert len(poisons) >= 30
        for poison in poisons:
            quarantined, invalid_meta = bridge._quarantine.kept, bridge._invalid_meta
            publisher.send(poison)
            canary.telemetry(base + canary.seq)  # published after the poison, by another station
            if poison.outcome == "ignored":
                wait_until(lambda: bridge._invalid_meta == invalid_meta + 1, 10, f"{poison.id}: counted")
            else:
                wait_until(lambda: bridge._quarantine.kept == quarantined + 1, 10, f"{poison.id}: quarantined")
            assert threads_alive(bridge), f"a thread of the bridge ended after {poison.id}"
        wait_until(lambda: canary_stored(tsdb, canary), 30, "every canary message in the database", interval=0.5)
        assert not bridge.failed.is_set()

        refused = [p for p in poisons if p.outcome == "refused"]
        partial = [p for p in poisons if p.outcome == "partial"]
        records = [json.loads(line) for line in bridge._quarantine.path.read_text().splitlines()]
        assert len(records) == len(refused) + len(partial)
        assert [r["reason"] for r in records if "samples skipped" in r["reason"]] and all(
            r["station"] == "poison" for r in records)
        by_payload = {r["sha256"]: r for r in records}
        for poison in refused + partial:
            assert hashlib.sha256(poison.payload).hexdigest() in by_payload, poison.id
        assert by_payload[hashlib.sha256(refused[0].payload).hexdigest()]["seq"] == 7, "its seq, read before the refusal"

        def counted() -> bool:
            return (historian_metric(tsdb, "invalid_messages") == {"poison": len(refused) + len(
                [p for p in poisons if p.outcome == "ignored"])}
                and historian_metric(tsdb, "quarantined") == {"poison": len(records)})

        wait_until(counted, 15, "the refusals in the bridge's own metrics", interval=0.5)
        assert historian_metric(tsdb, "skipped_samples")["poison"] >= 100_000
        assert historian_metric(tsdb, "rejected_values") == {"poison": 0}, "no line the database refused"
        assert bridge.pending == 0, "every poison message acknowledged"
    finally:
        bridge.close()


def test_a_poison_meta_or_peer_report_leaves_later_stations_with_their_device_and_unit(
        tmp_path: Path, broker: Mosquitto, tsdb: VictoriaMetrics, stations: Stations, publisher: Publisher) -> None:
    config = bridge_config(tmp_path / "inproc", broker, tsdb, "meta", validation=VALIDATION)
    bridge = Bridge(load_historian_settings(config))
    bridge.start()
    try:
        wait_until(lambda: bridge._client.is_connected(), 10, "the bridge to connect")
        meta_and_peer = [p for p in corpus(time.time()) if p.outcome == "ignored"]
        for poison in meta_and_peer:
            publisher.send(poison)
        wait_until(lambda: bridge._invalid_meta == len(meta_and_peer), 10, "every poison meta and report counted")
        [late] = stations(1)  # announces itself after the poison
        late.telemetry(time.time() - 60)
        wait_until(lambda: bool(tsdb.export('{__name__="telemetry_quality"}')), 15, "the station's samples")
        units = {s["metric"]["tag"]: (s["metric"].get("unit"), s["metric"].get("device"))  # type: ignore[index]
                 for s in tsdb.export('{__name__="telemetry_quality"}')}
        assert units["tag_00"] == ("degC", "plc") and units["tag_09"] == ("m³/h", "meter")
        assert threads_alive(bridge)
    finally:
        bridge.close()


def test_station_and_tag_names_with_commas_spaces_quotes_and_backslashes_land_exactly(
        tmp_path: Path, broker: Mosquitto, tsdb: VictoriaMetrics, bridges: Callable[..., BridgeProcess]) -> None:
    bridge = bridges("a", sequence={"meta_wait_s": 0})
    bridge.start()
    odd = Station('st,1 ="q"\\', broker.port, tags=2).connect()
    try:
        odd.telemetry(time.time() - 60)
        wait_until(lambda: bool(tsdb.export('{__name__="telemetry_quality"}')), 15, "the odd station's samples")
        names = {(s["metric"]["station"], s["metric"]["tag"]) for s in tsdb.export('{__name__="telemetry_quality"}')}
        assert names == {('st,1 ="q"\\', "tag_00"), ('st,1 ="q"\\', "tag_01")}
        assert "database refused" not in bridge.log()
    finally:
        odd.close()
    assert bridge.stop() == 0


CRASH_LOOP_POISONS = ("value 10^400", "dt_ms Infinity", "t0 1e308", "telemetry nested 10,000 deep",
                      "control 10^400", "alarm nested 10,000 deep")


def test_a_poison_message_is_acknowledged_once_so_a_restart_does_not_meet_it_again(
        tmp_path: Path, broker: Mosquitto, tsdb: VictoriaMetrics, stations: Stations, publisher: Publisher,
        bridges: Callable[..., BridgeProcess]) -> None:
    """The crash loop the tester found: poison queued for a durable session while the bridge is
    down; the bridge starts, meets it, quarantines and acknowledges it; restarted, it never sees it again."""
    bridge = bridges("a", validation=VALIDATION, sequence={"meta_wait_s": 0})
    bridge.start()
    assert bridge.stop() == 0  # the durable session exists; the broker now queues for it
    [canary] = stations(1)
    base = time.time() - 3600
    poisons = {p.id: p for p in corpus(time.time())}
    for name in CRASH_LOOP_POISONS:
        publisher.send(poisons[name])
        canary.telemetry(base + canary.seq)
    bridge.start()
    wait_until(lambda: canary_stored(tsdb, canary), 30, "the canaries queued behind the poison", interval=0.5)
    quarantine = tmp_path / "bridges" / "state" / "quarantine-a.jsonl"
    wait_until(lambda: quarantine.exists() and len(quarantine.read_text().splitlines()) == len(CRASH_LOOP_POISONS),
               10, "every poison quarantined")
    assert bridge.process is not None and bridge.process.poll() is None, "the bridge is still running"
    assert bridge.stop() == 0

    bridge.start()
    canary.telemetry(base + canary.seq)
    wait_until(lambda: canary_stored(tsdb, canary), 30, "a message after the restart", interval=0.5)
    assert bridge.stop() == 0
    assert len(quarantine.read_text().splitlines()) == len(CRASH_LOOP_POISONS), "no poison delivered again"
    log = bridge.log()
    assert "historian worker failed" not in log and "Traceback" not in log
    assert log.count("session_present=True") >= 2, "the restarts resumed the durable session"
