"""End-to-end latency benchmark: from a register's change in the PLC to the broker (not run in CI).

Run: ``.venv/bin/python bench/latency.py --devices 10 50 100 --runs 3``; old and new side by side,
run by run in turn: ``--roots /path/to/main .``; the concentrator case: ``--devices 1000 --interval
10 --ports 4 --template --warmup 20 --seconds 60``.

What is measured, and why it is built this way:

* D simulated PLCs, each with 100 holding registers that all change every 100 ms. Registers 0-3
  hold the time of the last change in milliseconds (a float64, exact to the millisecond), so a
  subscriber can compute, for every message, *arrival time minus the time the value changed*:
  what a dispatcher watching the broker experiences, whatever the gateway does in between.
* The PLCs are served by a CHILD process (this script with ``--serve``): one pymodbus server per
  PLC on its own loopback port (D PLCs are D addresses at a station network, each with its own
  connection), whose registers are refreshed lazily when a read finds the 100 ms tick has moved
  (so the server costs nothing between polls). The gateway polls them every ``--interval`` s.
* The gateway runs as its own process, ``heatgw run``, exactly as under systemd, with the
  station file this script writes: the **default** MQTT settings unless ``--batch-max-age`` is
  given. Its CPU (user + system of the whole process tree) and RSS are read with psutil over the
  measured window only, after a warm-up.
* A real Mosquitto (``tooling.devstack``) on a free loopback port; the subscriber is a paho client
  on its own thread in this process, timestamping each message as it arrives.
* "First value" is the time from starting the gateway process to the first telemetry message
  at the broker: start-up, configuration, connecting and planning included.
* The concentrator case (``--ports K``): K servers answer every unit id, and device n is unit
  ``n // K + 1`` behind port ``n % K`` (PLCs behind a few serial-to-Ethernet gateways), each
  device still on its own connection. ``--template`` writes the tag list once (``templates:``).
* "Values published / due": values read in the whole seconds of the window (their read time in
  the payload), over devices x tags x polls due in it. "Poll late": per device, how far each poll
  (its time tag's read time) lies behind its slot, the slots being the device's grid of one per
  interval placed at its earliest poll (a poll that overran skips slots, as the poller does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
import yaml

HOST = "127.0.0.1"
REGISTERS = 100
TIME_REGISTERS = 4  # registers 0-3: the change time in ms as a big-endian float64
TICK_S = 0.1
STATION = "bench"
PREFIX = "heatgw"
ROOT = Path(__file__).resolve().parents[1]


# --- the child process: D PLCs behind one server ----------------------------------------------------


def tick_registers(tick: int) -> list[int]:
    """The 100 registers as they are during 100 ms tick number ``tick``: the tick's start time in
    ms, then values that all differ from the previous tick's (so every value is reported)."""
    stamp = struct.unpack(">4H", struct.pack(">d", float(tick * round(TICK_S * 1000))))
    return [*stamp, *((tick + index) & 0x7FFF for index in range(REGISTERS - TIME_REGISTERS))]


