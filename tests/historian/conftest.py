"""Fixtures for the historian tests: a real Mosquitto, a real VictoriaMetrics, bridge processes,
and stations that publish exactly what the README's MQTT contract says, recording what they sent."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml

from tooling.devstack import Mosquitto, VictoriaMetrics, stop_process

ROOT = Path(__file__).resolve().parents[2]
QUALITY = {"g": 0, "b": 1, "s": 2}

BROKER_CONFIG = [
    "allow_anonymous true",
    # The broker is the durable buffer while a bridge or the database is away: never drop a queue.
    "max_queued_messages 0",
]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``predicate``; fail the test naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    service = Mosquitto(tmp_path / "mosquitto", extra_config=list(BROKER_CONFIG))
    service.start()
    yield service
    service.stop()


@pytest.fixture
def tsdb(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    """VictoriaMetrics with 1 ms deduplication: like InfluxDB, one point per series and timestamp."""
    service = VictoriaMetrics(tmp_path / "victoria-metrics", extra_args=["-dedup.minScrapeInterval=1ms"])
    service.start()
    yield service
    service.stop()


def bridge_config(directory: Path, broker: Mosquitto, tsdb: VictoriaMetrics, instance: str,
                  **sections: dict[str, Any]) -> Path:
    """A historian.yaml for ``instance`` pointing at the test services; ``sections`` override keys."""
    directory.mkdir(parents=True, exist_ok=True)
    token = directory / "token"
    token.write_text("test-token\n")
    data: dict[str, Any] = {
        "instance": instance,
        "site": "test",
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 10, "max_pending_messages": 200,
                 "reconnect": {"initial_s": 0.2, "max_s": 2}},
        "influxdb": {"url": tsdb.url, "token_file": str(token), "org": "heating", "bucket": "stations",
                     "timeout_s": 5},
        "batch": {"max_values": 2000, "max_age_s": 0.3},
        "retry": {"initial_s": 0.2, "max_s": 2},
        "sequence": {"gap_grace_s": 5, "meta_wait_s": 2, "peer_report_s": 0.5},
        "state_dir": str(directory / "state"),
        "metrics_interval_s": 1,
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path = directory / f"historian-{instance}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass
class BridgeProcess:
    """``python -m gateway.historian run`` as a real child process, with its log in a file."""

    config: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, wait_subscribed: bool = True) -> None:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway.historian", "run", "--config", str(self.config)],
            stdout=log, stderr=log, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        if wait_subscribed:
            wait_until(lambda: "msg=subscribed" in self.log()[offset:], 15, f"bridge {self.config.stem} to subscribe")

    def stop(self) -> int | None:
        """SIGTERM and wait; the exit code."""
        process, self.process = self.process, None
        stop_process(process, timeout_s=30)
        return None if process is None else process.returncode

    def kill(self) -> None:
        """SIGKILL: no flush, no acknowledgement, no goodbye."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def bridge_on(tmp_path: Path, tsdb: VictoriaMetrics) -> Iterator[Callable[..., BridgeProcess]]:
    """Factory for bridge processes on a given broker; every one is stopped at the end of the test."""
    started: list[BridgeProcess] = []

    def make(broker: Mosquitto, instance: str = "a", **sections: dict[str, Any]) -> BridgeProcess:
        config = bridge_config(tmp_path / "bridges", broker, tsdb, instance, **sections)
        bridge = BridgeProcess(config, tmp_path / "bridges" / f"{instance}.log")
        started.append(bridge)
        return bridge

    yield make
    for bridge in started:
        bridge.stop()


@pytest.fixture
def bridges(broker: Mosquitto, bridge_on: Callable[..., BridgeProcess]) -> Callable[..., BridgeProcess]:
    """Factory for bridge processes on the test's broker."""
    return functools.partial(bridge_on, broker)


