"""The README's demo command works: simulator process, gateway, curve writes, MQTT, historian, database."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.gateway.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_the_whole_chain_and_writes_the_curve_setpoint() -> None:
    command = [sys.executable, "-m", "gateway", "demo", "--duration", "10", "--no-live",
               "--port", str(free_port()), "--control-port", str(free_port()),
               "--mqtt-port", str(free_port()), "--tsdb-port", str(free_port())]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stderr
    assert "Traceback" not in log
    assert 'msg="device online" device=plc' in log
    assert 'msg="device online" device=heat_meter' in log
    write = re.search(r'msg="write done" tag=supply_setpoint value=([\d.]+) origin=demo-curve readback=([\d.]+)', log)
    assert write is not None, log[-3000:]
    assert float(write[1]) == float(write[2])
    assert 'msg="mqtt connected"' in log
    stored = re.search(r"the historian stored (\d+) points", proc.stdout)
    assert stored is not None and int(stored[1]) > 0, proc.stdout
