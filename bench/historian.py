"""Historian bridge benchmark: sustained values/s into the database, and CPU per 1000 values (not run in CI).

Run: ``.venv/bin/python bench/historian.py --rate 60000 --seconds 30``.

Why it is built this way:

* Everything is real and on this machine: Mosquitto, VictoriaMetrics (InfluxDB v2 write API,
  deduplicating like InfluxDB), the bridge as its own process exactly as systemd runs it
  (``python -m gateway.historian run``, gzip on, production batch sizes), and the stations played
  by a CHILD process (this script with ``--publish``) that sends contract telemetry (gateway/mqtt/payloads.py) at a
  fixed offered rate. Each process's CPU is measured separately with psutil, so the figures are
  for the bridge alone.
* "Written" is counted by the DATABASE (``vm_rows_inserted_total{type="influx"}``: each sample is
  two rows, value and quality), not by the bridge, so a bridge that claims more than it writes
  cannot look good. The bridge's own count is printed beside it.
* The window starts after a warm-up and the offered rate is held constant: the result is a
  sustained rate, and ``backlog`` at the end shows whether the bridge kept up (a bridge slower
  than the offer leaves a growing queue at the broker, and its written rate is its ceiling).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]

from tooling.devstack import Mosquitto, VictoriaMetrics, stop_process

TARGET_VALUES_PER_S = 50_000
ROWS_PER_VALUE = 2  # telemetry_value and telemetry_quality


def publish(port: int, stations: int, samples: int, rate: float, seconds: float) -> None:
    """Child process: ``stations`` stations publishing ``samples``-sample messages, ``rate`` values/s in all."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-stations", protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    names = [f"tag_{i:03d}" for i in range(samples)]
    base = time.time() - 7 * 86_400
    per_message = 1.0 / (rate / samples)
    seq = [0] * stations
    sent = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        due = int((time.monotonic() - start) / per_message)
        while sent < due:
            station = sent % stations
            seq[station] += 1
            n = seq[station]
            payload = json.dumps({"seq": n, "t0": round(base + n * 0.5, 3),
                                  "s": [[name, round(20 + (n + i) % 400 * 0.1, 1), i, "g"] for i, name in enumerate(names)]},
                                 separators=(",", ":"))
            client.publish(f"heatgw/st{station:04d}/telemetry", payload, qos=1)
            sent += 1
        time.sleep(0.002)
    client.loop_stop()
    client.disconnect()
    print(json.dumps({"messages": sent, "values": sent * samples}), flush=True)


def rows_inserted(url: str) -> int:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    match = re.search(r'^vm_rows_inserted_total\{type="influx"\} (\d+)', text, re.M)
    return int(match[1]) if match else 0


