"""``heatgw read`` against the simulated station, over Modbus TCP and over RTU (a socat pty pair).

The command runs as an operator runs it, in its own process; the simulator serves the station in
this one. A correct configuration prints the values the simulator holds; a meter whose words are
the other way round is flagged with the order to use; a unit nobody has on the RS-485 line is
reported as silent after its timeout, with exit status 1.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from sim.modbus_server import SerialLine, StationModbusServer
from tests.gateway.conftest import demo_station

ROOT = Path(__file__).resolve().parents[2]
STATION = ROOT / "config" / "station.yaml"
COLUMNS = ("tag", "address", "raw", "value", "quality", "reason")


async def heatgw_read(*args: str, timeout_s: float = 60) -> tuple[int, str, float]:
    """``heatgw read ARGS`` in a child process while this loop serves the simulator: (exit, stdout, seconds)."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", "read", *args, cwd=ROOT,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert b"Traceback" not in err, err.decode()
    assert process.returncode is not None
    return process.returncode, out.decode(), time.monotonic() - started


def station_file(tmp_path: Path, port: int, edit: Any = None) -> Path:
    data = yaml.safe_load(STATION.read_text())
    for device in data["devices"].values():
        device["port"] = port
    if edit is not None:
        edit(data["devices"])
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def table(output: str, device: str) -> dict[str, dict[str, str]]:
    """The rows printed for ``device``, by tag, each cut into its columns at the header's positions."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{device} ("))
    assert lines[start].endswith(": answered"), lines[start]
    header = lines[start + 1]
    names = [name for name in COLUMNS if re.search(rf"(?<!\S){name}(?!\S)", header)]
    starts = [header.index(f"  {name}") + 2 if name != "tag" else header.index(name) for name in names]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("  ") or line.startswith("  HINT: "):
            break
        cells = [line[begin:end].strip() for begin, end in zip(starts, [*starts[1:], None], strict=True)]
        rows[cells[0]] = dict(zip(names, cells, strict=True))
    return rows


def number(cell: str) -> float:
    return float(cell.split()[0])


async def test_a_correct_station_prints_the_values_the_simulator_holds(tmp_path: Path) -> None:
    async with StationModbusServer(demo_station(), port=0) as server:
        code, out, _ = await heatgw_read(str(station_file(tmp_path, server.port)), "--raw")
        truth = server.measurements
    assert code == 0, out
    assert "HINT" not in out
    plc, meter = table(out, "plc"), table(out, "heat_meter")
    assert number(plc["outdoor_temp"]["value"]) == pytest.approx(truth.outdoor_c, abs=0.05)
    assert plc["outdoor_temp"]["value"].endswith(" degC") and plc["outdoor_temp"]["quality"] == "good"
    assert number(plc["secondary_supply_temp"]["value"]) == pytest.approx(truth.secondary_supply_c, abs=0.05)
    assert plc["pump_running"]["address"] == "input 17 bit 0" and plc["pump_running"]["value"] == "true"
    assert number(meter["meter_power"]["value"]) == pytest.approx(truth.meter.power_kw, rel=1e-6)
    assert number(meter["meter_energy_gj"]["value"]) == pytest.approx(truth.meter.energy_gj, rel=1e-6)
    assert meter["meter_power"]["address"] == "holding 2-3"
    assert re.fullmatch(r"0x[0-9a-f]{4} 0x[0-9a-f]{4}", meter["meter_power"]["raw"])
    assert all(row["quality"] == "good" for row in (*plc.values(), *meter.values()))


async def test_a_meter_read_in_the_wrong_word_order_is_flagged_with_the_right_one(tmp_path: Path) -> None:
    async with StationModbusServer(demo_station(), port=0, meter_word_order="little") as server:
        code, out, _ = await heatgw_read(str(station_file(tmp_path, server.port)), "--device", "heat_meter")
        truth = server.measurements
    assert code == 0, out
    meter = table(out, "heat_meter")
    assert number(meter["meter_power"]["value"]) != pytest.approx(truth.meter.power_kw, rel=1e-3)
    flagged = {tag for tag, row in meter.items() if "HINT: looks like word_order: little" in row["reason"]}
    assert {"meter_power", "meter_supply_temp", "meter_return_temp"} <= flagged
    wide = [tag for tag in meter if tag not in ("meter_status", "meter_energy_bcd")]
    assert f"  HINT: {len(flagged)} of {len(wide)} 32/64-bit values look like word_order: little: check them all" in out
    assert "plc (" not in out, "--device reads that device only"


async def test_a_unit_nobody_serves_over_tcp_is_reported_as_not_answering(tmp_path: Path) -> None:
    async with StationModbusServer(demo_station(), port=0) as server:
        def edit(devices: dict[str, Any]) -> None:
            devices["heat_meter"]["unit_id"] = 7
        code, out, _ = await heatgw_read(str(station_file(tmp_path, server.port, edit)))
    assert code == 1
    assert "heat_meter (127.0.0.1:" in out
    assert "unit 7): NO ANSWER: exception: exception 11 (gateway target failed to respond)" in out
    assert table(out, "plc")["outdoor_temp"]["quality"] == "good"


def meter_on(serial: str, unit: int = 2) -> Any:
    def edit(devices: dict[str, Any]) -> None:
        meter = devices["heat_meter"]
        for key in ("host", "port"):
            meter.pop(key)
        meter.update(protocol="modbus_rtu", serial_port=serial, unit_id=unit, timeout_s=0.5, retries=0)
    return edit


async def test_over_rtu_the_meter_prints_its_values_and_an_absent_unit_times_out(
        tmp_path: Path, pty_pair: tuple[str, str]) -> None:
    sim_end, gateway_end = pty_pair
    async with StationModbusServer(demo_station(), port=0, meter_serial=SerialLine(sim_end)) as server:
        code, out, _ = await heatgw_read("--config", str(station_file(tmp_path, server.port, meter_on(gateway_end))),
                                         "--device", "heat_meter")
        (tmp_path / "absent").mkdir()
        absent = station_file(tmp_path / "absent", server.port, meter_on(gateway_end, unit=7))
        silent_code, silent_out, waited = await heatgw_read("--config", str(absent), "--device", "heat_meter")
        truth = server.measurements
    assert code == 0, out
    meter = table(out, "heat_meter")
    assert out.startswith(f"heat_meter ({gateway_end} unit 2): answered")
    assert number(meter["meter_power"]["value"]) == pytest.approx(truth.meter.power_kw, rel=1e-6)
    assert meter["meter_energy_bcd"]["value"] == f"{int(truth.meter.energy_kwh)} kWh"
    assert silent_code == 1
    assert silent_out.strip() == f"heat_meter ({gateway_end} unit 7): NO ANSWER: timeout: no answer within 0.5 s"
    assert waited > 0.5
