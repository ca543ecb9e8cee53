"""The documented deployment works as documented.

The install lines of the docs (docs/getting-started/install.md) and the systemd unit's own ``ExecStartPre``/``ExecStart`` run for real,
with ``/etc/heatgw``, the venv and the state directory moved into the test's temporary directory,
against the simulated station and a real Mosquitto: the gateway starts with its controller and
publishes its state, ``systemctl reload heatgw`` (SIGHUP) refuses a broken controller file and takes a
good one, and SIGTERM stops it cleanly, leaving the controller's memory and operating points.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from tooling.devstack import Mosquitto, stop_process
from sim.modbus_server import StationModbusServer
from tests.gateway.conftest import station_server  # noqa: F401 - a fixture used here
from tests.mqtt.conftest import TOPIC, Subscriber, broker, until  # noqa: F401 - broker is a fixture
from tests.test_systemd import INSTALL_PREFIX, directives

ROOT = Path(__file__).resolve().parents[1]
INSTALL_PAGE = (ROOT / "docs" / "getting-started" / "install.md").read_text()
UNIT = ROOT / "systemd" / "heatgw.service"


def install_config(etc: Path) -> list[str]:
    """Run the install page's ``install ... config/...`` lines with /etc/heatgw moved to ``etc``."""
    block = INSTALL_PAGE.split("## Running under systemd", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [line.split("#")[0].strip() for line in block.splitlines() if line.startswith("install -D") and "config/" in line]
    for line in lines:
        subprocess.run(["bash", "-c", line.replace("/etc/heatgw", str(etc))], cwd=ROOT, check=True, timeout=30)
    return lines


def unit_command(key: str, etc: Path, state: Path) -> list[str]:
    (command,) = directives(UNIT)[key]
    command = command.lstrip("-@:+!")  # systemd's prefixes: how a failure counts, not the command
    command = command.replace(INSTALL_PREFIX, sys.prefix).replace("/etc/heatgw", str(etc))
    return shlex.split(command.replace("${STATE_DIRECTORY}", str(state)))


def logged(log: Path, pattern: str) -> re.Match[str] | None:
    return re.search(pattern, log.read_text(errors="replace"))


async def test_install_start_reload_and_stop_as_the_docs_and_the_unit_say(
        tmp_path: Path, station_server: StationModbusServer, broker: Mosquitto) -> None:  # noqa: F811
    etc, state, log = tmp_path / "etc" / "heatgw", tmp_path / "state", tmp_path / "journal.log"
    lines = install_config(etc)
    assert len(lines) >= 3, "station, controller and curves are installed"
    assert sorted(p.name for p in (etc / "curves").iterdir()) == sorted(p.name for p in (ROOT / "config" / "curves").iterdir())
    station = etc / "station.yaml"  # "then edit it": this station's PLC and broker
    station.write_text(station.read_text().replace("port: 5020", f"port: {station_server.port}")
                       .replace("port: 1883", f"port: {broker.port}"))
    check = subprocess.run(unit_command("ExecStartPre", etc, state), capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert "controller.yaml" in check.stdout

    controller = etc / "controller.yaml"
    shipped = controller.read_text()
    process: subprocess.Popen[bytes] | None = None
    with Subscriber(broker.port, topics=(f"{TOPIC}/control",)) as subscriber, log.open("ab") as journal:
        try:
            process = subprocess.Popen(unit_command("ExecStart", etc, state), stdout=journal, stderr=journal, cwd=tmp_path)
            # The first cycle decides and publishes; it writes once the ramp has moved a register
            # step (a minute later: the write path itself is shown in tests/control/test_task.py).
            await until(lambda: bool(subscriber.on(f"{TOPIC}/control")), 30, "the controller state on MQTT")
            published = json.loads(subscriber.on(f"{TOPIC}/control")[-1].payload)["circuits"]["radiators"]
            assert published["curve"].startswith("demo-01-radiators v1")
            assert published["write_status"] in ("written", "unchanged")

            controller.write_text(shipped.replace("cycle_s: 60", "cycle_s: soon"))
            process.send_signal(signal.SIGHUP)
            await until(lambda: logged(log, r"msg=\"reload refused") is not None, 10, "the refused reload")
            refusal = logged(log, r'msg="reload refused.*')
            assert refusal is not None and "controller.yaml:" in refusal[0] and "cycle_s" in refusal[0]

            controller.write_text(shipped.replace("margin_k: 0.15", "margin_k: 0.2"))
            process.send_signal(signal.SIGHUP)
            await until(lambda: logged(log, r'msg="controller reloaded"') is not None, 10, "the accepted reload")
            assert process.poll() is None, "a reload never stops the daemon"

            process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(process.wait, 20) == 0, log.read_text()[-3000:]
        finally:
            stop_process(process)
    memory = json.loads((state / "controller-memory.json").read_text())
    assert memory["circuits"]["radiators"]["curve"].startswith("demo-01-radiators v1")
    # The hour in progress at the stop, ready for `heatgw curve --points`.
    # (Out of the heating season, on the wall clock this test runs on, there is nothing to record.)
    if published["heating"]:
        points = (state / "operating-points.csv").read_text().splitlines()
        assert points[0].startswith("hour_utc,circuit,outdoor_c") and ",radiators," in points[1]
    assert "Traceback" not in log.read_text()
