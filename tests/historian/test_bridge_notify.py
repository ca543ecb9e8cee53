"""The historian bridge under systemd: ready, status, keep-alives only while both threads make
progress, stopping; read from a notification socket the test owns."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tooling.devstack import Mosquitto, VictoriaMetrics
from gateway.historian.bridge import Bridge
from gateway.historian.settings import load_historian_settings
from tests.historian.conftest import BridgeProcess, Station, bridge_config, wait_until
from tests.test_systemd_notify import ServiceManager


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[ServiceManager]:
    with ServiceManager(tmp_path / "notify.sock") as receiver:
        yield receiver


def test_the_bridge_says_ready_keeps_the_watchdog_fed_and_says_stopping(
        manager: ServiceManager, bridges: Callable[..., BridgeProcess], monkeypatch: pytest.MonkeyPatch,
        stations: Callable[..., list[Station]]) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(manager.path))
    monkeypatch.setenv("WATCHDOG_USEC", "600000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    bridge = bridges()
    bridge.start()
    (station,) = stations(1)
    station.telemetry(time.time())
    wait_until(lambda: bool(manager.times("READY")), 10, "READY=1")
    wait_until(lambda: len(manager.times("WATCHDOG")) >= 3, 10, "keep-alives")
    wait_until(lambda: any(s.startswith("broker connected, database writing; ") and " 0 values written" not in s
                           for s in manager.statuses()), 10, "a status line with what was written")
    assert bridge.process is not None
    bridge.process.send_signal(signal.SIGTERM)
    assert bridge.process.wait(30) == 0
    wait_until(lambda: bool(manager.times("STOPPING")), 5, "STOPPING=1")


class WedgedDatabase:
    """A database client that never returns (no time-out of its own): the worker is stuck in it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def write(self, body: bytes) -> None:
        self.entered.set()
        self.release.wait(60)

    def close(self) -> None:
        self.release.set()


def test_a_worker_stuck_in_a_write_is_named_and_a_moving_one_is_not(
        tmp_path: Path, broker: Mosquitto, tsdb: VictoriaMetrics, stations: Callable[..., list[Station]]) -> None:
    config = bridge_config(tmp_path / "bridge", broker, tsdb, "a", retry={"initial_s": 0.2, "max_s": 0.5},
                           influxdb={"timeout_s": 1})
    settings = load_historian_settings(config)
    database = WedgedDatabase()
    bridge = Bridge(settings, writer=database)  # type: ignore[arg-type]
    bridge.start()
    try:
        (station,) = stations(1)
        wait_until(lambda: bridge.stalled(time.monotonic()) == [], 5, "both threads moving")
        station.telemetry(time.time())
        assert database.entered.wait(15), "the worker reached the database"
        patience = bridge.patience_s()["worker"]
        wait_until(lambda: bridge.stalled(time.monotonic()) == ["worker"], patience + 5, "the stuck worker named")
        database.release.set()
        wait_until(lambda: bridge.stalled(time.monotonic()) == [], 5, "the worker moving again")
    finally:
        database.release.set()
        bridge.close()