def telemetry_points(url: str) -> int:
    """Samples the database holds (deduplicated), counted by its own query engine."""
    query = urllib.parse.urlencode({"query": "sum(count_over_time(telemetry_quality[30d]))"})
    urllib.request.urlopen(f"{url}/internal/force_flush", timeout=30).read()
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=60) as reply:
        result = json.loads(reply.read())["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=60_000, help="offered values/s (all stations together)")
    parser.add_argument("--stations", type=int, default=100)
    parser.add_argument("--samples", type=int, default=100, help="samples per telemetry message")
    parser.add_argument("--seconds", type=float, default=30, help="measured window")
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--publish", nargs=5, metavar=("PORT", "STATIONS", "SAMPLES", "RATE", "SECONDS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        port, stations, samples, rate, seconds = args.publish
        publish(int(port), int(stations), int(samples), float(rate), float(seconds))
        return

    with tempfile.TemporaryDirectory(prefix="heatgw-bench-historian-") as tmp:
        directory = Path(tmp)
        broker = Mosquitto(directory / "mosquitto", extra_config=["allow_anonymous true", "max_queued_messages 0"])
        tsdb = VictoriaMetrics(directory / "vm", extra_args=["-dedup.minScrapeInterval=1ms"])
        broker.start()
        tsdb.start()
        (directory / "token").write_text("bench")
        config = directory / "historian.yaml"
        config.write_text(yaml.safe_dump({
            "instance": "bench",
            "mqtt": {"host": "127.0.0.1", "port": broker.port},
            "influxdb": {"url": tsdb.url, "token_file": str(directory / "token"), "org": "bench", "bucket": "bench"},
            "state_dir": str(directory / "state"),
        }))
        bridge_log = (directory / "bridge.log").open("ab")
        bridge = subprocess.Popen([sys.executable, "-m", "gateway.historian", "run", "--config", str(config)],
                                  stdout=bridge_log, stderr=bridge_log, cwd=ROOT)
        publisher: subprocess.Popen[str] | None = None
        try:
            deadline = time.monotonic() + 15
            while b"msg=subscribed" not in (directory / "bridge.log").read_bytes():
                if time.monotonic() > deadline or bridge.poll() is not None:
                    raise SystemExit("the bridge did not subscribe:\n" + (directory / "bridge.log").read_text())
                time.sleep(0.05)
            total_s = args.warmup + args.seconds
            publisher = subprocess.Popen(
                [sys.executable, __file__, "--publish", str(broker.port), str(args.stations), str(args.samples),
                 str(args.rate), str(total_s)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
            processes = {"bridge": psutil.Process(bridge.pid), "publisher": psutil.Process(publisher.pid),
                         "mosquitto": psutil.Process(broker.process.pid),  # type: ignore[union-attr]
                         "victoria-metrics": psutil.Process(tsdb.process.pid)}  # type: ignore[union-attr]
            time.sleep(args.warmup)
            rows0, t0 = rows_inserted(tsdb.url), time.monotonic()
            cpu0 = {name: cpu_seconds(p) for name, p in processes.items()}
            rss_peak = 0
            while time.monotonic() - t0 < args.seconds:
                rss_peak = max(rss_peak, processes["bridge"].memory_info().rss)
                time.sleep(0.5)
            rows1, t1 = rows_inserted(tsdb.url), time.monotonic()
            cpu1 = {name: cpu_seconds(p) for name, p in processes.items()}
            out, _ = publisher.communicate(timeout=60)
            offered = json.loads(out.strip().splitlines()[-1])
            # Let the bridge drain what is left, to report the backlog at the end of the window.
            time.sleep(3)
            written_total = telemetry_points(tsdb.url)
        finally:
            if publisher is not None:
                stop_process(publisher)  # type: ignore[arg-type]
            stop_process(bridge)
            tsdb.stop()
            broker.stop()
        log_text = (directory / "bridge.log").read_text()

    elapsed = t1 - t0
    values = (rows1 - rows0) / ROWS_PER_VALUE
    rate = values / elapsed
    bridge_cpu = cpu1["bridge"] - cpu0["bridge"]
    stopped = re.findall(r'msg="historian bridge stopped".*? written=(\d+)', log_text)
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpu, {platform.python_version()}, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB")
    print(f"offered: {args.rate:,.0f} values/s ({args.stations} stations, {args.samples} samples/message, "
          f"{args.rate / args.samples:,.0f} messages/s)")
    print(f"written (counted by the database): {rate:,.0f} values/s sustained over {elapsed:.1f} s "
          f"(target >= {TARGET_VALUES_PER_S:,})")
    print(f"bridge CPU: {bridge_cpu / elapsed * 100:.1f} % of one core, "
          f"{bridge_cpu / values * 1000 * 1000:.2f} ms per 1000 values; RSS peak {rss_peak / 1e6:.0f} MB")
    print("other processes (% of one core): " + ", ".join(
        f"{name} {(cpu1[name] - cpu0[name]) / elapsed * 100:.0f}" for name in ("publisher", "mosquitto", "victoria-metrics")))
    print(f"published {offered['values']:,} values in all, database holds {written_total:,} "
          f"3 s after the offer stopped; backlog {offered['values'] - written_total:,} "
          f"(the bridge had written {int(stopped[-1]) if stopped else -1:,} when stopped after that)")
    print("PASS" if rate >= TARGET_VALUES_PER_S else "FAIL")


if __name__ == "__main__":
    main()