@dataclass
class Station:
    """One station's MQTT side as the contract describes it: retained meta, numbered telemetry.

    Every sample it publishes is recorded in ``sent`` as (tag, timestamp ms) -> (value, quality), so
    a test can compare the database with the truth.
    """

    name: str
    port: int
    prefix: str = "heatgw"
    tags: int = 10
    seq: int = 0
    sent: dict[tuple[str, int], tuple[float | None, int]] = field(default_factory=dict)
    client: mqtt.Client | None = None
    payloads: dict[int, bytes] = field(default_factory=dict)
    """What it published, by seq: what it sends again when a historian asks (``cmd/replay``)."""
    replays: list[tuple[int, int]] = field(default_factory=list)

    def connect(self) -> Station:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"station-{self.name}",
                                  protocol=mqtt.MQTTv311)
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(100)
        self.client.on_message = self._on_replay
        self.client.connect("127.0.0.1", self.port)
        self.client.subscribe(f"{self.prefix}/{self.name}/cmd/replay", qos=1)
        self.client.loop_start()
        return self

    def _on_replay(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        """Answer as a gateway does: resend what it has; a number it skipped was dropped by its cap."""
        request = json.loads(message.payload)
        first, last = request["args"]["from_seq"], request["args"]["to_seq"]
        self.replays.append((first, last))
        resent = dropped = 0
        low = high = None
        for seq in range(first, last + 1):
            if seq in self.payloads:
                client.publish(f"{self.prefix}/{self.name}/telemetry", self.payloads[seq], qos=1)
                resent += 1
            else:
                low, high, dropped = low or seq, seq, dropped + 1
        result: dict[str, Any] = {"from_seq": first, "to_seq": last, "resent": resent, "absent": 0}
        if low is not None:
            result.update(dropped_first=low, dropped_last=high)
        client.publish(f"{self.prefix}/{self.name}/cmd/replay/result",
                       json.dumps({"id": request["id"], "ok": True, "result": result, "ts": time.time()}), qos=1)

    def close(self) -> None:
        if self.client is not None:
            self.client.loop_stop()
            self.client.disconnect()

    def tag_names(self) -> list[str]:
        return [f"tag_{i:02d}" for i in range(self.tags)]

    def publish_meta(self) -> None:
        tags = {name: {"unit": "degC" if i % 2 == 0 else "m³/h", "device": "plc" if i < self.tags // 2 else "meter",
                       "description": ""} for i, name in enumerate(self.tag_names())}
        self._publish("meta", {"config_hash": "sha256:test", "tags": tags}, retain=True)

    def telemetry(self, t0: float, skip: bool = False) -> int:
        """Publish the next message (or only consume its number, ``skip``: a lost message); its seq."""
        self.seq += 1
        t0 = round(t0, 3)
        samples: list[list[Any]] = []
        for i, name in enumerate(self.tag_names()):
            dt_ms = i * 7
            if (self.seq + i) % 11 == 0:
                sample: list[Any] = [name, None, dt_ms, "b", "timeout"]
                value: float | None = None
            elif i == 3:
                flag = self.seq % 2 == 0
                sample, value = [name, flag, dt_ms, "g"], float(flag)
            else:
                value = round(20 + self.seq * 0.01 + i, 3)
                sample = [name, value, dt_ms, "s" if (self.seq + i) % 13 == 0 else "g"]
            samples.append(sample)
            if not skip:
                self.sent[(name, round(t0 * 1000) + dt_ms)] = (value, QUALITY[sample[3]])
        if not skip:
            self.payloads[self.seq] = self._publish("telemetry", {"seq": self.seq, "t0": t0, "s": samples})
        return self.seq

    def _publish(self, kind: str, payload: dict[str, Any], retain: bool = False) -> bytes:
        assert self.client is not None
        data = json.dumps(payload).encode()
        info = self.client.publish(f"{self.prefix}/{self.name}/{kind}", data, qos=1, retain=retain)
        info.wait_for_publish(timeout=10)
        return data


class Feeder:
    """Stations publishing telemetry at a steady pace from a thread, with past timestamps.

    Timestamps advance by 1 s per message from an hour ago, so they are distinct, in the past (the
    export reads up to now) and independent of when the message was actually sent.
    """

    def __init__(self, stations: list[Station], interval_s: float) -> None:
        self.stations = stations
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.base = time.time() - 3600
        self.messages = 0
        self.error: BaseException | None = None

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "feeder did not stop"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for station in self.stations:
                    station.telemetry(self.base + station.seq)
                self.messages += 1
                self._stop.wait(self.interval_s)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc


@pytest.fixture
def stations(broker: Mosquitto) -> Iterator[Callable[..., list[Station]]]:
    made: list[Station] = []

    def make(count: int, tags: int = 10) -> list[Station]:
        new = [Station(f"st{len(made) + i + 1:02d}", broker.port, tags=tags).connect() for i in range(count)]
        for station in new:
            station.publish_meta()
        made.extend(new)
        return new

    yield make
    for station in made:
        station.close()


def stored(tsdb: VictoriaMetrics, field_name: str) -> dict[tuple[str, str], dict[int, list[float]]]:
    """``telemetry_<field>`` from the database: (station, tag) -> timestamp -> every value stored there."""
    found: dict[tuple[str, str], dict[int, list[float]]] = {}
    for series in tsdb.export(f'{{__name__="telemetry_{field_name}"}}'):
        metric = series["metric"]
        assert isinstance(metric, dict)
        points = found.setdefault((metric["station"], metric["tag"]), {})
        for ts, value in zip(series["timestamps"], series["values"], strict=True):  # type: ignore[call-overload]
            points.setdefault(int(ts), []).append(float(value))
    return found


def check_exactly_once(tsdb: VictoriaMetrics, stations: list[Station]) -> int:
    """Every sample sent is stored once, at its own timestamp, with its value and quality; nothing else.

    Returns how many samples were checked.
    """
    values, qualities = stored(tsdb, "value"), stored(tsdb, "quality")
    expected_series = {(s.name, tag) for s in stations for tag, _ in s.sent}
    assert set(qualities) == expected_series
    checked = 0
    for station in stations:
        for (tag, ts), (value, quality) in station.sent.items():
            assert qualities[(station.name, tag)].get(ts) == [quality], (station.name, tag, ts)
            if value is None:
                assert ts not in values.get((station.name, tag), {}), (station.name, tag, ts)
            else:
                assert values[(station.name, tag)].get(ts) == [value], (station.name, tag, ts)
            checked += 1
    stored_points = sum(len(points) for points in qualities.values())
    assert stored_points == checked, f"{stored_points - checked} points in the database were never sent"
    return checked


def stored_count(tsdb: VictoriaMetrics) -> int:
    return sum(len(points) for points in stored(tsdb, "quality").values())


def sent_count(stations: list[Station]) -> int:
    return sum(len(station.sent) for station in stations)


def historian_metric(tsdb: VictoriaMetrics, name: str, **labels: str) -> dict[str, float]:
    """Latest value of ``historian_<name>`` per instance, for series matching ``labels``."""
    selector = ",".join([f'__name__="historian_{name}"', *(f'{k}="{v}"' for k, v in labels.items())])
    return {str(series["metric"]["instance"]): float(series["values"][-1])  # type: ignore[index]
            for series in tsdb.export("{" + selector + "}")}
