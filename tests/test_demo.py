"""The README's demo command works: simulator process, gateway running the supply-curve controller on
the simulator's time, MQTT, historian, database."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.gateway.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_the_whole_chain_and_the_controller_writes_the_setpoint() -> None:
    command = [sys.executable, "-m", "gateway", "demo", "--duration", "12", "--no-live",
               "--port", str(free_port()), "--control-port", str(free_port()),
               "--mqtt-port", str(free_port()), "--tsdb-port", str(free_port())]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stderr
    assert "Traceback" not in log
    assert 'msg="device online" device=plc' in log
    assert 'msg="device online" device=heat_meter' in log
    assert 'msg="season mode"' in log  # the controller's first cycle
    write = re.search(r'msg="write done" tag=supply_setpoint value=([\d.]+) origin=controller readback=([\d.]+)', log)
    assert write is not None, log[-3000:]
    assert float(write[1]) == float(write[2])
    assert 'msg="mqtt connected"' in log
    # A healthy simulated station raises no sensor alarm: the quality alarms' silence is timed on
    # the simulator's clock, 600 times faster than the polls that refresh the values.
    assert "alarm=supply_sensor" not in log and "alarm=outdoor_sensor" not in log, log[-3000:]
    summary = re.search(r"after (\d+) controller cycles and (\d+) setpoint writes; "
                        r"the historian stored (\d+) points and (\d+) controller states", proc.stdout)
    assert summary is not None, proc.stdout
    cycles, writes, points, states = map(int, summary.groups())
    assert cycles >= 50  # 60 s cycles at 600x: ten a second of the 12 s (a busy machine skips some)
    assert 10 <= writes <= cycles  # unscaled, the 10 s write interval would allow two in 12 s
    assert points > 0 and states > 0


def test_demo_runs_another_station_file_with_its_plc_on_opc_ua() -> None:
    """``--config`` is honoured end to end: the OPC UA station file makes the simulator serve its PLC
    over OPC UA, the gateway subscribes to it, and the controller writes through it."""
    command = [sys.executable, "-m", "gateway", "demo", "--config", str(ROOT / "config" / "station-opcua.yaml"),
               "--duration", "12", "--no-live", "--port", str(free_port()), "--opcua-port", str(free_port()),
               "--control-port", str(free_port()), "--mqtt-port", str(free_port()), "--tsdb-port", str(free_port())]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stderr
    assert "Traceback" not in log
    assert re.search(r'msg="device online" device=plc endpoint=opc\.tcp://', log), log[-3000:]
    assert 'msg="device online" device=heat_meter' in log
    write = re.search(r'msg="write done" tag=supply_setpoint value=([\d.]+) origin=controller readback=([\d.]+)', log)
    assert write is not None, log[-3000:]
    summary = re.search(r"the historian stored (\d+) points", proc.stdout)
    assert summary is not None and int(summary[1]) > 0, proc.stdout
