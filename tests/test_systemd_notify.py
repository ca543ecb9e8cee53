"""systemd knows how the gateway is doing: ready, status, watchdog keep-alives only while every part
makes progress, stopping; and journald gets each line's priority.

The service manager's side is a Unix datagram socket the test owns (what ``NOTIFY_SOCKET`` names
under systemd), so the gateway's real notifications are read, from the unit's own ``ExecStart``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.bus import Subscription
from tooling.devstack import Mosquitto, stop_process
from gateway.systemd_notify import Notifier, keep_alive
from sim.modbus_server import StationModbusServer
from tests.gateway.conftest import station_config, station_server  # noqa: F401 - a fixture used here
from tests.mqtt.conftest import broker, until  # noqa: F401 - broker is a fixture
from tests.test_deployment import install_config, unit_command
from tests.test_systemd import directives

ROOT = Path(__file__).resolve().parents[1]


class ServiceManager:
    """The receiving end of ``NOTIFY_SOCKET``: every datagram with the monotonic time it arrived."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.received: list[tuple[float, dict[str, str]]] = []
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        self._socket.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> ServiceManager:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._socket.close()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._socket.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.received.append((time.monotonic(), fields))

    def times(self, key: str) -> list[float]:
        return [at for at, fields in self.received if key in fields]

    def statuses(self) -> list[str]:
        return [fields["STATUS"] for _, fields in self.received if "STATUS" in fields]


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[ServiceManager]:
    with ServiceManager(tmp_path / "notify.sock") as receiver:
        yield receiver


def test_the_unit_waits_for_ready_and_restarts_a_gateway_that_stops_its_keep_alives() -> None:
    unit = directives(ROOT / "systemd" / "heatgw.service")
    assert unit["Type"] == ["notify"]
    (watchdog,) = unit["WatchdogSec"]
    assert watchdog.endswith("s") and int(watchdog[:-1]) > 0
    assert unit["Restart"] == ["on-failure"], "a watchdog kill counts as a failure and is restarted"


def test_without_a_notify_socket_nothing_is_sent_and_nothing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier.from_environment()
    assert not notifier.enabled
    notifier.ready("x")  # no socket, no error


def test_a_watchdog_meant_for_another_process_is_not_ours(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "s"))
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert Notifier.from_environment().watchdog_s is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier.from_environment().watchdog_s == 2.0


async def test_keep_alives_stop_while_the_event_loop_is_blocked_and_resume_after(manager: ServiceManager) -> None:
    notifier = Notifier(str(manager.path), watchdog_usec=200_000)

    async def status() -> str:
        return "fine"

    task = asyncio.create_task(keep_alive(notifier, lambda: [], status))
    try:
        await until(lambda: len(manager.times("WATCHDOG")) >= 3, 5, "keep-alives while healthy")
        blocked_at = time.monotonic()
        time.sleep(1.0)  # the loop is stuck: nothing may claim the gateway is alive
        blocked_until = time.monotonic()
        await until(lambda: any(t > blocked_until for t in manager.times("WATCHDOG")), 5, "keep-alives again")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        notifier.close()
    during = [t for t in manager.times("WATCHDOG") if blocked_at + 0.05 < t < blocked_until]
    assert during == [], "no keep-alive while the event loop was blocked"
    assert manager.statuses()[-1] == "fine"


async def test_a_wedged_consumer_stalls_the_pollers_and_withholds_the_keep_alive(
        manager: ServiceManager, station_server: StationModbusServer) -> None:  # noqa: F811
    def fast(data: dict[str, object]) -> None:
        data["groups"] = {name: {"interval_s": 0.1} for name in data["groups"]}  # type: ignore[attr-defined]
        for device in data["devices"].values():  # type: ignore[attr-defined]
            device.update(timeout_s=0.2, retries=0, backoff={"initial_s": 0.1, "max_s": 0.2, "jitter": 0.1})

    gateway = Gateway(station_config(station_server.port, fast))
    # A consumer that never reads and may not lose anything: the pollers wait on it forever.
    wedged = gateway.bus.subscribe("wedged", maxsize=1, lossless=True)
    notifier = Notifier(str(manager.path), watchdog_usec=200_000)
    async with gateway:
        task = asyncio.create_task(keep_alive(notifier, gateway.stalled, gateway.status_line))
        try:
            await until(lambda: bool(gateway.stalled()), 10, "the pollers to count as stalled")
            stalled_at = time.monotonic()
            await asyncio.sleep(0.6)
            assert [t for t in manager.times("WATCHDOG") if t > stalled_at + 0.05] == []
            assert any(status.startswith("stalled: poller:") for status in manager.statuses())
            # The consumer reads again: the pollers move again and so do the keep-alives.
            drain = asyncio.create_task(_drain(wedged))
            resumed = time.monotonic()
            await until(lambda: any(t > resumed for t in manager.times("WATCHDOG")), 10, "keep-alives after recovery")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            notifier.close()
        drain.cancel()
    assert any("devices 2/2 online" in status for status in manager.statuses())


async def _drain(subscription: Subscription) -> None:
    async for _ in subscription:
        pass


async def test_the_units_own_command_notifies_ready_status_keep_alives_and_stopping_with_journal_priorities(
        tmp_path: Path, manager: ServiceManager, station_server: StationModbusServer,  # noqa: F811
        broker: Mosquitto) -> None:  # noqa: F811
    etc, state, journal = tmp_path / "etc" / "heatgw", tmp_path / "state", tmp_path / "journal.log"
    install_config(etc)
    station = etc / "station.yaml"
    station.write_text(station.read_text().replace("port: 5020", f"port: {station_server.port}")
                       .replace("port: 1883", f"port: {broker.port}"))
    process: subprocess.Popen[bytes] | None = None
    with journal.open("ab") as stream:
        status = os.fstat(stream.fileno())
        env = {**os.environ, "NOTIFY_SOCKET": str(manager.path), "WATCHDOG_USEC": "1000000",
               "JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
        env.pop("WATCHDOG_PID", None)
        try:
            process = subprocess.Popen(unit_command("ExecStart", etc, state), stdout=stream, stderr=stream,
                                       cwd=tmp_path, env=env)
            await until(lambda: bool(manager.times("READY")), 30, "READY=1")
            ready = manager.times("READY")[0]
            await until(lambda: len([t for t in manager.times("WATCHDOG") if t > ready]) >= 3, 10, "keep-alives")
            assert any("devices" in status and "controller" in status for status in manager.statuses())
            process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(process.wait, 20) == 0
        finally:
            stop_process(process)
    assert manager.times("STOPPING"), "STOPPING=1 on SIGTERM"
    lines = journal.read_text().splitlines()
    assert lines and all(line[:3] in ("<2>", "<3>", "<4>", "<6>", "<7>") for line in lines), lines[:5]
    assert any(line.startswith("<6>") and 'msg="gateway started"' in line for line in lines)