async def serve(devices: int) -> None:
    """``--serve``: ``devices`` servers (each answering every unit id), each with a lazily
    refreshed table; stop at EOF on stdin."""
    import logging

    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # hung-up clients at the end are expected
    shown: dict[int, int] = {}  # id of a register table -> the tick it shows

    async def refresh(_function: int, _start: int, _address: int, _count: int, registers: list[int],
                      _values: object) -> None:
        tick = int(time.time() / TICK_S)
        if shown.get(id(registers)) != tick:
            registers[:REGISTERS] = tick_registers(tick)
            shown[id(registers)] = tick

    servers = []
    for _ in range(devices):
        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        table = [SimData(0, values=tick_registers(int(time.time() / TICK_S)), datatype=DataType.REGISTERS)]
        device = SimDevice(id=0, simdata=(bits, list(bits), table, list(table)), action=refresh)
        server = ModbusTcpServer(device, address=(HOST, 0))
        await server.serve_forever(background=True)
        servers.append(server)
    ports = [server.transport.sockets[0].getsockname()[1] for server in servers]  # type: ignore[attr-defined]
    print("ports " + " ".join(map(str, ports)), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():
        pass
    for server in servers:
        await server.shutdown()


@contextmanager
def server_process(devices: int) -> Iterator[list[int]]:
    """The child's PLC ports; the child exits when this block ends (EOF on its stdin)."""
    process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", "--devices", str(devices)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        if not line.startswith("ports "):
            raise RuntimeError(f"the PLC server did not start: {line!r}")
        yield [int(port) for port in line.split()[1:]]
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the gateway under test --------------------------------------------------------------------------


def addresses(devices: int, plc_ports: list[int]) -> list[tuple[int, int]]:
    """``(port, unit id)`` of each of D devices: one port each when there are as many ports,
    else up to 250 unit ids behind each port (a concentrator reaching PLCs through gateways)."""
    if len(plc_ports) == devices:
        return [(port, 1) for port in plc_ports]
    return [(plc_ports[index % len(plc_ports)], index // len(plc_ports) + 1) for index in range(devices)]


def station_file(directory: Path, devices: list[tuple[int, int]], mqtt_port: int, interval_s: float,
                 tags_per_device: int, batch_max_age_s: float | None, template: bool = False) -> Path:
    """D devices of ``tags_per_device`` tags (one float64 time + uint16s) polled every ``interval_s``;
    with ``template`` the tags are written once, in a device template (``p<n>`` publishes
    ``p<n>_t_ms``, ``p<n>_r4``, ..., as without it)."""
    tags: dict[str, Any] = {"t_ms": {"function": "holding", "address": 0, "type": "float64", "group": "poll"}}
    tags.update({f"r{address}": {"function": "holding", "address": address, "group": "poll"}
                 for address in range(TIME_REGISTERS, TIME_REGISTERS + tags_per_device - 1)})
    mqtt_section: dict[str, Any] = {"host": HOST, "port": mqtt_port, "topic_prefix": PREFIX}
    if batch_max_age_s is not None:
        mqtt_section["batch_max_age_s"] = batch_max_age_s
    data: dict[str, Any] = {
        "station": {"id": STATION, "name": "latency bench"},
        "groups": {"poll": {"interval_s": interval_s}},
    }
    if template:
        data["templates"] = {"plc": {"protocol": "modbus_tcp", "tags": tags}}
        data["devices"] = {f"p{number}": {"template": "plc", "host": HOST, "port": port, "unit_id": unit}
                           for number, (port, unit) in enumerate(devices, start=1)}
    else:
        data["devices"] = {f"plc{number}": {
            "protocol": "modbus_tcp", "host": HOST, "port": port, "unit_id": unit,
            # tag names are unique per station: the n-th PLC publishes p<n>_t_ms, p<n>_r4, ...
            "tags": {f"p{number}_{name}": tag for name, tag in tags.items()},
        } for number, (port, unit) in enumerate(devices, start=1)}
    data["mqtt"] = mqtt_section
    path = directory / "station.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Arrivals:
    """What the subscriber saw: per message its arrival time, values and change-time latencies,
    and per value the second it was read in and per poll the device and read time."""

    lock: threading.Lock
    first_at: float | None = None
    values: list[tuple[float, int]] = field(default_factory=list)  # (arrival, samples in the message)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (arrival, arrival - change time)
    paths: list[tuple[float, float]] = field(default_factory=list)  # (arrival, arrival - read time)
    read_per_second: Counter[int] = field(default_factory=Counter)  # values by the second they were read in
    polls: dict[str, list[float]] = field(default_factory=dict)  # device -> read times of its time tag

    def on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        arrived = time.time()
        payload = json.loads(message.payload)
        samples, t0 = payload.get("s", []), payload.get("t0", 0.0)
        with self.lock:
            if self.first_at is None:
                self.first_at = arrived
            self.values.append((arrived, len(samples)))
            for tag, value, dt_ms, quality, *_ in samples:
                read_at = t0 + dt_ms / 1000.0
                self.read_per_second[int(read_at)] += 1
                if tag.endswith("_t_ms") and quality == "g" and isinstance(value, int | float):
                    self.latencies.append((arrived, arrived - value / 1000.0))
                    self.paths.append((arrived, arrived - read_at))
                    self.polls.setdefault(tag, []).append(read_at)


@contextmanager
def subscriber(port: int) -> Iterator[Arrivals]:
    arrivals = Arrivals(threading.Lock())
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="latency-bench")
    client.on_message = arrivals.on_message
    client.connect(HOST, port)
    client.subscribe(f"{PREFIX}/{STATION}/telemetry", qos=1)
    client.loop_start()
    try:
        yield arrivals
    finally:
        client.loop_stop()
        client.disconnect()


def tree_cpu_s(process: psutil.Process) -> float:
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def lateness(reads: list[float], interval_s: float) -> list[float]:
    """How late each poll was past its slot, seen from outside: the slots are the device's grid
    (one every ``interval_s``), placed at its earliest poll; a poll that overran skips slots."""
    first = reads[0]
    slots = [round((read - first) / interval_s) for read in reads]
    base = min(read - slot * interval_s for read, slot in zip(reads, slots, strict=True))
    return [read - slot * interval_s - base for read, slot in zip(reads, slots, strict=True)]


@dataclass(frozen=True)
class RunResult:
    devices: int
    values_per_s: float
    messages_per_s: float
    cpu_pct: float
    cpu_s_per_1000: float
    p50_ms: float
    p99_ms: float
    path_p99_ms: float
    rss_mb: float
    first_value_s: float
    read_share: float  # values read in the window and published, over the values due in it
    late_p99_s: float
    late_max_s: float


def one_run(devices: int, interval_s: float, tags: int, warmup_s: float, seconds: float,
            batch_max_age_s: float | None, ports: int | None, template: bool, root: Path) -> RunResult:
    from tooling.devstack import Mosquitto, stop_process

    with tempfile.TemporaryDirectory(prefix="heatgw-latency-") as work, server_process(ports or devices) as plc_ports:
        directory = Path(work)
        broker = Mosquitto(directory / "mosquitto", ["allow_anonymous true",
                                                     *(["user root"] if os.geteuid() == 0 else [])])
        broker.start()
        gateway: subprocess.Popen[bytes] | None = None
        try:
            station = station_file(directory, addresses(devices, plc_ports), broker.port, interval_s, tags,
                                   batch_max_age_s, template)
            with subscriber(broker.port) as arrivals:
                log = (directory / "gateway.log").open("wb")
                started = time.time()
                gateway = subprocess.Popen([sys.executable, "-m", "gateway", "--log-level", "warning", "run",
                                            "--config", str(station), "--state-dir", str(directory / "state")],
                                           stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=root,
                                           start_new_session=True)
                measured = psutil.Process(gateway.pid)
                time.sleep(max(0.0, math.ceil(started + warmup_s) - time.time()))  # whole seconds: see read_per_second
                if gateway.poll() is not None:
                    raise RuntimeError(f"the gateway exited: {(directory / 'gateway.log').read_text()[-2000:]}")
                window_start, cpu_start = time.time(), tree_cpu_s(measured)
                time.sleep(seconds)
                window_end, cpu_end = time.time(), tree_cpu_s(measured)
                rss = sum(member.memory_info().rss for member in [measured, *measured.children(recursive=True)])
                time.sleep(min(interval_s, 5.0))  # values read in the window may still be on their way
                with arrivals.lock:
                    in_window = [n for at, n in arrivals.values if window_start <= at < window_end]
                    values, messages = sum(in_window), len(in_window)
                    latencies = sorted(lag for at, lag in arrivals.latencies if window_start <= at < window_end)
                    paths = sorted(lag for at, lag in arrivals.paths if window_start <= at < window_end)
                    first_second, last_second = int(window_start), int(window_start) + round(seconds)
                    read = sum(arrivals.read_per_second[second] for second in range(first_second, last_second))
                    late = sorted(lag for reads in arrivals.polls.values()
                                  for lag, at in zip(lateness(reads, interval_s), reads, strict=True)
                                  if first_second <= at < last_second)
                    first = arrivals.first_at
        finally:
            if gateway is not None:
                gateway.send_signal(signal.SIGTERM)
                stop_process(gateway, timeout_s=30)  # type: ignore[arg-type]
            broker.stop()
    if not latencies or first is None:
        raise RuntimeError("no telemetry arrived in the measured window")
    cpu_s = cpu_end - cpu_start
    span = window_end - window_start
    due = devices * tags * round(seconds) / interval_s
    return RunResult(devices, values / span, messages / span, 100 * cpu_s / span, cpu_s / max(values, 1) * 1000,
                     1000 * percentile(latencies, 0.5), 1000 * percentile(latencies, 0.99),
                     1000 * percentile(paths, 0.99), rss / 1e6, first - started, read / due,
                     percentile(late, 0.99), late[-1])


def percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def median_of(results: list[RunResult]) -> RunResult:
    return RunResult(results[0].devices, *(statistics.median(getattr(result, name) for result in results)
                                           for name in list(RunResult.__dataclass_fields__)[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval, s")
    parser.add_argument("--tags", type=int, default=REGISTERS - TIME_REGISTERS + 1,
                        help="tags per device: the time and up to 96 others")
    parser.add_argument("--warmup", type=float, default=10.0, help="s before measuring")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window, s")
    parser.add_argument("--runs", type=int, default=3, help="runs per size; the median is printed")
    parser.add_argument("--batch-max-age", type=float, default=None,
                        help="mqtt.batch_max_age_s for the gateway (default: the gateway's own default)")
    parser.add_argument("--ports", type=int, default=None,
                        help="PLC server ports, each answering up to 250 unit ids (default: one per device)")
    parser.add_argument("--template", action="store_true", help="write the tags once, in a device template")
    parser.add_argument("--roots", type=Path, nargs="+", default=[ROOT],
                        help="checkouts whose `heatgw run` is measured, run by run in turn (old and new side by side)")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.devices[0]))
        return
    print(f"# {platform.node()} {os.cpu_count()} cores, python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"# {' '.join(sys.argv)}")
    print("| gateway | devices | values/s | messages/s | CPU % of a core | CPU ms per 1000 values | p50 ms | p99 ms "
          "| p99 read→broker ms | RSS MB | first value s | values published / due | poll late p99 s | late max s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for devices in args.devices:
        runs: dict[Path, list[RunResult]] = {root: [] for root in args.roots}
        for _ in range(args.runs):
            for root in args.roots:
                runs[root].append(one_run(devices, args.interval, args.tags, args.warmup, args.seconds,
                                          args.batch_max_age, args.ports, args.template, root.resolve()))
        for root, results in runs.items():
            r = median_of(results)
            print(f"| {root.resolve().name} | {devices} | {r.values_per_s:,.0f} | {r.messages_per_s:.1f} | {r.cpu_pct:.1f} "
                  f"| {r.cpu_s_per_1000 * 1000:.2f} | {r.p50_ms:.0f} | {r.p99_ms:.0f} | {r.path_p99_ms:.0f} "
                  f"| {r.rss_mb:.1f} | {r.first_value_s:.2f} | {r.read_share:.4f} | {r.late_p99_s:.3f} "
                  f"| {r.late_max_s:.3f} |", flush=True)


if __name__ == "__main__":
    main()
