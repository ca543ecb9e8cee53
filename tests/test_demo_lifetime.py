"""The demo owns what it starts: a signal or a busy port never leaves a child process, a temporary
directory, or a demo attached to somebody else's broker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.gateway.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def demo_command(**ports: int) -> list[str]:
    wanted = {"port": free_port(), "control-port": free_port(), "mqtt-port": free_port(), "tsdb-port": free_port()}
    wanted.update({name.replace("_", "-"): port for name, port in ports.items()})
    command = [sys.executable, "-m", "gateway", "demo", "--duration", "300", "--no-live"]
    for name, port in wanted.items():
        command += [f"--{name}", str(port)]
    return command


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Every live process whose command line contains ``text`` (the test's own temp dir, which
    every child of the demo names: broker config, database data, historian config)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append((int(entry.name), cmdline))
    return found


def wait_for_line(path: Path, needle: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if needle in path.read_text(errors="replace"):
            return
        assert process.poll() is None, f"the demo exited early:\n{path.read_text()[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} not logged within {timeout_s} s:\n{path.read_text()[-3000:]}")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signalled_demo_stops_every_child_and_removes_its_directory(tmp_path: Path, stop: signal.Signals) -> None:
    workdir = tmp_path / "tmp"
    workdir.mkdir()
    stderr = tmp_path / "demo.log"
    with stderr.open("wb") as log:
        demo = subprocess.Popen(demo_command(), cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                env={**os.environ, "TMPDIR": str(workdir)})
    try:
        wait_for_line(stderr, 'msg="mqtt connected"', demo, timeout_s=90)
        children = processes_mentioning(str(workdir))
        assert len(children) >= 2, children  # at least the broker and the database run from the demo's directory
        assert any(workdir.iterdir()), "the demo's working directory is not under TMPDIR"
        demo.send_signal(stop)
        out, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 0, stderr.read_text()[-3000:]
    assert f"demo stopped by {stop.name}" in out.decode()
    deadline = time.monotonic() + 10
    while processes_mentioning(str(workdir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_mentioning(str(workdir)) == []
    assert list(workdir.iterdir()) == [], "the demo's temporary directory was left behind"
    assert "Traceback" not in stderr.read_text()


def test_a_demo_whose_broker_port_is_held_by_another_process_refuses_and_leaves_nothing(tmp_path: Path) -> None:
    workdir = tmp_path / "tmp"
    workdir.mkdir()
    with socket.socket() as stale:  # a broker left over from an earlier run, as far as the port shows
        stale.bind(("127.0.0.1", 0))
        stale.listen()
        held = stale.getsockname()[1]
        proc = subprocess.run(demo_command(mqtt_port=held), cwd=ROOT, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, env={**os.environ, "TMPDIR": str(workdir)})
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert f"demo not started: mosquitto: port {held} on 127.0.0.1 is already in use by another process" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert processes_mentioning(str(workdir)) == []
    assert list(workdir.iterdir()) == []
