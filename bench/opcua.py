"""OPC UA subscription benchmark: N servers x M monitored items, every value changing every second.

Run: ``.venv/bin/python bench/opcua.py --servers 20 --items 500 --seconds 30``.

Why it is built this way:

* The servers run in CHILD processes (this script with ``--serve``), a few asyncua servers per
  process, so their CPU is not charged to the gateway: the targets are for the gateway process.
  Each server holds M Double variables and writes all of them once a second, each stamped with
  its own source timestamp when written; the children exit at EOF on stdin, so they cannot outlive
  the bench. On a small machine the servers' CPU (Python encoding 10,000 notifications a second)
  competes with the gateway's: the latency then includes the servers' own queueing, which the
  load average printed with the figures shows.
* The gateway side runs in THIS process as in production: one ``OpcUaDeviceRunner`` per server,
  each with one subscription of M monitored items (publishing interval ``--publishing``), all
  feeding one ``Bus`` drained by a consumer that measures the latency from each changed value's
  source timestamp to its arrival on the bus. Re-published unchanged values (the group's
  refresh) count as values but not as latency samples.
* CPU is this process's (user + system) over the measurement window, after a warm-up, divided
  by the values put on the bus; RSS is this process's at the end of the window. ``loop_lag`` is
  how late a 10 ms timer fires in this process: on a loaded machine, the part of the latency
  spent waiting for a CPU rather than in the gateway's own work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncua import Server, ua  # noqa: E402

from drivers.opcua.config import OpcUaDevice  # noqa: E402
from drivers.opcua.device import OpcUaDeviceRunner  # noqa: E402
from gateway.acquisition.models import PollGroup  # noqa: E402
from gateway.app import tune_garbage_collector  # noqa: E402
from gateway.bus import Bus  # noqa: E402
from gateway.samples import SampleBatch  # noqa: E402

HOST = "127.0.0.1"
NAMESPACE = "urn:heatgw:bench"
SERVERS_PER_PROCESS = 5
GROUP = "fast"


# --- the child: servers whose every value changes every second ---------------------------------

async def _serve(count: int, items: int) -> None:
    servers, nodes = [], []
    for _ in range(count):
        server = Server()
        await server.init()
        server.set_endpoint(f"opc.tcp://{HOST}:0/bench")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        index = await server.register_namespace(NAMESPACE)
        folder = await server.nodes.objects.add_object(index, "Bench")
        variables = [await folder.add_variable(ua.NodeId(f"v{i}", index), f"v{i}", 0.0) for i in range(items)]
        await server.start()
        assert server.bserver is not None
        servers.append(server)
        nodes.append([v.nodeid for v in variables])
    print(json.dumps({"ports": [s.bserver.port for s in servers]}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.readline() else None)
    tick = 0
    while not stop.is_set():
        tick += 1
        second = math.floor(time.time()) + 1
        for k, (server, ids) in enumerate(zip(servers, nodes, strict=True)):
            # Each server on its own offset within the second, as PLCs' scans are not in step: one
            # process's servers do not queue behind each other's writes.
            await asyncio.sleep(max(0.0, second + k / len(servers) - time.time()))
            for i, node in enumerate(ids):
                now = datetime.now(UTC)  # each value stamped when it is sampled, as a PLC does
                await server.write_attribute_value(node, ua.DataValue(
                    ua.Variant(float(tick * 1000 + i), ua.VariantType.Double), SourceTimestamp=now, ServerTimestamp=now))
    for server in servers:
        await server.stop()


# --- the gateway side ---------------------------------------------------------------------------

def _start_children(servers: int, items: int) -> tuple[list[subprocess.Popen[str]], list[int]]:
    children, ports = [], []
    for start in range(0, servers, SERVERS_PER_PROCESS):
        count = min(SERVERS_PER_PROCESS, servers - start)
        children.append(subprocess.Popen(
            [sys.executable, __file__, "--serve", str(count), "--items", str(items)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    for child in children:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            raise RuntimeError("a server process died while starting")
        ports += json.loads(line)["ports"]
    return children, ports


def _device(port: int, items: int, publishing_s: float) -> OpcUaDevice:
    return OpcUaDevice.model_validate({
        "protocol": "opcua", "endpoint": f"opc.tcp://{HOST}:{port}/bench", "namespaces": {"b": NAMESPACE},
        "timeout_s": 10.0, "keepalive_s": 5.0,
        "subscriptions": {GROUP: {"publishing_interval_s": publishing_s, "sampling_interval_s": 0}},
        "tags": {f"s{port}_v{i}": {"node": f"ns=b;s=v{i}", "group": GROUP} for i in range(items)}})


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


async def _measure(ports: list[int], items: int, warmup_s: float, seconds: float, publishing_s: float) -> dict[str, object]:
    bus = Bus()
    feed = bus.subscribe("bench", maxsize=100_000, lossless=True)
    devices = [OpcUaDeviceRunner(f"plc{i}", _device(port, items, publishing_s), {GROUP: PollGroup(interval_s=1.0)}, bus)
               for i, port in enumerate(ports)]
    tasks = [asyncio.create_task(device.run()) for device in devices]
    measuring = False
    values = 0
    latencies: list[float] = []
    last: dict[str, object] = {}

    async def consume() -> None:
        nonlocal values
        async for item in feed:
            if not isinstance(item, SampleBatch):
                continue
            now = time.time()
            for sample in item.samples:
                changed = last.get(sample.tag) != sample.value
                last[sample.tag] = sample.value
                if measuring:
                    values += 1
                    if changed:
                        latencies.append(now - sample.timestamp)

    lags: list[float] = []

    async def lag() -> None:
        """How late a 10 ms timer fires: the share of the latency that is this process waiting for a CPU."""
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            if measuring:
                lags.append(time.monotonic() - before - 0.01)

    consumer = asyncio.create_task(consume())
    lagger = asyncio.create_task(lag())
    deadline = time.monotonic() + 120
    while not all(d.online for d in devices):
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {sum(bool(d.online) for d in devices)} of {len(devices)} devices connected")
        await asyncio.sleep(0.2)
    tune_garbage_collector()
    await asyncio.sleep(warmup_s)
    measuring = True
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    measuring = False
    for task in [*tasks, consumer, lagger]:
        task.cancel()
    await asyncio.gather(*tasks, consumer, lagger, return_exceptions=True)
    return {
        "servers": len(ports), "items": items, "publishing_s": publishing_s, "window_s": round(wall, 1),
        "values": values, "values_per_s": round(values / wall), "changes_timed": len(latencies),
        "cpu_ms_per_1000_values": round(cpu * 1000 / max(values, 1) * 1000, 2),
        "cpu_share_of_one_core": round(cpu / wall, 3), "rss_mib": round(_rss_mib(), 1),
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "latency_p50_ms": round(_percentile(latencies, 50) * 1000, 1),
        "latency_p99_ms": round(_percentile(latencies, 99) * 1000, 1),
        "latency_max_ms": round(max(latencies, default=float("nan")) * 1000, 1),
        "loop_lag_p99_ms": round(_percentile(lags, 99) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=20)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--publishing", type=float, default=0.1, help="publishing interval, s")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    if args.serve:
        asyncio.run(_serve(args.serve, args.items))
        return
    children, ports = _start_children(args.servers, args.items)
    try:
        result = asyncio.run(_measure(ports, args.items, args.warmup, args.seconds, args.publishing))
    finally:
        for child in children:
            assert child.stdin is not None
            child.stdin.close()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
    result.update(machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                          f"Python {platform.python_version()}", load=os.getloadavg())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
