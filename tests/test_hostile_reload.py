"""SIGHUP with a hostile or broken controller file, against a running ``heatgw run``: every reload is
refused with ``file:line`` in the log, the running configuration stays in force (the controller
keeps deciding on the old curve), commands keep being answered, the process keeps its memory, and
a good file is still taken afterwards."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tooling.devstack import Mosquitto, stop_process
from sim.modbus_server import StationModbusServer
from tests.gateway.conftest import station_server  # noqa: F401 - a fixture used here
from tests.mqtt.conftest import TOPIC, Subscriber, broker, until  # noqa: F401 - broker is a fixture

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ROOT / "tests" / "data" / "hostile"


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None
    return int(match[1]) * 1024


def body(name: str) -> bytes:
    """A corpus file without its expectation header."""
    return (HOSTILE / name).read_bytes().split(b"\n", 1)[1]


def refusals(log: Path) -> list[str]:
    return re.findall(r'msg="reload refused.*', log.read_text(errors="replace"))


async def test_a_hostile_reload_is_refused_with_its_line_and_the_gateway_runs_on_and_answers(
        tmp_path: Path, station_server: StationModbusServer, broker: Mosquitto) -> None:  # noqa: F811
    etc, log = tmp_path / "etc", tmp_path / "journal.log"
    etc.mkdir()
    (etc / "curves").symlink_to(ROOT / "config" / "curves")
    station = etc / "station.yaml"
    station.write_text((ROOT / "config" / "station.yaml").read_text()
                       .replace("port: 5020", f"port: {station_server.port}").replace("port: 1883", f"port: {broker.port}"))
    controller = etc / "controller.yaml"
    good = (ROOT / "config" / "controller.yaml").read_text().replace("cycle_s: 60", "cycle_s: 1")
    controller.write_text(good)
    bad_curve = etc / "bad-curve.yaml"
    bad_curve.write_text((ROOT / "config" / "curves" / "radiators-75-50.yaml").read_text()
                         .replace("date: 2026-10-20", "date: 2026-13-45"))
    cycle_line = next(n for n, line in enumerate(good.splitlines(), start=1) if "cycle_s: 1" in line)
    date_line = next(n for n, line in enumerate(bad_curve.read_text().splitlines(), start=1) if "date: 2026-13-45" in line)
    broken: list[tuple[str, bytes, str]] = [  # what, file contents, what the refusal must say
        ("NUL byte", good.replace("cycle_s: 1", "cycle_s: 1\x00").encode(),
         f"controller.yaml:{cycle_line}:13: (document): control character U+0000 (NUL)"),
        ("unquoted 21:00", good.replace('day_end: "21:00"', "day_end: 21:00").encode(),
         "controller.circuits.radiators.comfort.day_end: 21:00 is a base-60 number"),
        ("recursive alias", body("recursive_alias_mapping.yaml").replace(b"station:", b"controller:", 1),
         "controller.yaml:13:10: (document): alias *x refers to a node that contains it"),
        ("invalid curve date", good.replace("curves/radiators-75-50.yaml", str(bad_curve)).encode(),
         f"bad-curve.yaml:{date_line}:3: curve.date: Input should be a valid date"),
        ("billion laughs", body("billion_laughs_controller.yaml"), "controller.yaml:7:12: (document): the document expands"),
        ("curve is /dev/zero", good.replace("curves/radiators-75-50.yaml", "/dev/zero").encode(),
         "controller.circuits.radiators.curve: circuit radiators: /dev/zero:1:1: (document): not a regular file"),
        ("GBK comment", good.replace("cycle_s: 1", "cycle_s: 1  # 周期").encode("gbk"), "reads as GBK"),
    ]

    process: subprocess.Popen[bytes] | None = None
    with Subscriber(broker.port) as dispatch, log.open("ab") as journal:
        try:
            process = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(station),
                                        "--controller", str(controller), "--state-dir", str(tmp_path / "state")],
                                       stdout=journal, stderr=journal, cwd=tmp_path)
            await until(lambda: bool(dispatch.on(f"{TOPIC}/control")), 30, "the controller state on MQTT")
            rss_before = peak_rss(process.pid)

            async def answered(command_id: str) -> dict[str, object]:
                dispatch.publish(f"{TOPIC}/cmd/outdoor", json.dumps(
                    {"id": command_id, "origin": "dispatch/test", "expires": time.time() + 60, "args": {"value_c": -3.0}}))
                await until(lambda: any(m.json()["id"] == command_id for m in dispatch.on(f"{TOPIC}/cmd/outdoor/result")),
                            10, f"the answer to {command_id}")
                return next(m.json() for m in dispatch.on(f"{TOPIC}/cmd/outdoor/result") if m.json()["id"] == command_id)

            for number, (what, contents, expected) in enumerate(broken, start=1):
                controller.write_bytes(contents)
                process.send_signal(signal.SIGHUP)
                reply = await answered(f"during-{number}")  # sent right behind the signal
                await until(lambda n=number: len(refusals(log)) >= n, 20, f"the refusal of the {what} file")
                refusal = refusals(log)[number - 1]
                assert expected in refusal, (what, refusal)
                assert reply["ok"] is True, (what, reply)
                assert process.poll() is None, f"the {what} reload stopped the gateway"
                controls = len(dispatch.on(f"{TOPIC}/control"))
                await until(lambda c=controls: len(dispatch.on(f"{TOPIC}/control")) > c + 1, 10,
                            f"controller cycles after the {what} reload")
                state = json.loads(dispatch.on(f"{TOPIC}/control")[-1].payload)["circuits"]["radiators"]
                assert state["curve"].startswith("demo-01-radiators v1 (2026-10-20)"), (what, state["curve"])
            grown = peak_rss(process.pid) - rss_before

            controller.write_text(good.replace("margin_k: 0.15", "margin_k: 0.2"))
            process.send_signal(signal.SIGHUP)
            await until(lambda: 'msg="controller reloaded"' in log.read_text(errors="replace"), 20, "the good reload")
            assert (await answered("after"))["ok"] is True
            process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(process.wait, 20) == 0, log.read_text(errors="replace")[-3000:]
        finally:
            stop_process(process)
    assert grown < 50 * 1024 * 1024, f"the refused reloads grew the gateway's peak memory by {grown / 1e6:.0f} MB"
    assert "Traceback" not in log.read_text(errors="replace")
